"""The resource sidecar: samples everything a memory or scheduling verdict needs on the host of a Triton server.

Sources (one module each; every series they produce is a measure registered in :mod:`rmt.measures`):

- :mod:`collectors.process_tree` (``process``): RSS/USS/threads/fds/CPU of tritonserver and its stubs (kept-open
  ``/proc`` files through :mod:`collectors.procfs`);
- :mod:`collectors.triton_metrics` (``triton_metrics``): Triton's ``/metrics``, raw counters and gauges;
- :mod:`collectors.shm` (``shm``): the python backend's ``/dev/shm`` regions;
- :mod:`collectors.gpu` (``nvml``): per-GPU and per-process GPU memory through :mod:`collectors.nvml`, the one NVML
  wrapper;
- :mod:`collectors.model_stats` (``model_stats``, optional): ``v2/models/stats`` batch stats and load-time memory.

Machinery: :mod:`collectors.target` (which server, found again after a restart), :mod:`collectors.core` (drift-free
sampling threads, one per source or one for all inline sources, gaps with reasons), :mod:`collectors.series` (the
``series.jsonl`` / ``samples.jsonl`` records and the reader ``load_series``), :mod:`collectors.http_get` (the HTTP
sources' small GET client), :mod:`collectors.http_api` + :mod:`collectors.exposition` (JSON and Prometheus on
127.0.0.1), :mod:`collectors.sidecar` (assembly; ``rmt collect``), :mod:`collectors.remote` (polling a remote
sidecar) and :mod:`collectors.locust_plugin` (Locust master side).
"""
