"""The FIX 4.4 session layer, sans I/O: bytes in, (application message, replies, close) out.

Used by both ends: the trader's gateway (initiator) and the venue (acceptor). It owns sequence
numbers, heartbeats and TestRequests; the caller owns the socket and calls ``timer(now)``.

Sequence rules (FIX 4.4 session protocol):
- MsgSeqNum too low without PossDupFlag: Logout with the reason, then disconnect.
- A gap: ResendRequest for the missing range; the message itself is processed (we keep no
  queue; the counter-party's GapFill or resend closes the gap).
- ResendRequest from the peer: answered with SequenceReset-GapFill (application messages are not
  re-sent: stale orders must not be replayed onto a market).
- Garbage, bad BodyLength or CheckSum: Reject(35=3) with the reason in Text; the session goes on.
- A well-framed message with a field the session cannot use (MsgSeqNum missing or not a number,
  a non-numeric HeartBtInt or NewSeqNo, ...): Reject(35=3) with Text, RefTagID(371) and
  SessionRejectReason(373); before Logon completes, Logout and disconnect instead. Nothing a peer
  sends raises out of ``on_message``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import fix as F


@dataclass
class SessionStats:
    messages_in: int = 0
    messages_out: int = 0
    rejects_sent: int = 0
    rejects_received: int = 0
    garbage: int = 0
    gaps: int = 0
    resend_requests_sent: int = 0
    seq_too_low: int = 0
    test_requests_sent: int = 0
    heartbeats_sent: int = 0
    invalid_fields: int = 0  # well-framed messages rejected for a field (MsgSeqNum=x, ...)
    last_error: str = ""
    reasons: dict = field(default_factory=dict)


@dataclass
class Received:
    app: F.FixMessage | None  # an application message for the caller (D, F, 8, 9, ...), or None
    replies: list[bytes]
    close: bool = False
    reason: str = ""


class FixSession:
    def __init__(self, sender: str, target: str, heartbeat_s: int = 30, clock=time.monotonic):
        self.sender, self.target = sender, target
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.out_seq = 1
        self.in_seq = 1
        self.logged_on = False
        self.logout_sent = False
        self.stats = SessionStats()
        now = clock()
        self.last_rx = self.last_tx = now
        self.test_request_at: float | None = None

    # -- outgoing ------------------------------------------------------------------------------
    def build(self, msg_type: bytes, fields: list[tuple[int, object]] = (), poss_dup: bool = False) -> bytes:
        header = [(F.SenderCompID, self.sender), (F.TargetCompID, self.target), (F.MsgSeqNum, self.out_seq),
                  (F.SendingTime, F.utc_timestamp())]  # fmt: skip
        if poss_dup:
            header.append((F.PossDupFlag, b"Y"))
        self.out_seq += 1
        return self.sent(F.encode(msg_type, header + list(fields)))

    def sent(self, raw: bytes) -> bytes:
        """Account for a message sent outside ``build`` (the order template): heartbeat clock."""
        self.last_tx = self.clock()
        self.stats.messages_out += 1
        return raw

    def next_seq(self) -> int:
        """Take the next outgoing sequence number (for the order template)."""
        seq = self.out_seq
        self.out_seq += 1
        return seq

    def logon(self, reset: bool = True) -> bytes:
        if reset:
            self.out_seq, self.in_seq = 1, 1
        fields = [(F.EncryptMethod, 0), (F.HeartBtInt, self.heartbeat_s)]
        if reset:
            fields.append((F.ResetSeqNumFlag, b"Y"))
        return self.build(F.LOGON, fields)

    def logout(self, text: str = "") -> bytes:
        self.logout_sent = True
        return self.build(F.LOGOUT, [(F.Text, text)] if text else [])

    def reject(self, text: str, ref_seq: int = 0, ref_tag: int = 0, reason: int | None = None) -> bytes:
        """Reject(35=3); ``ref_tag`` and ``reason`` (SessionRejectReason) when a field was at fault."""
        self.stats.rejects_sent += 1
        fields: list[tuple[int, object]] = [(F.RefSeqNum, max(ref_seq, 0))]
        if ref_tag:
            fields.append((F.RefTagID, ref_tag))
        if reason is not None:
            fields.append((F.SessionRejectReason, reason))
        return self.build(F.REJECT, [*fields, (F.Text, text[:200])])

    # -- incoming ------------------------------------------------------------------------------
    def on_error(self, err: F.FixError) -> Received:
        self.stats.garbage += 1
        self.stats.last_error = str(err)
        return Received(None, [self.reject(str(err))])

    def on_message(self, msg: F.FixMessage) -> Received:
        self.last_rx = self.clock()
        self.test_request_at = None
        self.stats.messages_in += 1
        try:
            return self._on_message(msg)
        except F.FieldError as e:
            return self.on_field_error(msg, e)

    def on_field_error(self, msg: F.FixMessage, err: F.FieldError) -> Received:
        """A field the session (or the application: an ExecutionReport's LastPx) cannot use."""
        self.stats.invalid_fields += 1
        self.stats.last_error = str(err)
        if not self.logged_on:  # an invalid Logon is answered with Logout (FIX session protocol)
            text = f"invalid Logon: {err}"
            return Received(None, [self.logout(text)], close=True, reason=text)
        ref_seq = _seq_or_zero(msg)
        return Received(None, [self.reject(str(err), ref_seq, err.tag, err.reason)])

    def _on_message(self, msg: F.FixMessage) -> Received:
        t = msg.msg_type
        if msg.get(F.MsgSeqNum) is None:
            raise F.FieldError("MsgSeqNum(34) missing", F.MsgSeqNum, F.FieldError.REQUIRED_TAG_MISSING)
        seq = _positive(msg, F.MsgSeqNum, 0)
        if msg.get(F.SenderCompID) != self.target.encode() or msg.get(F.TargetCompID) != self.sender.encode():
            text = f"CompID problem: got {msg.get(F.SenderCompID)!r}->{msg.get(F.TargetCompID)!r}"
            return Received(None, [self.reject(text, seq), self.logout(text)], close=True, reason=text)
        if t == F.LOGON and msg.get(F.ResetSeqNumFlag) == b"Y":
            self.in_seq = 1
        if t == F.SEQUENCE_RESET and msg.get(F.GapFillFlag) != b"Y":
            self.in_seq = _positive(msg, F.NewSeqNo, self.in_seq)
            return Received(None, [])
        replies: list[bytes] = []
        if seq < self.in_seq:
            if msg.get(F.PossDupFlag) == b"Y":
                return Received(None, [])  # a resend of what we have: ignore
            self.stats.seq_too_low += 1
            text = f"MsgSeqNum too low, expecting {self.in_seq} but received {seq}"
            return Received(None, [self.logout(text)], close=True, reason=text)
        if seq > self.in_seq:
            self.stats.gaps += 1
            self.stats.resend_requests_sent += 1
            replies.append(self.build(F.RESEND_REQUEST, [(F.BeginSeqNo, self.in_seq), (F.EndSeqNo, 0)]))
        self.in_seq = seq + 1
        if t == F.SEQUENCE_RESET:  # gap fill
            self.in_seq = max(self.in_seq, _positive(msg, F.NewSeqNo, self.in_seq))
            return Received(None, replies)
        if t == F.LOGON:
            if not self.logged_on:
                hb = msg.int(F.HeartBtInt, self.heartbeat_s)
                if hb > 0:
                    self.heartbeat_s = hb
                self.logged_on = True
            return Received(msg, replies)
        if t == F.HEARTBEAT:
            return Received(None, replies)
        if t == F.TEST_REQUEST:
            replies.append(self.build(F.HEARTBEAT, [(F.TestReqID, msg.get(F.TestReqID, b""))]))
            return Received(None, replies)
        if t == F.RESEND_REQUEST:
            replies.append(self.build(F.SEQUENCE_RESET, [(F.GapFillFlag, b"Y"), (F.NewSeqNo, self.out_seq + 1)],
                                      poss_dup=True))  # fmt: skip
            return Received(None, replies)
        if t == F.REJECT:
            self.stats.rejects_received += 1
            self.stats.last_error = (msg.get(F.Text) or b"").decode(errors="replace")
            return Received(msg, replies)
        if t == F.LOGOUT:
            text = (msg.get(F.Text) or b"").decode(errors="replace")
            if not self.logout_sent:
                replies.append(self.logout())
            self.logged_on = False
            return Received(msg, replies, close=True, reason=f"peer logged out{': ' + text if text else ''}")
        return Received(msg, replies)

    # -- time ----------------------------------------------------------------------------------
    def timer(self) -> Received:
        """Heartbeat when we have been quiet; TestRequest when the peer has; give up after that."""
        if not self.logged_on:
            return Received(None, [])
        now = self.clock()
        out = []
        if self.test_request_at is not None and now - self.test_request_at > self.heartbeat_s:
            text = "no answer to TestRequest"
            return Received(None, [self.logout(text)], close=True, reason=text)
        if self.test_request_at is None and now - self.last_rx > self.heartbeat_s * 1.2:
            self.test_request_at = now
            self.stats.test_requests_sent += 1
            out.append(self.build(F.TEST_REQUEST, [(F.TestReqID, b"TS%d" % int(now))]))
        if now - self.last_tx >= self.heartbeat_s:
            self.stats.heartbeats_sent += 1
            out.append(self.build(F.HEARTBEAT))
        return Received(None, out)


def _seq_or_zero(msg: F.FixMessage) -> int:
    """RefSeqNum for a Reject: the message's MsgSeqNum when it is a number at all."""
    v = msg.get(F.MsgSeqNum) or b""
    return int(v) if v.isdigit() and len(v) <= 18 else 0


def _positive(msg: F.FixMessage, tag: int, default: int) -> int:
    v = msg.int(tag, default)
    if v <= 0:
        raise F.FieldError(f"tag {tag} must be a positive number: {v}", tag, F.FieldError.VALUE_INCORRECT)
    return v
