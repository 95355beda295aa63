"""rmt: load generation and verdicts for NVIDIA Triton Inference Server resource management.

Layers (README, Layout): the application (:mod:`rmt.cli`, :mod:`rmt.commands`, :mod:`rmt.run`, :mod:`rmt.report`,
:mod:`rmt.webui`, :mod:`rmt.capacity`, :mod:`rmt.fleet`, :mod:`rmt.server`) over :mod:`rmt.load` (Locust traffic),
:mod:`rmt.collect` (resource sidecar) and :mod:`rmt.check` (post-run verdicts), over :mod:`rmt.core`.
"""

__version__ = "0.1.0"
