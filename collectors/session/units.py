"""Units: the one grammar of rates, durations and latency limits for every command, and the one
way a latency is printed for humans (console, live, HTML, Markdown, JUnit).

Rates: ``parse_rate`` reads what a user types (``20000``, ``20k``, ``1.5k/s``, ``1M``) and refuses
anything that is not a positive rate; ``format_rate`` writes a rate back in a form
``parse_rate`` reads to the same number. A sweep hands each step its rate as text (``--rate``,
``$TICKSCOPE_RATE``, ``{rate}`` in the command), so the two must agree: ``f"{rate:g}"`` wrote
1,000,000 as ``1e+06``, which no rate grammar reads. Durations likewise: ``parse_duration_ns`` and
``format_duration``; a latency limit is a duration with its unit named (``parse_latency_ns``).
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
        raise RateError(f"{what} {text!r} is not a rate (use e.g. 20000, 20k, 1.5k/s, 1.5M)")
    # Decimal, not float, before scaling: '1.1k' is 1100 exactly, not 1100.0000000000002.
    rate = float(Decimal(m.group(1)) * _SCALE[m.group(2).lower()])
    if rate <= 0:  # a rate of 0 passed here once and failed inside the venue, its session left empty
        raise RateError(f"{what} {text!r} is not a positive rate (use e.g. 20000, 20k, 1.5k/s, 1.5M)")
    return rate


def format_rate(rate: float) -> str:
    """A rate as plain decimal digits (never an exponent) that ``parse_rate`` reads back exactly."""
    if float(rate).is_integer():
        return str(int(rate))
    return format(Decimal(repr(float(rate))), "f")


class DurationError(ValueError):
    """Not a duration: one line naming what was given and the grammar."""


DURATION_EXAMPLES = "30s, 1m30s, 500ms, 50us, 2h, 2d, or bare seconds"
# One grammar for every duration and latency a user types: terms of a number and a unit, largest
# unit first (1m30s, 1h2m, 1.5ms), or one bare number of seconds.
_TERM = re.compile(r"(\d+)(?:\.(\d+))?\s*(ns|us|µs|ms|s|m|h|d)")
_BARE = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
            "d": 86400 * 10**9}  # fmt: skip
_UNIT_ORDER = ["d", "h", "m", "s", "ms", "us", "ns"]


def _terms(text: str) -> list[tuple[str, str, str]] | None:
    """(whole, fraction, unit) of each term, or None when the text is not in the grammar."""
    m = _BARE.match(text or "")
    if m:
        return [(m.group(1), m.group(2) or "", "s")]
    body = (text or "").strip()
    terms, pos = [], 0
    while pos < len(body):
        t = _TERM.match(body, pos)
        if not t:
            return None
        terms.append((t.group(1), t.group(2) or "", t.group(3)))
        pos = t.end()
        while pos < len(body) and body[pos] == " ":
            pos += 1
    units = [_UNIT_ORDER.index("us" if u == "µs" else u) for _, _, u in terms]
    if not terms or units != sorted(set(units)):  # 30s1m, 1s1s: each unit once, largest first
        return None
    return terms


def _scaled(terms) -> tuple[int, int]:
    """The exact sum of the terms as a fraction of nanoseconds: (numerator, denominator)."""
    digits = max(len(f) for _, f, _ in terms)
    total = sum(int(w + f.ljust(digits, "0")) * _UNIT_NS[u] for w, f, u in terms)
    return total, 10**digits


def parse_duration_ns(text: str, what: str = "duration") -> int:
    """'50us', '1.5ms', '30s', '1m30s', '2d', '10' (seconds) -> exact integer nanoseconds.

    Decimal digits are kept as integers (never a float product), so '50us' is 50000 ns, not the
    49999 that 50 * 1e-6 * 1e9 truncates to.
    """
    terms = _terms(text)
    if terms is None:
        raise DurationError(f"{what} {text!r} is not a duration (use e.g. {DURATION_EXAMPLES})")
    ns, rest = divmod(*_scaled(terms))
    if rest:
        raise DurationError(f"{what} {text!r} is finer than 1 ns (give whole nanoseconds)")
    return ns


def format_duration(ns: int) -> str:
    """Whole nanoseconds as the largest units that hold them exactly (1m30s, 2d, 1500us), a form
    ``parse_duration_ns`` reads back to the same number."""
    if ns <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        n, ns = divmod(ns, _UNIT_NS[unit])
        if n:
            out.append(f"{n}{unit}")
    for unit in ("ms", "us", "ns"):
        if ns and ns % _UNIT_NS[unit] == 0:
            out.append(f"{ns // _UNIT_NS[unit]}{unit}")
            break
    return "".join(out)


FOREVER = "forever"  # a run's duration that never ends by itself (``--duration forever``)


def parse_run_duration_s(text: str, what: str = "duration") -> float | None:
    """A run's length in seconds, or None for ``forever`` (until Ctrl-C or the subject ends)."""
    if (text or "").strip().lower() == FOREVER:
        return None
    return parse_duration_ns(text, what) / 1e9


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
_SIZE_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}  # fmt: skip


def parse_size(text: str, what: str = "size") -> int:
    """'5GB', '500MB', '2GiB', '1000000' (bytes) -> bytes (> 0). kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024."""
    m = _SIZE.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise DurationError(f"{what} {text!r} is not a positive size (use e.g. 5GB, 500MB, 2GiB)")
    return int(Decimal(m.group(1)) * _SIZE_BYTES[(m.group(2) or "b").lower()])


def format_size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def parse_latency_ns(text: str) -> float | None:
    """A latency limit (``--sla p99=200us``): the duration grammar with its unit named (a bare
    number is refused: 200 would be 200 seconds), and fractions below 1 ns allowed (a limit is only
    compared against). '200us', '1ms', '1.5 ms', '1ms500us' -> nanoseconds; None otherwise."""
    if _BARE.match(text or ""):
        return None
    terms = _terms(text)
    if terms is None:
        return None
    num, den = _scaled(terms)
    return num / den


# The one set of percentiles a user chooses from (--sla, --threshold, console columns): the name a
# user types -> the key summary.json holds it under.
PERCENTILES = {"p50": "p50", "p90": "p90", "p99": "p99", "p99.9": "p99_9", "p99.99": "p99_99", "max": "max",
               "mean": "mean"}  # fmt: skip


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
