"""The one grammar of an offered rate (messages per second), for every command that takes one.

``parse_rate`` reads what a user types (``20000``, ``20k``, ``1.5k/s``, ``1M``) and refuses
anything that is not a positive rate; ``format_rate`` writes a rate back in a form
``parse_rate`` reads to the same number. A sweep hands each step its rate as text (``--rate``,
``$TICKSCOPE_RATE``, ``{rate}`` in the command), so the two must agree: ``f"{rate:g}"`` wrote
1,000,000 as ``1e+06``, which no rate grammar reads.
"""

from __future__ import annotations

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
