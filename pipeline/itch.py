"""NASDAQ TotalView-ITCH 5.0 messages in MoldUDP64 packets: encoders, a zero-copy decoder, files.

Layouts follow the ITCH 5.0 specification: big endian, every message starts with
type (1 byte), stock locate (u16), tracking number (u16) and a 6-byte timestamp (nanoseconds
since midnight), prices are u32 with 4 implied decimals. Only the messages an order-level book
needs are decoded; others of known length are skipped and counted, unknown ones are malformed.

MoldUDP64 downstream packet: session (10 bytes), sequence number of the first message (u64),
message count (u16; 0 = heartbeat, 0xFFFF = end of session), then per message a u16 length and
the message. Sequence numbers let the receiver see gaps; it counts them and goes on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEADER = ">cHHHI"  # type, locate, tracking, timestamp high 16 bits, low 32 bits

SYSTEM_EVENT = struct.Struct(HEADER + "c")
STOCK_DIRECTORY = struct.Struct(HEADER + "8sccIcc2scccccIc")
ADD_ORDER = struct.Struct(HEADER + "QcI8sI")
ADD_ORDER_MPID = struct.Struct(HEADER + "QcI8sI4s")
ORDER_EXECUTED = struct.Struct(HEADER + "QIQ")
ORDER_EXECUTED_PRICE = struct.Struct(HEADER + "QIQcI")
ORDER_CANCEL = struct.Struct(HEADER + "QI")
ORDER_DELETE = struct.Struct(HEADER + "Q")
ORDER_REPLACE = struct.Struct(HEADER + "QQII")
TRADE = struct.Struct(HEADER + "QcI8sIQ")

DECODED = {
    b"S": SYSTEM_EVENT,
    b"R": STOCK_DIRECTORY,
    b"A": ADD_ORDER,
    b"F": ADD_ORDER_MPID,
    b"E": ORDER_EXECUTED,
    b"C": ORDER_EXECUTED_PRICE,
    b"X": ORDER_CANCEL,
    b"D": ORDER_DELETE,
    b"U": ORDER_REPLACE,
    b"P": TRADE,
}
# Lengths of the ITCH 5.0 messages this feed handler skips (known, valid, not needed for the book).
SKIPPED_LENGTHS = {b"H": 25, b"Y": 20, b"L": 26, b"V": 35, b"W": 12, b"K": 28, b"J": 35, b"h": 21,
                   b"Q": 40, b"B": 19, b"I": 50, b"N": 20, b"O": 48}  # fmt: skip
LENGTHS = {k[0]: s.size for k, s in DECODED.items()} | {k[0]: n for k, n in SKIPPED_LENGTHS.items()}

MOLD_HEADER = struct.Struct(">10sQH")
MOLD_LENGTH = struct.Struct(">H")
MOLD_HEARTBEAT = 0
MOLD_END_OF_SESSION = 0xFFFF

PRICE_SCALE = 10_000


def split_ts(ts_ns: int) -> tuple[int, int]:
    return (ts_ns >> 32) & 0xFFFF, ts_ns & 0xFFFFFFFF


def stock8(symbol: str) -> bytes:
    return symbol.encode("ascii")[:8].ljust(8)


# -- encoders (the venue's side) ---------------------------------------------------------------
def system_event(locate: int, tracking: int, ts: int, code: bytes) -> bytes:
    return SYSTEM_EVENT.pack(b"S", locate, tracking, *split_ts(ts), code)


def stock_directory(locate: int, tracking: int, ts: int, symbol: str, round_lot: int = 100) -> bytes:
    return STOCK_DIRECTORY.pack(b"R", locate, tracking, *split_ts(ts), stock8(symbol), b"Q", b"N", round_lot, b"N",
                                b"C", b"Z ", b"P", b"N", b"N", b"1", b"N", 0, b"N")  # fmt: skip


def add_order(
    locate: int, tracking: int, ts: int, ref: int, side: bytes, shares: int, symbol: str, price: int
) -> bytes:
    return ADD_ORDER.pack(b"A", locate, tracking, *split_ts(ts), ref, side, shares, stock8(symbol), price)


def order_executed(locate: int, tracking: int, ts: int, ref: int, shares: int, match: int) -> bytes:
    return ORDER_EXECUTED.pack(b"E", locate, tracking, *split_ts(ts), ref, shares, match)


def order_cancel(locate: int, tracking: int, ts: int, ref: int, shares: int) -> bytes:
    return ORDER_CANCEL.pack(b"X", locate, tracking, *split_ts(ts), ref, shares)


def order_delete(locate: int, tracking: int, ts: int, ref: int) -> bytes:
    return ORDER_DELETE.pack(b"D", locate, tracking, *split_ts(ts), ref)


def order_replace(
    locate: int, tracking: int, ts: int, old_ref: int, new_ref: int, shares: int, price: int
) -> bytes:
    return ORDER_REPLACE.pack(b"U", locate, tracking, *split_ts(ts), old_ref, new_ref, shares, price)


def trade(
    locate: int,
    tracking: int,
    ts: int,
    ref: int,
    side: bytes,
    shares: int,
    symbol: str,
    price: int,
    match: int,
) -> bytes:
    return TRADE.pack(b"P", locate, tracking, *split_ts(ts), ref, side, shares, stock8(symbol), price, match)


def mold_packet(session: bytes, first_seq: int, messages: list[bytes]) -> bytes:
    parts = [MOLD_HEADER.pack(session, first_seq, len(messages))]
    for m in messages:
        parts.append(MOLD_LENGTH.pack(len(m)))
        parts.append(m)
    return b"".join(parts)


def mold_heartbeat(session: bytes, next_seq: int) -> bytes:
    return MOLD_HEADER.pack(session, next_seq, MOLD_HEARTBEAT)


def mold_end_of_session(session: bytes, next_seq: int) -> bytes:
    return MOLD_HEADER.pack(session, next_seq, MOLD_END_OF_SESSION)


# -- decoding (the trader's side) ----------------------------------------------------------------
def decode(buf, offset: int, length: int) -> tuple | None:
    """One message at ``buf[offset:offset+length]`` -> its fields (type first), or None to skip.

    Raises ValueError (only) for an empty message, an unknown type or a length that does not match
    the type; the message must lie inside ``buf`` (``MoldReceiver.packet`` checks the framing).
    """
    if not length:  # its type byte would be the next message's, or past the packet
        raise ValueError("empty ITCH message (length 0)")
    kind = buf[offset]
    expected = LENGTHS.get(kind)
    if expected is None:
        raise ValueError(f"unknown ITCH message type {bytes([kind])!r}")
    if length != expected:
        raise ValueError(f"ITCH {bytes([kind])!r} message of {length} bytes, expected {expected}")
    fmt = DECODED.get(bytes([kind]))
    return fmt.unpack_from(buf, offset) if fmt is not None else None


def timestamp_of(fields: tuple) -> int:
    return (fields[3] << 32) | fields[4]


@dataclass
class FeedStats:
    packets: int = 0
    messages: int = 0
    skipped: int = 0
    heartbeats: int = 0
    gaps: int = 0  # gap events
    gap_messages: int = 0  # messages missed in them
    stale_packets: int = 0  # duplicates / sequence went backwards
    malformed_packets: int = 0
    malformed_messages: int = 0
    end_of_session: bool = False


# A sequence number is a u64 on the wire and the trace id of its message in the rings: a packet
# whose numbers (and the next expected one) would not fit is malformed, not a crash.
MAX_NEXT_SEQ = (1 << 64) - 1


class MoldReceiver:
    """Frames MoldUDP64 packets into ITCH messages, in sequence, counting gaps and damage.

    ``packet(buf, n)`` yields ``(sequence number, offset, length)`` of each new message (the caller
    decodes, so that decoding can be timed per message); ``messages(buf, n)`` decodes too. Neither
    raises for bad input: damage is counted in ``stats``, the last reason kept in ``last_error``.
    """

    def __init__(self):
        self.expected_seq: int | None = None
        self.session: bytes | None = None
        self.stats = FeedStats()
        self.last_error = ""

    def packet(self, buf, n: int) -> Iterator[tuple[int, int, int]]:
        st = self.stats
        st.packets += 1
        if n < MOLD_HEADER.size:
            st.malformed_packets += 1
            self.last_error = f"MoldUDP64 packet of {n} bytes is shorter than its 20-byte header"
            return
        session, seq, count = MOLD_HEADER.unpack_from(buf, 0)
        self.session = session
        if count == MOLD_HEARTBEAT:
            st.heartbeats += 1
            self._advance_to(seq)
            return
        if count == MOLD_END_OF_SESSION:
            st.end_of_session = True
            return
        next_seq = seq + count
        if self.expected_seq is not None and next_seq <= self.expected_seq:
            st.stale_packets += 1
            return
        if next_seq > MAX_NEXT_SEQ:
            st.malformed_packets += 1
            self.last_error = f"MoldUDP64 packet seq {seq}: its {count} messages would number past 2^64 - 1"
            return
        # Validate the framing before handing out anything: a count mismatch spoils the packet.
        offsets = []
        pos = MOLD_HEADER.size
        for _ in range(count):
            if pos + 2 > n:
                break
            (length,) = MOLD_LENGTH.unpack_from(buf, pos)
            if pos + 2 + length > n:
                break
            offsets.append((pos + 2, length))
            pos += 2 + length
        if len(offsets) != count or pos != n:
            st.malformed_packets += 1
            self.last_error = (
                f"MoldUDP64 packet seq {seq}: header says {count} messages, framing holds {len(offsets)}"
            )
            self._advance_to(seq + count)
            return
        self._advance_to(seq)
        for i, (off, length) in enumerate(offsets):
            msg_seq = seq + i
            if self.expected_seq is not None and msg_seq < self.expected_seq:
                continue  # overlap with what we already have
            self.expected_seq = msg_seq + 1
            yield msg_seq, off, length

    def decode(self, buf, off: int, length: int, seq: int) -> tuple | None:
        """``itch.decode`` that counts instead of raising: None for skipped or malformed messages."""
        try:
            fields = decode(buf, off, length)
        except ValueError as e:
            self.stats.malformed_messages += 1
            self.last_error = f"seq {seq}: {e}"
            return None
        if fields is None:
            self.stats.skipped += 1
            return None
        self.stats.messages += 1
        return fields

    def messages(self, buf, n: int) -> Iterator[tuple[int, tuple]]:
        """(sequence number, decoded fields) of every usable message of a packet."""
        for seq, off, length in self.packet(buf, n):
            fields = self.decode(buf, off, length, seq)
            if fields is not None:
                yield seq, fields

    def _advance_to(self, seq: int) -> None:
        if self.expected_seq is not None and seq > self.expected_seq:
            self.stats.gaps += 1
            self.stats.gap_messages += seq - self.expected_seq
            self.last_error = f"gap: expected seq {self.expected_seq}, got {seq}"
        if self.expected_seq is None or seq > self.expected_seq:
            self.expected_seq = seq


# -- ITCH files (NASDAQ's layout: each message preceded by a big-endian u16 length) -------------
class ItchFileError(Exception):
    pass


def write_itch_file(path: str | Path, messages) -> int:
    n = 0
    with open(path, "wb") as f:
        for m in messages:
            f.write(MOLD_LENGTH.pack(len(m)))
            f.write(m)
            n += 1
    return n


def read_itch_file(path: str | Path) -> Iterator[bytes]:
    """Messages of an ITCH 5.0 file; ItchFileError (one line) at the first thing that is not ITCH."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ItchFileError(f"cannot read ITCH file {p}: {e.strerror or e}") from None
    return itch_file_messages(data, str(p))


def itch_file_messages(data: bytes, name: str = "ITCH data") -> Iterator[bytes]:
    """The messages of an ITCH 5.0 file's bytes; ItchFileError (one line naming ``name``) otherwise."""
    pos, index = 0, 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ItchFileError(f"{name}: truncated after {index} messages (dangling length byte)")
        (length,) = MOLD_LENGTH.unpack_from(data, pos)
        body = data[pos + 2 : pos + 2 + length]
        if length == 0 or len(body) != length:
            raise ItchFileError(
                f"{name}: not an ITCH 5.0 file (message {index} at byte {pos}: length {length} runs past the end)"
            )
        expected = LENGTHS.get(body[0])
        if expected is None or expected != length:
            what = (
                f"unknown type {body[:1]!r}"
                if expected is None
                else f"type {body[:1]!r} with {length} bytes, expected {expected}"
            )
            raise ItchFileError(f"{name}: not an ITCH 5.0 file (message {index} at byte {pos}: {what})")
        yield body
        pos += 2 + length
        index += 1
