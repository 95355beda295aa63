"""The HTML report of a run directory: ``report.html``, self-contained (inline CSS and SVG), opens offline.

>>> from rmt.report import write_report
>>> write_report("runs/x")            # → runs/x/report.html; rmt.core.errors.ConfigError on a folder that holds no run

Modules: :mod:`~rmt.report.svg` (dependency-free charts), :mod:`~rmt.report.common` (the run, read once through
the checkers' adapters), :mod:`~rmt.report.memory` and :mod:`~rmt.report.load` (the sections),
:mod:`~rmt.report.page` (assembly). ``rmt report RUN_DIR`` is the command line.
"""

from rmt.report.page import REPORT_HTML, SECTIONS, render, write_report

__all__ = ["REPORT_HTML", "SECTIONS", "render", "write_report"]
