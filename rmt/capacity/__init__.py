"""Capacity planning: a stepped open-loop sweep held until stable, per-step figures, SLO-bounded capacity, the knee,
the resource that binds first, memory headroom, and run comparison.

- :mod:`~rmt.capacity.ladder`: the sweep's settings (the ``capacity`` section of a definition) and its step phases.
- :mod:`~rmt.capacity.stability`: perf_analyzer's stability rule and the per-step decision (pure functions).
- :mod:`~rmt.capacity.controller`: the live driver in Locust (a ``LoadTestShape`` that ends steps once stable).
- :mod:`~rmt.capacity.steps`: per-step figures from a run directory (``capacity_steps.csv``).
- :mod:`~rmt.capacity.analysis`: max sustainable rate, knee, binding resource, memory headroom.
- :mod:`~rmt.capacity.compare`: two runs side by side, with machine/server mismatch warnings.
"""
