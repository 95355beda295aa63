"""The resource sidecar: samples everything a memory or scheduling verdict needs on the host of a Triton server.

Sources (one module each; every series they produce is a measure of the source's table in :mod:`rmt.core.measures`):

- :mod:`rmt.collect.process_tree` (``process``): RSS/USS/threads/fds/CPU of tritonserver and its stubs (kept-open
  ``/proc`` files through :mod:`rmt.collect.procfs`);
- :mod:`rmt.collect.triton_metrics` (``triton_metrics``): Triton's ``/metrics``, raw counters and gauges;
- :mod:`rmt.collect.shm` (``shm``): the python backend's ``/dev/shm`` regions;
- :mod:`rmt.collect.gpu` (``nvml``): per-GPU and per-process GPU memory through :mod:`rmt.collect.nvml`, the one NVML
  wrapper;
- :mod:`rmt.collect.model_stats` (``model_stats``, optional): ``v2/models/stats`` batch stats and load-time memory.

Machinery: :mod:`rmt.collect.target` (which server, found again after a restart), :mod:`rmt.collect.core` (drift-free
sampling threads, one per source or one for all inline sources, gaps with reasons), :mod:`rmt.collect.series` (the
``series.jsonl`` / ``samples.jsonl`` records and the reader ``load_series``), :mod:`rmt.collect.http_get` (the HTTP
sources' small GET client), :mod:`rmt.collect.http_api` + :mod:`rmt.collect.exposition` (JSON and Prometheus on
127.0.0.1), :mod:`rmt.collect.sidecar` (assembly; ``rmt collect``), :mod:`rmt.collect.remote` (polling a remote
sidecar) and :mod:`rmt.collect.locust_plugin` (Locust master side).
"""
