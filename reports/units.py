"""Units for humans, shared by every renderer (console, live, HTML, Markdown, JUnit)."""

from __future__ import annotations

import math


def fmt_ns(ns: float | None) -> str:
    """A latency for humans: 850ns, 12.3us, 4.56ms, 1.20s."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "-"
    if ns < 1_000:
        return f"{ns:.0f}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}us" if ns < 100_000 else f"{ns / 1e3:.0f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"
