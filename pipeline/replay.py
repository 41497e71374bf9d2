"""Replay of an ITCH 5.0 file at its own pace: each message leaves at its recorded timestamp
(ns since midnight) divided by the speed, as STAC-T1 replays a market at 1x and 8x.

The plan is computed before the first send: packets of messages that share a timestamp, each with
its *intended* send offset from the first message. The venue waits for each offset and stamps the
packet's messages with that intended time, so a sender that falls behind still shows the delay
(coordinated omission stays visible).

A message without a timestamp (shorter than the 11-byte ITCH header, or a zero timestamp) or
whose timestamp goes backwards is sent with the message before it, and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TS_OFFSET, TS_END = 5, 11  # type(1) locate(2) tracking(2) timestamp(6): ns since midnight


def parse_speed(text: str) -> float | None:
    """``1x``, ``2x``, ``0.5x``, ``8`` -> the factor; ``max`` -> None (no pacing). ValueError otherwise."""
    t = text.strip().lower()
    if t == "max":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*x?", t)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--speed {text!r}: expected a positive multiple like 1x, 2x, 8x, or max")
    return float(m.group(1))


def timestamp(msg: bytes) -> int | None:
    if len(msg) < TS_END:
        return None
    return int.from_bytes(msg[TS_OFFSET:TS_END], "big") or None


def restamp(msg: bytes, ts_ns: int) -> bytes:
    """The message with its timestamp replaced by ``ts_ns`` (ns since midnight)."""
    if len(msg) < TS_END:
        return msg
    return msg[:TS_OFFSET] + (ts_ns % 86_400_000_000_000).to_bytes(6, "big") + msg[TS_END:]


@dataclass
class ReplayPlan:
    packets: list[tuple[int, list[bytes]]] = field(default_factory=list)  # (intended offset ns, messages)
    file_span_ns: int = 0  # last timestamp - first timestamp in the file
    backwards: int = 0  # messages whose timestamp went backwards: sent with the one before
    untimed: int = 0  # messages without a timestamp: sent with the one before

    @property
    def intended_span_ns(self) -> int:
        return self.packets[-1][0] if self.packets else 0

    def problems(self, name: str) -> str | None:
        """One line about what could not be paced, or None."""
        parts = []
        if self.backwards:
            parts.append(f"{self.backwards} timestamps went backwards")
        if self.untimed:
            parts.append(f"{self.untimed} messages have no timestamp")
        if not parts:
            return None
        return f"replay {name}: {', '.join(parts)}: each sent with the message before it"


def plan(messages: list[bytes], speed: float | None, per_packet: int = 8) -> ReplayPlan:
    """The send plan at ``speed`` (None: as fast as possible, every offset 0).

    Offsets are exact: round((ts - first) / speed), so at 1x the plan spans the file's own span
    and at 2x half of it."""
    out = ReplayPlan()
    first = last = None
    for msg in messages:
        ts = timestamp(msg)
        if ts is None:
            out.untimed += 1
            ts = last
        elif last is not None and ts < last:
            out.backwards += 1
            ts = last
        if ts is not None and first is None:
            first = ts
        last = ts
        offset = 0 if ts is None or speed is None else round((ts - first) / speed)
        if out.packets and out.packets[-1][0] == offset and len(out.packets[-1][1]) < per_packet:
            out.packets[-1][1].append(msg)
        else:
            out.packets.append((offset, [msg]))
    out.file_span_ns = (last - first) if first is not None else 0
    return out


def check_file(path, speed_text: str) -> str | None:
    """Before a run: ValueError (one line) for a bad speed, an unreadable file or one with nothing
    to pace by; else the line about what will be sent with its neighbour, or None."""
    from . import itch

    factor = parse_speed(speed_text)
    try:
        messages = list(itch.read_itch_file(path))
    except itch.ItchFileError as e:
        raise ValueError(str(e)) from None
    p = plan(messages, factor)
    if factor is not None and not p.file_span_ns:
        raise ValueError(
            f"replay {path}: no timestamps to pace by (all absent or equal); use --speed max or --rate"
        )
    return p.problems(str(path))


def offered_rates(path, text: str) -> list[tuple[str, float]]:
    """``--replay FILE --speeds 1x,2x,8x`` -> [(speed, offered messages/s)], STAC-T1 style: the
    offered rate of a speed is the file's messages over its own span divided by the speed.
    ValueError (one line) for speeds that do not increase, an unreadable file or one with nothing
    to pace by (a sweep by speed, run before its first step)."""
    from . import itch

    items = [s.strip() for s in (text or "").split(",")]
    try:
        factors = [parse_speed(s) for s in items]
    except ValueError as e:
        raise ValueError(f"--speeds {text!r}: {e}") from None
    if any(f is None for f in factors) or any(b <= a for a, b in zip(factors, factors[1:], strict=False)):
        raise ValueError(
            f"--speeds {text!r}: give increasing multiples like 1x,2x,8x (max has no offered rate)"
        )
    try:
        messages = list(itch.read_itch_file(path))
    except itch.ItchFileError as e:
        raise ValueError(str(e)) from None
    span = plan(messages, 1.0).file_span_ns
    if not span:
        raise ValueError(f"--replay {path}: no timestamps to pace by, so no speed to sweep")
    return [(s, len(messages) * f / (span / 1e9)) for s, f in zip(items, factors, strict=True)]
