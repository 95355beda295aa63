"""rmt: load generation and verdicts for NVIDIA Triton Inference Server resource management.

Packages: :mod:`rmt` (CLI, embedded server, orchestration), :mod:`rmt.load` (Locust traffic),
:mod:`collectors` (resource sidecar), :mod:`checkers` (post-run verdicts).
"""

__version__ = "0.1.0"
