"""Source ``model_stats`` (optional, ``--sources …,model_stats``): Triton's ``GET v2/models/stats``, raw.

Per model and version (labels ``model``, ``version``): cumulative inference and execution counts; per statistic
(label ``stat``: success, fail, queue, compute_input, compute_infer, compute_output, cache_hit, cache_miss) its
cumulative count and nanoseconds; per batch size (labels ``batch_size``, ``phase``) the same; and the load-time
``memory_usage`` entries (labels ``type``, ``id``) where the memory tracker filled them. A failed or malformed
answer is a gap with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from rmt.collect.http_get import HttpSource
from rmt.collect.series import Labels, Point, Reading, labels_of
from rmt.core.errors import SourceUnavailable

SOURCE = "model_stats"


def parse_model_stats(payload: Any) -> list[Point]:
    """Points of one ``v2/models/stats`` answer; raises SourceUnavailable when it is not that shape."""
    try:
        points: list[Point] = []
        for m in payload["model_stats"]:
            model: Labels = labels_of(model=m["name"], version=m["version"])
            points.append(Point("model_inference_count", model, float(m["inference_count"])))
            points.append(Point("model_execution_count", model, float(m["execution_count"])))
            for stat, v in m.get("inference_stats", {}).items():
                labels = tuple(sorted((*model, ("stat", stat))))
                points.append(Point("model_stat_count", labels, float(v["count"])))
                points.append(Point("model_stat_duration_ns", labels, float(v["ns"])))
            for batch in m.get("batch_stats", []):
                for phase, v in batch.items():
                    if phase == "batch_size":
                        continue
                    labels = tuple(sorted((*model, ("batch_size", str(batch["batch_size"])), ("phase", phase))))
                    points.append(Point("model_batch_count", labels, float(v["count"])))
                    points.append(Point("model_batch_duration_ns", labels, float(v["ns"])))
            for usage in m.get("memory_usage", []):
                labels = tuple(sorted((*model, ("type", str(usage["type"])), ("id", str(usage["id"])))))
                points.append(Point("model_memory_usage_bytes", labels, float(usage["byte_size"])))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SourceUnavailable(f"v2/models/stats answer is not Triton's model statistics ({exc!r})") from None
    return points


class ModelStatsSource(HttpSource):
    """GETs ``v2/models/stats`` each tick."""

    name = SOURCE

    missing_url = "HTTP URL unknown until the server is found: pass --server-url"

    def url(self) -> str | None:
        """Triton's ``v2/models/stats``."""
        base = self.target.http_url()
        return f"{base}/v2/models/stats" if base else None

    def parse(self, url: str, body: bytes) -> Reading:
        """The points of one answer."""
        try:
            payload = json.loads(body)
        except ValueError:
            raise SourceUnavailable(f"{url} did not answer JSON") from None
        return Reading(parse_model_stats(payload))
