"""streaming_gpu: a ready rmt scenario (traffic, checks and expectations in ``streaming_gpu.json`` beside this file).

The streaming scenario on one GPU (``rmt run streaming_gpu --model-repository rmt/zoo/gpu``):
stream_leak_on_cancel_gpu (keeps 4 MiB of device memory per cancelled request) beside its twin over gRPC
``ModelStreamInfer``; phases complete → cancel (80 % of the requests cancelled by the client after 2 responses);
judged on NVML's per-process memory of each stub.
"""

from locust import events

from rmt.load import TritonGrpcUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonGrpcUser):
    """gRPC streaming traffic of the scenario."""
