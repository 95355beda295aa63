"""The resource sidecar: NVML, process tree, Triton metrics and pool sampling (filled by the collectors issue)."""
