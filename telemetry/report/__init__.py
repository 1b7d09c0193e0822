"""The HTML report: one self-contained file of charts over a window of builds, for
``builder telemetry report``.

What it shows, every number from one reading of the store (:meth:`TelemetryAnalyzer.targets`:
the window's builds and every target row of theirs, from one snapshot), over the builds the
store holds (the daily rollups keep no build's own times):

- the build time of every build over time, with SPEC §3's regression rule applied to each
  build (its duration against the mean of the builds before it) and the change points of
  :mod:`telemetry.changes` (when its optional extra is installed; the report says how to
  install it otherwise, and is drawn all the same);
- each build's cache hit rate over time, and the share of builds that succeeded per UTC day;
- the top bottlenecks by the mean duration of their executed runs and by their mean weighted
  time (:mod:`telemetry.weighted`);
- the time the cache saved (:mod:`telemetry.cache`), in all and by target;
- the newest build's timeline: its targets per worker, coloured by status.

The package, one module per thing it owns: :mod:`telemetry.report.data` reads what the report
shows (:func:`report_data`), :mod:`telemetry.report.charts` makes its charts,
:mod:`telemetry.report.notes` words its figures and notes, and :mod:`telemetry.report.page`
writes the page (:func:`render_html`, :func:`write_report`) and checks for the optional
``report`` extra (:func:`require`).

>>> analyzer = TelemetryAnalyzer(TelemetryStorage(".builder-cache/telemetry"))  # doctest: +SKIP
>>> write_report(render_html(report_data(analyzer)), Path("report.html"))  # doctest: +SKIP
"""

from telemetry.report.data import DEFAULT_TOP, STEPS, Changes, ReportData, report_data
from telemetry.report.data import Progress as Progress
from telemetry.report.notes import figures, scope
from telemetry.report.page import (
    INSTALL,
    ReportMissing,
    html_report,
    render_html,
    require,
    write_report,
)

__all__ = [
    "DEFAULT_TOP",
    "INSTALL",
    "STEPS",
    "Changes",
    "ReportData",
    "ReportMissing",
    "figures",
    "html_report",
    "render_html",
    "report_data",
    "require",
    "scope",
    "write_report",
]
