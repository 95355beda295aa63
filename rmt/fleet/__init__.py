"""Fleet verdicts from a Prometheus server: every Triton server of a fleet judged by rmt's checks.

Data flows ``prometheus`` (HTTP API → matrices) → ``adapter`` (matrices → one :class:`~rmt.check.data.RunInputs`
per server and counter epoch) → ``judge`` (the checks of :mod:`rmt.check.spec`, per server, and a fleet summary).
"""
