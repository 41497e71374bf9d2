"""FIX 4.4: our encoder and simplefix agree both ways; BodyLength and CheckSum are enforced."""

import pytest
import simplefix

from tickscope.pipeline import fix as F
from tickscope.pipeline.fix_session import FixSession


def simplefix_parse(raw: bytes) -> simplefix.FixMessage:
    p = simplefix.FixParser()
    p.append_buffer(raw)
    return p.get_message()


def test_order_template_is_valid_fix_that_simplefix_reads():
    t = F.OrderTemplate("TRADER", "VENUE")
    raw = t.encode(7, b"TS42", b"AAPL", b"1", 300, F.price_text(1_012_500))
    m = simplefix_parse(raw)
    assert m.get(35) == b"D" and m.get(11) == b"TS42" and m.get(44) == b"101.2500" and m.get(59) == b"3"
    for tag in (8, 9, 35, 49, 56, 34, 52, 11, 21, 55, 54, 60, 38, 40, 44, 59, 10):
        assert m.get(tag) is not None, tag
    ours = F.parse(raw)
    assert ours.fields[F.MsgSeqNum] == b"7" and ours.fields[F.Symbol] == b"AAPL"


def test_our_parser_reads_what_simplefix_encodes():
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.4")
    m.append_pair(35, "8")
    m.append_pair(49, "VENUE")
    m.append_pair(56, "TRADER")
    m.append_pair(34, 12)
    m.append_pair(150, "F")
    m.append_pair(31, "100.5")
    raw = m.encode()
    parsed = F.parse(raw)
    assert parsed.msg_type == F.EXECUTION_REPORT and parsed.int(34) == 12 and parsed.get(31) == b"100.5"


def test_bad_checksum_and_body_length_are_rejected():
    raw = F.encode(F.HEARTBEAT, [(49, "A"), (56, "B"), (34, 1)])
    bad_sum = raw[:-4] + b"%03d\x01" % ((int(raw[-4:-1]) + 1) % 256)
    for broken, needle in ((bad_sum, "CheckSum"), (raw.replace(b"9=", b"9=1", 1), "BodyLength"),
                           (b"8=FIX.4.2\x019=5\x01", "does not start")):  # fmt: skip
        try:
            F.parse(broken)
        except F.FixError as e:
            assert needle in str(e) and "\n" not in str(e)
        else:
            raise AssertionError(f"accepted {broken!r}")


def test_stream_splits_messages_and_reports_garbage():
    a = F.encode(F.HEARTBEAT, [(49, "A"), (56, "B"), (34, 1)])
    b = F.encode(F.TEST_REQUEST, [(49, "A"), (56, "B"), (34, 2), (112, "x")])
    s = F.FixStream()
    out = s.feed(b"junk!" + a + b[:10]) + s.feed(b[10:])
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["FixError", "FixMessage", "FixMessage"]
    assert out[2].msg_type == F.TEST_REQUEST


def pair():
    clock = [0.0]
    a = FixSession("TRADER", "VENUE", heartbeat_s=1, clock=lambda: clock[0])
    b = FixSession("VENUE", "TRADER", heartbeat_s=1, clock=lambda: clock[0])
    return a, b, clock


def deliver(raws, to):
    got = []
    for item in F.FixStream().feed(b"".join(raws)):
        got.append(to.on_message(item))
    return got


def test_logon_heartbeat_and_test_request():
    a, b, clock = pair()
    (r,) = deliver([a.logon()], b)
    assert [m.msg_type for m in r.apps] == [F.LOGON] and b.logged_on
    deliver([b.build(F.LOGON, [(98, 0), (108, 1)])], a)
    assert a.logged_on
    clock[0] = 1.5  # a heard nothing for > 1.2 heartbeats: TestRequest (and its own heartbeat)
    out = a.timer().replies
    assert any(b"35=1\x01" in m for m in out)
    answers = [x for r in deliver(out, b) for x in r.replies]
    assert any(b"35=0\x01" in m and b"112=" in m for m in answers)
    clock[0] = 5.0  # no answer delivered to a for a whole heartbeat: give up
    assert a.timer().close


def test_sequence_too_low_logs_out_and_gap_requests_resend():
    a, b, _ = pair()
    deliver([a.logon()], b)
    first = a.build(F.HEARTBEAT)
    deliver([first], b)
    (again,) = deliver([first], b)  # same MsgSeqNum, no PossDupFlag
    assert again.close and "MsgSeqNum too low" in again.reason
    a2, b2, _ = pair()
    deliver([a2.logon()], b2)
    a2.out_seq += 3  # three messages lost on the way
    (gap,) = deliver([a2.build(F.HEARTBEAT)], b2)
    assert any(b"35=2\x01" in m for m in gap.replies) and b2.stats.gaps == 1


def test_garbage_gets_a_reject_with_the_reason():
    a, b, _ = pair()
    r = b.on_error(F.FixError("CheckSum 001 does not match the computed 002"))
    assert b"35=3\x01" in r.replies[0] and b"58=CheckSum" in r.replies[0] and b.stats.rejects_sent == 1


def test_parse_takes_values_with_equals_and_non_canonical_tags_field_by_field():
    """The one-split fast path needs one '=' per field and canonical tags; anything else is parsed
    field by field, with the same result."""

    def framed(body: bytes) -> bytes:
        msg = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
        return msg + b"10=%03d\x01" % (sum(msg) & 0xFF)

    m = F.parse(framed(b"35=0\x0149=A\x0156=B\x0134=7\x0158=a=b\x01"))
    assert m.get(F.Text) == b"a=b" and m.int(F.MsgSeqNum) == 7
    m = F.parse(framed(b"35=0\x01049=A\x0156=B\x010034=7\x01"))
    assert m.get(F.SenderCompID) == b"A" and m.fields[F.MsgSeqNum] == b"7" and m.get(34) == b"7"
    with pytest.raises(F.FixError, match="malformed field b'x7'"):
        F.parse(framed(b"35=0\x0149=A\x01x7\x0156=B=C\x01"))
    assert F.checksum(bytes(range(256)) * 3) == sum(bytes(range(256)) * 3) & 0xFF


def test_messages_longer_than_adler32s_exact_range_are_checked_the_same():
    """Past 256 bytes Adler-32's low half is no longer 1 + the byte sum: the fast path sums in chunks."""
    raw = F.encode(
        F.REJECT, [(F.SenderCompID, "A"), (F.TargetCompID, "B"), (F.MsgSeqNum, 1), (F.Text, "x=~" * 400)]
    )
    assert len(raw) > 1000 and F._checked(raw, raw.index(b"35=")) is not None
    assert F.parse(raw).get(F.Text) == b"x=~" * 400 and F.parse(raw).int(F.MsgSeqNum) == 1
    bad_sum = raw[:-4] + b"%03d\x01" % ((int(raw[-4:-1]) + 1) % 256)
    with pytest.raises(F.FixError, match="CheckSum .* does not match"):
        F.parse(bad_sum)
