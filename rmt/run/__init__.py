"""Scenarios end to end: definitions (:mod:`rmt.run.definition`), their Locust composition
(:mod:`rmt.run.compose`), model-control actions (:mod:`rmt.run.control`), verdicts with expectations
(:mod:`rmt.run.verdicts`) and the ``rmt run`` orchestration (:mod:`rmt.run.orchestrate`).

Only :mod:`rmt.run.compose` and :mod:`rmt.run.control` import Locust/gevent; ``rmt run`` itself runs Locust in
child processes, so the CLI process is never monkey-patched.
"""
