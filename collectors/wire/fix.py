"""Orders: FIX frames as the venue's parser takes them (a copy of pipeline/fix.py's framing and
checks, which collectors may not import; a property test keeps the two equal), and the ClOrdID
that names an order's trace."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from .capture import WireError

FIX_BEGIN = b"8=FIX"
SOH = b"\x01"
# The header a frame must start with: BeginString of a FIX version, then BodyLength. The venue's
# parser (pipeline/fix.py) knows FIX.4.4 only; captures come from venues of any of these.
FIX_HEAD = re.compile(rb"8=FIX(?:\.4\.[0-4]|T\.1\.1)\x019=")
MAX_BODY_LENGTH_DIGITS = 9
MAX_FIX_MESSAGE = 64 * 1024  # bytes without a CheckSum field after which the receiver gives up


FIX44_HEAD = b"8=FIX.4.4\x019="  # the usual header: checked without the regex


def frame_by_body_length(buf: bytearray, pos: int) -> tuple[int, int]:
    """(end, body start) of the frame at ``pos`` when its BodyLength is at most 9 digits and points
    at a complete ``10=NNN<SOH>``; (0, 0) otherwise (``FixStream._by_body_length``)."""
    if buf.startswith(FIX44_HEAD, pos):
        at = pos + len(FIX44_HEAD)
    else:
        head = FIX_HEAD.match(buf, pos)
        if head is None:
            return 0, 0
        at = head.end()
    len_end = buf.find(SOH, at, at + MAX_BODY_LENGTH_DIGITS + 1)
    if len_end < 0 or not buf[at:len_end].isdigit():
        return 0, 0
    end = len_end + 1 + int(buf[at:len_end]) + 7
    if len(buf) < end or buf[end - 7 : end - 4] != b"10=" or buf[end - 1] != 1:
        return 0, 0
    return end, len_end + 1


# The byte sum mod 256 is Adler-32's low half minus one while the sum stays below 65521, i.e. for up
# to 256 bytes at a time: one C call per 256 bytes (pipeline/fix.py's checksum, which collectors
# may not import).
_ADLER_CHUNK = 256
# "<SOH>10=NNN<SOH>" -> what the byte sum of the whole frame (trailer included) must be mod 256
_TRAILER_SUM = {b"\x0110=%03d\x01" % n: (sum(b"10=%03d\x01" % n) + n) & 0xFF for n in range(256)}
# A body every receiver takes as it is: MsgType first, then canonical tag=value<SOH> fields.
_BODY_SHAPE = re.compile(rb"35=[^\x01]*+\x01(?:[1-9][0-9]{0,8}+=[^\x01]*+\x01)*+")


def _byte_sum(data: bytes) -> int:
    view = memoryview(data)
    total = 0
    for i in range(0, len(data), _ADLER_CHUNK):
        total += (zlib.adler32(view[i : i + _ADLER_CHUNK]) & 0xFFFF) - 1
    return total & 0xFF


def fix_refusal(frame: bytes, body: int = 0) -> tuple[str, int]:
    """("", body start) for a frame the venue's ``fix.parse`` accepts; (reason, 0) otherwise, the
    reason ``"checksum"`` (a CheckSum value that is not the byte sum: no acceptor takes it) or
    ``"malformed"`` (BodyLength, trailer or a field not as FIX has them). ``body``: where the body
    starts when BodyLength is known to end the frame at its CheckSum field (``frames`` says)."""
    if body:
        expect = _TRAILER_SUM.get(frame[-8:])
        if expect is not None and _BODY_SHAPE.fullmatch(frame, body, len(frame) - 7) is not None:
            total = zlib.adler32(frame) - 1 if len(frame) <= _ADLER_CHUNK else _byte_sum(frame)
            return ("", body) if total & 0xFF == expect else ("checksum", 0)
    head = FIX_HEAD.match(frame)
    if head is None:
        return "malformed", 0
    at = head.end()
    len_end = frame.find(SOH, at)
    if len_end < 0 or not frame[at:len_end].isdigit() or len_end - at > MAX_BODY_LENGTH_DIGITS:
        return "malformed", 0
    body = len_end + 1
    trailer = body + int(frame[at:len_end])
    if len(frame) != trailer + 7:
        return "malformed", 0
    expect = _TRAILER_SUM.get(frame[-8:])
    if expect is not None and _BODY_SHAPE.fullmatch(frame, body, trailer) is not None:  # the usual frame
        total = zlib.adler32(frame) - 1 if len(frame) <= _ADLER_CHUNK else _byte_sum(frame)
        return ("", body) if total & 0xFF == expect else ("checksum", 0)
    sum_text = frame[trailer + 3 : trailer + 6]
    if frame[trailer - 1 : trailer + 3] != b"\x0110=" or frame[-1] != 1 or not sum_text.isdigit():
        return "malformed", 0
    if int(sum_text) != _byte_sum(frame[:trailer]):
        return "checksum", 0
    if not frame.startswith(b"35=", body):
        return "malformed", 0
    for item in frame[body : trailer - 1].split(SOH):
        tag, eq, _ = item.partition(b"=")
        if not eq or not tag.isdigit() or len(tag) > 4300:  # 4300: int()'s digit limit, fix.parse's too
            return "malformed", 0
    return "", body


def fix_field(frame: bytes, field: bytes) -> bytes | None:
    at = frame.find(field)
    if at < 0:
        return None
    start = at + len(field)
    end = frame.find(b"\x01", start)
    return frame[start:end] if end >= 0 else None


DEFAULT_CLORDID_TAG = 11
# The first run of digits is the trace id, digits after a '.' right behind it the leg:
# TS<trace id>.<leg>-<n> from the bundled traders; TS<trace id>-<n> (no leg) is leg 0.
DEFAULT_CLORDID_REGEX = r"(\d+)(?:\.(\d+))?"
MAX_LEG = 0xFFFF  # a ring record's leg is a u16 (probe/layout.py)


@dataclass
class OrderMapping:
    """Which FIX tag carries the trace and how to read it: regex group 1 the trace id, group 2
    (optional) the leg, i.e. which order of its tick this is; leg 0 when the regex has no group 2
    or it took no part in the match, so one order per tick needs no leg in its ClOrdID."""

    tag: int = DEFAULT_CLORDID_TAG
    regex: str = DEFAULT_CLORDID_REGEX

    def __post_init__(self):
        try:
            self.pattern = re.compile(self.regex.encode())
        except re.error as e:
            raise WireError(f"--clordid-regex {self.regex!r} is not a regular expression: {e}") from None
        if self.pattern.groups < 1:
            raise WireError(
                f"--clordid-regex {self.regex!r} has no group (put one group (...) around the trace id digits)"
            )
        self.field = b"\x01%d=" % self.tag

    def trace_leg(self, value: bytes) -> tuple[int, int] | None:
        """(trace id, leg) named by ``value``; None when it names no trace."""
        m = self.pattern.search(value)
        if m is None:
            return None
        digits = m.group(1)  # None when the regex matched through another branch: '(a)|(\d+)'
        if digits is None:
            return None
        leg = m.group(2) if self.pattern.groups >= 2 else None
        try:
            return int(digits), int(leg) if leg is not None else 0
        except ValueError:
            return None
