"""Live rmt data inside Locust's web UI: one RMT tab and a chart page (see :mod:`rmt.webui.plugin`)."""

from rmt.webui.plugin import CHARTS_PATH, TAB_KEY, RmtWebUI, add_arguments

__all__ = ["CHARTS_PATH", "TAB_KEY", "RmtWebUI", "add_arguments"]
