"""Capacity planning: a stepped open-loop sweep held until stable, per-step figures, SLO-bounded capacity, the knee,
the resource that binds first, memory headroom, and run comparison.

- :mod:`~rmt.capacity.ladder`: the sweep's settings (the ``capacity`` section of a definition) and its step phases.
- :mod:`~rmt.capacity.stability`: perf_analyzer's stability rule and the per-step decision (pure functions).
- :mod:`~rmt.capacity.controller`: the live driver in Locust (a ``LoadTestShape`` that ends steps once stable).
- :mod:`~rmt.capacity.compare`: two runs side by side, with machine/server mismatch warnings.

The offline judgement of a sweep is a check like any other, in :mod:`rmt.check`: per-step figures from a run directory
(:mod:`rmt.check.capacity_steps`, ``capacity_steps.csv``), max sustainable rate, knee, binding resource and memory
headroom (:mod:`rmt.check.capacity_analysis`), and the ``slo`` check (:mod:`rmt.check.capacity_checks`).
"""
