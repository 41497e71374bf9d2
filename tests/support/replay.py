"""A recorded ITCH 5.0 day with uneven gaps, for replay at its own pace."""

from tickscope.pipeline import itch

T0 = 34_200_000_000_000  # 09:30:00 in ns since midnight
# Uneven gaps (1 us .. 40 ms) spanning 0.3 s: a pace that only looked at the mean would not match.
GAPS_NS = [1_000, 40_000_000, 7_000_000, 0, 13_000_000, 250_000, 39_000_000, 999] * 5


def recorded() -> list[bytes]:
    ts, msgs = T0, [itch.stock_directory(1, 0, T0, "AAPL")]
    for i, gap in enumerate(GAPS_NS):
        ts += gap
        msgs.append(itch.add_order(1, 0, ts, i + 1, b"B", 100, "AAPL", 1_000_000 + i))
    return msgs
