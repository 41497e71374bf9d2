"""Units: the one grammar of rates, durations and latency limits for every command, and the one
way a latency is printed for humans (console, live, HTML, Markdown, JUnit).

Rates: ``parse_rate`` reads what a user types (``20000``, ``20k``, ``1.5k/s``, ``1M``) and refuses
anything that is not a positive rate; ``format_rate`` writes a rate back in a form
``parse_rate`` reads to the same number. A sweep hands each step its rate as text (``--rate``,
``$TICKSCOPE_RATE``, ``{rate}`` in the command), so the two must agree: ``f"{rate:g}"`` wrote
1,000,000 as ``1e+06``, which no rate grammar reads.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:/s)?\s*$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


class RateError(ValueError):
    """Not a positive rate: one line naming the text and the grammar."""


def parse_rate(text: str, what: str = "rate") -> float:
    """'50k', '20000', '1.5k/s', '1M' -> messages per second (> 0)."""
    m = _RATE.match(text or "")
    if not m:
        raise RateError(f"{what} {text!r} is not a rate: use e.g. 20000, 20k, 1.5k/s, 1M")
    # Decimal, not float, before scaling: '1.1k' is 1100 exactly, not 1100.0000000000002.
    rate = float(Decimal(m.group(1)) * _SCALE[m.group(2).lower()])
    if rate <= 0:  # a rate of 0 passed here once and failed inside the venue, its session left empty
        raise RateError(f"{what} {text!r} is not a positive rate: use e.g. 20000, 20k, 1.5k/s, 1M")
    return rate


def format_rate(rate: float) -> str:
    """A rate as plain decimal digits (never an exponent) that ``parse_rate`` reads back exactly."""
    if float(rate).is_integer():
        return str(int(rate))
    return format(Decimal(repr(float(rate))), "f")


class DurationError(ValueError):
    """Not a duration: one line naming what was given and the grammar."""


_DURATION = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*(ns|us|µs|ms|s|m|h)?\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
            None: 10**9}  # fmt: skip


def parse_duration_ns(text: str, what: str = "duration") -> int:
    """'50us', '1.5ms', '30s', '2m', '1h', '10' (seconds) -> exact integer nanoseconds.

    Decimal digits are kept as integers (never a float product), so '50us' is 50000 ns, not the
    49999 that 50 * 1e-6 * 1e9 truncates to.
    """
    m = _DURATION.match(text or "")
    if not m:
        raise DurationError(f"{what} {text!r} is not a duration: use e.g. 30s, 500ms, 50us, 2m, 1h")
    whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
    scaled = int(whole + frac) * _UNIT_NS[unit]
    ns, rest = divmod(scaled, 10 ** len(frac))
    if rest:
        raise DurationError(f"{what} {text!r} is finer than 1 ns: give whole nanoseconds")
    return ns


# A latency limit (``sweep --sla p99=200us``) always names its unit and may be fractional below 1 ns
# (it is only compared against), unlike a duration.
_LATENCY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)\s*$")
_LATENCY_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}


def parse_latency_ns(text: str) -> float | None:
    """'200us', '1ms', '1.5 ms' -> nanoseconds; None when the text is not a latency with its unit."""
    m = _LATENCY.match(text or "")
    return float(m.group(1)) * _LATENCY_NS[m.group(2)] if m else None


def fmt_ns(ns: float | None) -> str:
    """A latency for humans: 850ns, 12.3µs, 4.56ms, 1.20s.

    The one units rule of every output (console, live, HTML text and axes, Markdown, JUnit): ns,
    µs, ms or s by magnitude, with "µs" spelled as the HTML axes spell it (``latency_axis``), so a
    figure read in a table matches the same figure read off a plot."""
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return "-"
    if ns < 1_000:
        return f"{ns:.0f}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}µs" if ns < 100_000 else f"{ns / 1e3:.0f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"


def latency_unit(peak_ns: float) -> tuple[str, float]:
    """The unit an axis reaching ``peak_ns`` reads best in (``fmt_ns``'s rule): (name, ns per unit)."""
    if peak_ns >= 1e9:
        return "s", 1e9
    if peak_ns >= 1e6:
        return "ms", 1e6
    if peak_ns >= 1e3:
        return "µs", 1e3
    return "ns", 1.0
