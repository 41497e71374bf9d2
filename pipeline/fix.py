"""FIX 4.4: a validating parser, an encoder, and a NewOrderSingle template for the hot path.

The parser checks what ``simplefix`` does not: BodyLength(9) must count the bytes from after
its own field to the CheckSum field, CheckSum(10) must be the byte sum modulo 256, and every field
must be ``tag=value<SOH>``; all of that before ``parse`` returns. The map of fields by tag is
built on the first lookup. ``FixStream`` splits a TCP byte stream into messages and reports damage
as ``FixError`` values (one-line reasons) instead of raising into the event loop.

``OrderTemplate`` encodes NewOrderSingle the way fast engines do: the constant parts are
pre-built once; per order there is one ``%`` format of the variable fields and one byte sum.
"""

from __future__ import annotations

import re
import time
import zlib

SOH = b"\x01"
BEGIN_STRING = b"FIX.4.4"
_HEAD = b"8=FIX.4.4\x019="
_LENGTH_AT = len(_HEAD)  # where BodyLength's digits start

# Tags used here (FIX 4.4 names).
BeginString, BodyLength, MsgType, SenderCompID, TargetCompID, MsgSeqNum = 8, 9, 35, 49, 56, 34
SendingTime, CheckSum, PossDupFlag, TestReqID, HeartBtInt, ResetSeqNumFlag = 52, 10, 43, 112, 108, 141
EncryptMethod, Text, RefSeqNum, RefTagID, SessionRejectReason = 98, 58, 45, 371, 373
BeginSeqNo, EndSeqNo, NewSeqNo, GapFillFlag, OrigSendingTime = 7, 16, 36, 123, 122
ClOrdID, OrigClOrdID, OrderID, ExecID, ExecType, OrdStatus = 11, 41, 37, 17, 150, 39
Symbol, Side, OrderQty, OrdType, Price, TimeInForce, TransactTime, HandlInst = 55, 54, 38, 40, 44, 59, 60, 21
LastQty, LastPx, CumQty, LeavesQty, AvgPx, OrdRejReason = 32, 31, 14, 151, 6, 103

LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT = (
    b"A",
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
)
NEW_ORDER_SINGLE, ORDER_CANCEL_REQUEST, EXECUTION_REPORT, ORDER_CANCEL_REJECT = b"D", b"F", b"8", b"9"
ADMIN_TYPES = frozenset((LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT))


class FixError(ValueError):
    """A message that is not valid FIX; the text is one line for the log and the Reject's Text."""


# The byte sum is Adler-32's low half: A = (1 + sum of the bytes) mod 65521, exact while the sum
# stays below 65520, i.e. for up to 256 bytes at a time. One C call per 256 bytes instead of an
# interpreter-level sum() over every byte (about 10x faster for a NewOrderSingle).
_ADLER_CHUNK = 256


def checksum(data: bytes) -> int:
    if len(data) <= _ADLER_CHUNK:
        return ((zlib.adler32(data) & 0xFFFF) - 1) & 0xFF
    view = memoryview(data)
    total = 0
    for i in range(0, len(data), _ADLER_CHUNK):
        total += (zlib.adler32(view[i : i + _ADLER_CHUNK]) & 0xFFFF) - 1
    return total & 0xFF


_second_cache: list = [-1, b""]


