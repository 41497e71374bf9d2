"""The package's own static files that pages inline: the smallest plotly.js bundle that draws a
page's trace types.

``static/plotly-basic.min.js`` is npm's ``plotly.js-basic-dist-min`` 4.1.1 (MIT, ``PLOTLY-LICENSE``
beside it; sha256 99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba), the same
plotly.js release as the ``plotly`` package's full bundle: 1.19 MB instead of 4.8 MB. A page with
a trace type outside it (py-spy's icicle) inlines the full bundle.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

# (name, the trace types the bundle draws, its file under static/); the full bundle draws all.
BUNDLES = (("basic", frozenset({"scatter", "bar", "pie"}), "plotly-basic.min.js"),)


def trace_types(figures: dict[str, dict]) -> set[str]:
    return {str(t.get("type", "scatter")) for f in figures.values() for t in f.get("data", [])}


def plotly_bundle(types: set[str]) -> tuple[str, str]:
    """(bundle name, its JavaScript) of the smallest bundle drawing every one of ``types``."""
    for name, covers, _ in BUNDLES:
        if types <= covers:
            return name, _bundle_js(name)
    from plotly.offline import get_plotlyjs

    return "full", get_plotlyjs()


@cache
def _bundle_js(name: str) -> str:
    filename = next(f for n, _, f in BUNDLES if n == name)
    return (files(__package__) / "static" / filename).read_text(encoding="utf-8")
