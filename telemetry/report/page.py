"""The page: the report as one self-contained HTML file (:func:`render_html`), written whole
or not at all (:func:`write_report`), and the optional extra it needs (:func:`require`).

The charts are Vega-Lite specifications made with altair, drawn in the browser by Vega; its
scripts are inlined (``vl-convert-python`` gives them, offline), so the file opens with no
network: about 0.9 MB of scripts and the data. The specifications are plain JSON in
``<script type="application/json">`` elements, with ``<``, ``>``, ``&`` and the line and
paragraph separators written as JSON escapes, so no text from a build (a target named
``</script>``) can end the element or start markup; what the page shows as HTML is escaped.
A Content-Security-Policy lets only the page's own two scripts run (by their hashes) and
no request leave the page.

altair and vl-convert-python are the optional ``report`` extra: without them
:class:`ReportMissing` says how to install it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from pathlib import Path
from typing import Any, Final

from telemetry.analyzer import TelemetryAnalyzer
from telemetry.errors import TelemetryError
from telemetry.files import atomic_output
from telemetry.report.charts import _charts
from telemetry.report.data import DEFAULT_TOP, STEPS, Progress, ReportData, _stepper, report_data
from telemetry.report.notes import _figures_list, figures, scope

INSTALL: Final = "pip install 'builder-telemetry[report]'"
# What JSON inside an HTML <script> element must not hold raw (JSON escapes of the same
# characters): "</script" or "<!--" would end or change the element, "&" an entity in
# some readers, U+2028/2029 a line break to older JavaScript parsers.
_JSON_IN_HTML: Final = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


class ReportMissing(TelemetryError):
    """The report's libraries, an optional extra, are not installed."""


def require() -> None:
    """Check that the report's libraries are installed; :class:`ReportMissing` says how to
    install them when they are not."""
    _libraries()


def render_html(data: ReportData, *, progress: Progress | None = None) -> str:
    """The report as one HTML page that needs nothing but itself.

    >>> render_html(report_data(analyzer)).startswith("<!DOCTYPE html>")  # doctest: +SKIP
    True
    """
    step = _stepper(progress)
    step(4)
    alt, _ = _libraries()
    charts = _charts(alt, data)
    sections = "\n".join(_section(title, note, name, spec) for title, note, name, spec in charts)
    specs = "\n".join(
        f'<script type="application/json" data-chart="{name}">{_json_in_html(spec)}</script>'
        for _, _, name, spec in charts
        if spec is not None
    )
    step(5)
    bundle = _scripts()
    policy = (
        "default-src 'none'; "
        # Vega compiles its expressions to functions: 'unsafe-eval' is for that alone.
        f"script-src {_hash(bundle)} {_hash(_LOADER)} 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:"
    )
    page = _PAGE.format(
        policy=html.escape(policy),
        style=_STYLE,
        bundle=bundle,
        scope=scope(data),
        figures=_figures_list(data),
        figures_json=_json_in_html(figures(data)),
        sections=sections,
        specs=specs,
        loader=_LOADER,
    )
    step(len(STEPS))
    return page


def html_report(
    analyzer: TelemetryAnalyzer, *, top: int = DEFAULT_TOP, progress: Progress | None = None
) -> str:
    """:func:`render_html` of :func:`report_data`."""
    return render_html(report_data(analyzer, top=top, progress=progress), progress=progress)


def write_report(text: str, path: Path) -> None:
    """Write the page to ``path`` whole or not at all: a temporary file beside it, renamed
    over it once written (an open report is never seen half-written)."""
    with atomic_output(path) as handle:
        handle.write(text.encode("utf-8"))


# -- HTML ---------------------------------------------------------------------------------------


def _libraries() -> tuple[Any, Any]:
    """altair and vl_convert; or, when the extra is missing, :class:`ReportMissing`."""
    try:
        import altair
        import vl_convert
    except ImportError:  # a library, or a dependency of one
        raise ReportMissing(
            "the HTML report needs the report extra (altair and vl-convert-python); "
            f"install it with: {INSTALL}"
        ) from None
    return altair, vl_convert


@functools.cache
def _scripts() -> str:
    """Vega, Vega-Lite and vega-embed in one script (vl-convert bundles them offline), for
    the Vega-Lite version altair writes, or the nearest of the same major version that
    vl-convert has."""
    alt, vlc = _libraries()
    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    wanted = f"{major}.{minor}"
    known = list(vlc.get_vegalite_versions())
    same = sorted((v for v in known if v.split(".")[0] == major), key=_version_key)
    if wanted not in known and not same:
        raise ReportMissing(
            f"vl-convert-python has no Vega-Lite {major} (it has {', '.join(known)}), which "
            f"altair writes; install matching versions with: {INSTALL}"
        )
    chosen = wanted if wanted in known else same[-1]
    bundle: str = vlc.javascript_bundle(vl_version="v" + chosen.replace(".", "_"))
    if "</script" in bundle.lower() or "<!--" in bundle:
        raise ReportMissing(  # it would end its own element: not a bundle to inline
            f"this vl-convert-python's scripts cannot be inlined; install another with: {INSTALL}"
        )
    return bundle


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _json_in_html(value: object) -> str:
    """JSON for a ``<script type="application/json">`` element: nothing in it can end the
    element or be read as markup (see :data:`_JSON_IN_HTML`)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_IN_HTML)


def _hash(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return f"'sha256-{digest}'"


def _section(title: str, note: str, name: str, spec: dict[str, Any] | None) -> str:
    chart = f'<div class="chart" id="{name}"></div>' if spec is not None else ""
    return f'<section>\n<h2>{title}</h2>\n<p class="note">{note}</p>\n{chart}\n</section>'


_STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto; max-width: 920px;
       padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 4px; }
.scope, .note { color: #555; margin: 4px 0 10px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 16px 0; }
dt { font-weight: 600; }
dd { margin: 0; }
.chart { min-height: 40px; }
.failed { color: #b00020; }
"""

# Draws each chart from its JSON element; a chart that fails says so in the page and on the
# console. The <body> gets data-charts-done once every chart settled (for a test to wait on).
_LOADER: Final = """
const options = {renderer: "svg", actions: {export: true, source: false, compiled: false,
                 editor: false}};
const drawn = Array.from(document.querySelectorAll("script[data-chart]"), (element) => {
  const box = document.getElementById(element.dataset.chart);
  return vegaEmbed(box, JSON.parse(element.textContent), options).then(
    () => { box.dataset.rendered = "true"; },
    (error) => {
      box.className += " failed";
      box.textContent = "This chart could not be drawn: " + error;
      console.error(error);
    });
});
Promise.all(drawn).then(() => { document.body.dataset.chartsDone = "true"; });
"""

_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Build telemetry report</title>
<style>{style}</style>
<script>{bundle}</script>
</head>
<body>
<header>
<h1>Build telemetry report</h1>
<p class="scope">{scope}</p>
</header>
<dl>
{figures}
</dl>
{sections}
<script type="application/json" id="figures">{figures_json}</script>
{specs}
<script>{loader}</script>
</body>
</html>
"""
