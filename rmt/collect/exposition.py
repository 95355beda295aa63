"""Prometheus exposition of what the collector samples (``prometheus_client``), so an existing Prometheus can scrape.

Each sampled measure ``m`` is exposed as the gauge ``rmt_m`` with its series' labels, at the value of the source's
latest read — NaN while that source is in a gap. Triton's own counters keep their names (``rmt_nv_inference_count``)
and stay cumulative. Per source: ``rmt_samples_total``, ``rmt_source_errors_total``, ``rmt_source_up`` (available and
latest read good) and ``rmt_source_last_seq`` (the record number the JSON API reports too, to match the two).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

from rmt.collect.core import Collector
from rmt.core.measures import MEASURES

PREFIX = "rmt_"


class SampleExposition(PromCollector):
    """A ``prometheus_client`` collector over a :class:`~rmt.collect.core.Collector`'s latest records."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        """The families, built from one consistent copy of the latest records."""
        latest = self.collector.latest()
        by_measure: dict[str, list[tuple[dict[str, str], float]]] = {}
        for record in latest.values():
            for sid, value in record.values.items():
                decl = self.collector.table.get(int(sid))
                by_measure.setdefault(decl.measure, []).append(
                    (decl.labels, math.nan if value is None else float(value)))
        for measure in sorted(by_measure):
            rows = by_measure[measure]
            names = sorted({k for labels, _ in rows for k in labels})
            doc = MEASURES[measure].doc if measure in MEASURES else measure
            fam = GaugeMetricFamily(PREFIX + measure, f"{doc} [{MEASURES[measure].unit}]"
                                    if measure in MEASURES else doc, labels=names)
            for labels, value in rows:
                fam.add_metric([labels.get(n, "") for n in names], value)
            yield fam
        statuses = self.collector.statuses()
        samples = CounterMetricFamily("rmt_samples", "good reads per source", labels=["source"])
        errors = CounterMetricFamily("rmt_source_errors", "gaps (failed, timed-out or skipped reads) per source",
                                     labels=["source"])
        up = GaugeMetricFamily("rmt_source_up", "1 when the source is available and its latest read was good",
                               labels=["source"])
        seq = GaugeMetricFamily("rmt_source_last_seq", "record number of the source's latest read",
                                labels=["source"])
        for st in statuses:
            samples.add_metric([st.name], st.samples_total)
            errors.add_metric([st.name], st.errors_total)
            rec = latest.get(st.name)
            up.add_metric([st.name], 1.0 if st.info.available and rec is not None and rec.ok else 0.0)
            seq.add_metric([st.name], float(st.last_seq))
        yield from (samples, errors, up, seq)


def registry_for(collector: Collector) -> CollectorRegistry:
    """A private registry holding only the collector's exposition (no process/platform defaults)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SampleExposition(collector))
    return registry