def utc_timestamp(ns: int | None = None) -> bytes:
    """FIX UTCTimestamp with milliseconds: 20261125-07:30:00.123 (the date part cached per second)."""
    ns = time.time_ns() if ns is None else ns
    secs, rem = divmod(ns, 1_000_000_000)
    if _second_cache[0] != secs:
        _second_cache[0], _second_cache[1] = (
            secs,
            time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(secs)).encode(),
        )
    return b"%s.%03d" % (_second_cache[1], rem // 1_000_000)


def encode(msg_type: bytes, fields: list[tuple[int, object]]) -> bytes:
    """A complete message: BeginString, BodyLength, MsgType, the fields in order, CheckSum."""
    body = b"35=" + msg_type + SOH + b"".join(b"%d=%s\x01" % (t, _b(v)) for t, v in fields)
    head = _HEAD + str(len(body)).encode() + SOH
    msg = head + body
    return msg + b"10=%03d\x01" % checksum(msg)


def _b(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, float):
        return (b"%.4f" % v).rstrip(b"0").rstrip(b".")
    return str(v).encode()


_TAG_TEXT = [b"%d" % i for i in range(10_000)]  # every standard and user-defined tag


def tag_text(tag: int) -> bytes:
    """A tag's canonical text (no leading zeros): the key of ``FixMessage.by_text``."""
    return _TAG_TEXT[tag] if 0 <= tag < 10_000 else b"%d" % tag


class FixMessage:
    """A message ``parse`` has checked whole: its MsgType, its bytes, and its fields by canonical tag
    text (``by_text``) and by tag number (``fields``), both built on first use."""

    __slots__ = ("msg_type", "raw", "_body_start", "_by_text", "_fields")

    def __init__(
        self, msg_type: bytes, raw: bytes, body_start: int, by_text: dict[bytes, bytes] | None = None
    ):
        self.msg_type, self.raw, self._body_start, self._by_text = msg_type, raw, body_start, by_text
        self._fields: dict[int, bytes] | None = None

    @property
    def by_text(self) -> dict[bytes, bytes]:
        if self._by_text is None:
            self._by_text = _field_map(self.raw[self._body_start : -7])
        return self._by_text

    @property
    def fields(self) -> dict[int, bytes]:
        if self._fields is None:
            self._fields = {int(t): v for t, v in self.by_text.items()}
        return self._fields

    def get(self, tag: int, default: bytes | None = None) -> bytes | None:
        by_text = self._by_text
        if by_text is None:
            by_text = self.by_text
        return by_text.get(_TAG_TEXT[tag] if 0 <= tag < 10_000 else b"%d" % tag, default)

    def int(self, tag: int, default: int = 0) -> int:
        """A FIX int field; FieldError (a session-level Reject) when it is not one."""
        v = self.get(tag)
        return default if v is None else parse_int(v, tag)

    def __eq__(self, other) -> bool:
        if not isinstance(other, FixMessage):
            return NotImplemented
        return (self.msg_type, self.by_text, self.raw) == (other.msg_type, other.by_text, other.raw)

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"FixMessage(msg_type={self.msg_type!r}, fields={self.fields!r}, raw={self.raw!r})"


def _field_map(body: bytes) -> dict[bytes, bytes]:
    """The fields of a body ``parse`` accepted (every tag canonical, every field ending in SOH)."""
    pairs = body.replace(b"=", SOH).split(SOH)  # tag, value, tag, value, ..., b""
    if len(pairs) == 2 * body.count(SOH) + 1:  # one '=' per field: the split cut tags from values
        it = iter(pairs)
        return dict(zip(it, it))  # noqa: B905 - the trailing b"" is left over, by design
    return dict(field.split(b"=", 1) for field in body[:-1].split(SOH))  # some value holds a '='


class FieldError(FixError):
    """A well-framed message with a field the session cannot use: answered with a Reject(35=3)
    naming the tag (RefTagID 371) and SessionRejectReason(373), never an exception to the caller."""

    REQUIRED_TAG_MISSING, VALUE_INCORRECT, INCORRECT_DATA_FORMAT = 1, 5, 6

    def __init__(self, text: str, tag: int, reason: int):
        super().__init__(text)
        self.tag, self.reason = tag, reason


# A value of a FIX int field: ASCII digits with an optional leading '-', at most 18 digits (int64).
# Parsed by hand because int() also takes '+', whitespace, '_' and non-ASCII digits.
_MAX_INT_DIGITS = 18


def parse_int(v: bytes, tag: int = 0) -> int:
    digits = v[1:] if v[:1] == b"-" else v
    if not digits.isdigit() or len(digits) > _MAX_INT_DIGITS:  # bytes.isdigit: ASCII only
        raise FieldError(f"tag {tag} is not an integer: {v[:20]!r}", tag, FieldError.INCORRECT_DATA_FORMAT)
    return int(v)


def parse_price(v: bytes, tag: int = Price) -> int:
    """A FIX Price (e.g. b"101.23") -> price units of 1/10000, exactly; FieldError otherwise."""
    whole, dot, frac = v.partition(b".")
    frac = frac.rstrip(b"0")
    if not whole.isdigit() or len(whole) > 12 or (frac and not frac.isdigit()) or len(frac) > 4:
        raise FieldError(f"tag {tag} is not a price with at most 4 decimals: {v[:20]!r}", tag,
                         FieldError.INCORRECT_DATA_FORMAT)  # fmt: skip
    return int(whole) * 10_000 + int((frac + b"0000")[:4])


# A body holds at most FixStream.MAX_MESSAGE bytes: BodyLength has at most 5 digits, and a
# 9-digit bound leaves room for callers that parse bigger messages without int()'s digit limit.
_MAX_BODY_LENGTH_DIGITS = 9

# parse's fast path accepts a body of exactly this shape: MsgType first, then every field a tag
# in canonical form (ASCII digits without a leading zero: the key tag_text gives; at most 9, so a
# hostile tag never reaches int() in ``fields``: longer ones take the slow path) '=' a value
# without SOH, SOH. The possessive quantifiers make it one pass with no backtracking, linear on
# any input; in C it costs less than splitting the body would.
_BODY_SHAPE = re.compile(rb"35=[^\x01]*+\x01(?:[1-9][0-9]{0,8}+=[^\x01]*+\x01)*+")

# The last 8 bytes of a message, "<SOH>10=NNN<SOH>" for NNN in 000..255 -> what the byte sum of the
# whole message (trailer included) must be mod 256 when its CheckSum is NNN: one dict lookup
# checks the trailer's shape and range and saves slicing the trailer off before summing.
_TRAILER_SUM = {b"\x0110=%03d\x01" % n: (sum(b"10=%03d\x01" % n) + n) & 0xFF for n in range(256)}


def parse(raw: bytes) -> FixMessage:
    """One complete message -> FixMessage; FixError if the framing is not exactly FIX: BeginString,
    BodyLength (ASCII digits only), every field ``tag=value<SOH>``, CheckSum exactly three digits.

    Every check is done here; only the field map waits for its first lookup. The common case takes
    a handful of C calls (``_checked``); anything it does not accept as it is (a problem, a tag
    with a leading zero, a BodyLength not ending at the CheckSum field) is parsed again field by
    field, which gives the same message or the FixError naming the first thing wrong."""
    len_end = raw.find(SOH, _LENGTH_AT, _LENGTH_AT + _MAX_BODY_LENGTH_DIGITS + 1)
    if len_end > 0 and raw.startswith(_HEAD):
        length_text = raw[_LENGTH_AT:len_end]
        if length_text.isdigit() and len_end + 8 + int(length_text) == len(raw):
            msg = _checked(raw, len_end + 1)
            if msg is not None:
                return msg
    return _parse_field_by_field(raw)


def _checked(raw: bytes, body_start: int) -> FixMessage | None:
    """The message, when BeginString and BodyLength are known good (the body ends 7 bytes before
    the end) and the trailer, CheckSum and every field are well formed; None otherwise."""
    expect = _TRAILER_SUM.get(raw[-8:])
    if expect is None:
        return None
    # checksum() inlined for the common case (<= 256 bytes: Adler-32's low half is 1 + the byte sum)
    total = zlib.adler32(raw) - 1 if len(raw) <= _ADLER_CHUNK else checksum(raw)
    if total & 0xFF != expect or _BODY_SHAPE.fullmatch(raw, body_start, len(raw) - 7) is None:
        return None
    return FixMessage(raw[body_start + 3 : raw.find(SOH, body_start + 3)], raw, body_start)


def _parse_field_by_field(raw: bytes) -> FixMessage:
    """parse's slow path: every check in order, FixError naming the first that fails."""
    if not raw.startswith(_HEAD):
        raise FixError(f"does not start with 8=FIX.4.4|9=: {raw[:20]!r}")
    len_end = raw.find(SOH, _LENGTH_AT)
    if len_end < 0:
        raise FixError("no SOH after BodyLength")
    length_text = raw[_LENGTH_AT:len_end]
    if not length_text.isdigit() or len(length_text) > _MAX_BODY_LENGTH_DIGITS:
        raise FixError(f"BodyLength is not a number: {length_text[:20]!r}")
    body_start = len_end + 1
    trailer = body_start + int(length_text)
    sum_text = raw[trailer + 3 : trailer + 6]
    if (
        raw[trailer - 1 : trailer + 3] != b"\x0110="
        or len(raw) != trailer + 7
        or raw[-1] != 1
        or not sum_text.isdigit()
    ):
        _trailer_error(raw, trailer)
    actual = checksum(raw[:trailer])
    if int(sum_text) != actual:
        raise FixError(f"CheckSum {int(sum_text):03d} does not match the computed {actual:03d}")
    fields = _parse_fields(raw[body_start : trailer - 1].split(SOH))
    if MsgType not in fields or not raw.startswith(b"35=", body_start):
        raise FixError("MsgType(35) must be the third field")
    msg_type = raw[body_start + 3 : raw.find(SOH, body_start + 3)]
    return FixMessage(msg_type, raw, body_start, {tag_text(t): v for t, v in fields.items()})


def _trailer_error(raw: bytes, trailer: int) -> None:
    """Raises the FixError naming what is wrong with the CheckSum field or what precedes it."""
    if raw[trailer : trailer + 3] != b"10=":
        raise FixError(
            f"BodyLength {trailer - raw.find(SOH, _LENGTH_AT) - 1} does not end at the CheckSum field"
        )
    if raw[trailer - 1 : trailer] != SOH:
        raise FixError("the field before CheckSum does not end in SOH")
    if len(raw) != trailer + 7 or raw[-1:] != SOH:
        raise FixError("CheckSum field is not 10=NNN| at the end of the message")
    raise FixError(f"CheckSum is not 3 digits: {raw[trailer + 3 : trailer + 6]!r}")


def _parse_fields(items: list[bytes]) -> dict[int, bytes]:
    """Field by field: FixError naming the first malformed field."""
    fields: dict[int, bytes] = {}
    try:
        for item in items:
            tag, eq, value = item.partition(b"=")
            if not eq or not tag.isdigit():
                raise FixError(f"malformed field {item[:30]!r}")
            fields[int(tag)] = value
    except FixError:
        raise
    except ValueError:  # int() refuses a tag of more than 4300 digits
        raise FixError(f"malformed field {item[:30]!r}") from None
    return fields


def execution_fields(msg: FixMessage) -> tuple[bytes, bytes, int, int]:
    """(ClOrdID, ExecType, LastQty, LastPx in price units) of an ExecutionReport, every field
    checked before the caller changes anything; FieldError for one that is not usable."""
    last_px = parse_price(msg.get(LastPx, b"0"), LastPx)
    last_qty = msg.int(LastQty)
    if last_qty < 0:
        raise FieldError(f"LastQty(32) is negative: {last_qty}", LastQty, FieldError.VALUE_INCORRECT)
    return msg.get(ClOrdID, b""), msg.get(ExecType, b""), last_qty, last_px


class FixStream:
    """Splits a TCP byte stream into FIX messages, each parsed or reported as a FixError."""

    MAX_MESSAGE = 64 * 1024

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[FixMessage | FixError]:
        self.buf += data
        out: list[FixMessage | FixError] = []
        while True:
            start = self.buf.find(b"8=FIX")
            if start < 0:
                if len(self.buf) > 16:
                    out.append(FixError(f"garbage without BeginString: {bytes(self.buf[:20])!r}"))
                    # Keep a tail that may be the start of the next BeginString (b"8=F" ...).
                    keep = next((k for k in range(4, 0, -1) if self.buf.endswith(b"8=FIX"[:k])), 0)
                    del self.buf[: len(self.buf) - keep]
                return out
            if start > 0:
                out.append(FixError(f"garbage before BeginString: {bytes(self.buf[: min(start, 20)])!r}"))
                del self.buf[:start]
            framed, body_start = self._by_body_length()
            if framed:
                raw = bytes(self.buf[:framed])
                del self.buf[:framed]
                # BeginString and BodyLength are checked already: straight to parse's fast path.
                msg = _checked(raw, body_start)
                out.append(msg if msg is not None else _parse_or_error(raw))
                continue
            # BodyLength unusable, or the message is not all here yet: the first CheckSum field ends it.
            end = self.buf.find(b"\x0110=", 0)
            # A message cut short (no CheckSum) followed by a whole one: report the first alone,
            # so that the second is not lost with it.
            restart = self.buf.find(_HEAD, 1, end if end >= 0 else len(self.buf))
            if restart > 0:
                out.append(FixError(f"message without CheckSum: {bytes(self.buf[: min(restart, 20)])!r}"))
                del self.buf[:restart]
                continue
            if end < 0 or len(self.buf) < end + 8:
                if len(self.buf) > self.MAX_MESSAGE:
                    out.append(FixError("message longer than 64 KiB without a CheckSum"))
                    del self.buf[:]
                return out
            raw = bytes(self.buf[: end + 8])
            del self.buf[: end + 8]
            out.append(_parse_or_error(raw))

    def _by_body_length(self) -> tuple[int, int]:
        """(length, body start) of the message at the start of the buffer when its BodyLength is
        digits and points at a complete ``10=NNN<SOH>`` (a field without its SOH is then parse's to
        report); (0, 0) otherwise."""
        buf = self.buf
        if not buf.startswith(_HEAD):
            return 0, 0
        len_end = buf.find(SOH, _LENGTH_AT, _LENGTH_AT + _MAX_BODY_LENGTH_DIGITS + 1)
        length_text = buf[_LENGTH_AT:len_end]
        if len_end < 0 or not length_text.isdigit():
            return 0, 0
        end = len_end + 1 + int(length_text) + 7
        if len(buf) < end or buf[end - 7 : end - 4] != b"10=" or buf[end - 1] != 1:
            return 0, 0
        return end, len_end + 1


def _parse_or_error(raw: bytes) -> FixMessage | FixError:
    try:
        return parse(raw)
    except FixError as e:
        return e


class OrderTemplate:
    """NewOrderSingle (IOC limit order) from a pre-built template: one format, one checksum per order."""

    def __init__(self, sender: str, target: str):
        self.sender, self.target = sender.encode(), target.encode()
        self.body_fmt = (b"35=D\x0149=" + self.sender + b"\x0156=" + self.target
                         + b"\x0134=%d\x0152=%s\x0111=%s\x0121=1\x0155=%s\x0154=%s\x0160=%s\x0138=%d\x0140=2\x0144=%s\x0159=3\x01")  # fmt: skip

    def encode(self, seq: int, clordid: bytes, symbol: bytes, side: bytes, qty: int, price: bytes,
               now: bytes | None = None) -> bytes:  # fmt: skip
        now = now or utc_timestamp()
        body = self.body_fmt % (seq, now, clordid, symbol, side, now, qty, price)
        msg = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
        return msg + b"10=%03d\x01" % (sum(msg) & 0xFF)


def price_text(price_units: int) -> bytes:
    """ITCH price units (1/10000) -> FIX Price text."""
    whole, frac = divmod(price_units, 10_000)
    return b"%d.%04d" % (whole, frac)
