"""Locust user classes that drive multi-model, multi-priority Triton traffic (filled by the rmt_users issue)."""
