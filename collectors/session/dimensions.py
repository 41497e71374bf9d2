"""Per-dimension tags: how a histogram of one dimension value is named in an hlog.

A tag is ``<tag>|<dimension>=<value>[|<dimension>=<value>...]``, e.g. ``tick_to_trade|venue=XNAS``
or ``send|venue=XNAS|symbol=AAPL`` (one slicing by two dimensions). HdrHistogram's readers take
the tag up to the first comma and refuse spaces, so each value is percent-encoded
(``urllib.parse.quote`` with nothing safe but letters, digits and ``_.-~``): ``BRK A`` is
``BRK%20A``, and a value can never hold ``|``, ``=``, ``,`` or a space. The values beyond the cap
of their slicing share one histogram under the value ``*other`` (``*`` is always encoded, so no
real value can be named so). docs/session-format.md "Dimensions".
"""

from __future__ import annotations

from urllib.parse import quote, unquote

SEPARATOR = "|"
OTHER = "*other"  # the values beyond a slicing's cap, together
DEFAULT_CAP = 16  # values per slicing with their own histograms (the rest: OTHER)


def dimension_tag(tag: str, values: dict[str, str]) -> str:
    """``tick_to_trade`` + {venue: XNAS} -> ``tick_to_trade|venue=XNAS`` (OTHER kept as it is)."""
    return SEPARATOR.join(
        [tag, *(f"{d}={v if v == OTHER else quote(v, safe='')}" for d, v in values.items())]
    )


def parse_tag(tag: str) -> tuple[str, dict[str, str]]:
    """``tick_to_trade|venue=XNAS`` -> (``tick_to_trade``, {venue: XNAS}); a plain tag -> (tag, {})."""
    base, *parts = tag.split(SEPARATOR)
    values = {}
    for part in parts:
        dim, _, value = part.partition("=")
        values[dim] = value if value == OTHER else unquote(value)
    return base, values


def is_dimension_tag(tag: str) -> bool:
    return SEPARATOR in tag


def shown(value: str) -> str:
    """How a value is printed: OTHER as ``other``."""
    return "other" if value == OTHER else value
