"""The FIX 4.4 session layer, sans I/O: bytes in, (application messages, replies, close) out.

Used by both ends: the trader's gateway (initiator) and the venue (acceptor). It owns sequence
numbers, heartbeats, TestRequests and recovery; the caller owns the socket and calls ``timer()``.
The rules are the FIX 4.4 session protocol as QuickFIX's session layer applies them:

- MsgSeqNum as expected: processed, then every queued message that is now in sequence.
- MsgSeqNum too high (a gap): the message is queued (at most ``MAX_QUEUED``) and one
  ResendRequest(BeginSeqNo = the expected number, EndSeqNo = 0) asks for the rest; no second
  request while that one is outstanding. A Logout is acted on at once (the peer is leaving), and a
  ResendRequest is answered at once (the peer must not wait for our gap to close).
- MsgSeqNum too low: with PossDupFlag(43)=Y a duplicate of what we processed, ignored and counted;
  without it, Logout with the reason, then disconnect.
- ResendRequest from the peer: the range [BeginSeqNo, EndSeqNo or our last] is answered in order:
  application messages we keep (``keep_sent``, the venue's ExecutionReports) are resent with
  PossDupFlag=Y and OrigSendingTime(122); everything else is covered by SequenceReset-GapFill
  (123=Y) whose MsgSeqNum is the first number it covers and NewSeqNo the number after it, also
  PossDupFlag=Y with OrigSendingTime. Admin messages are always gap-filled. The trader keeps
  nothing: its orders are IOC, and a stale order replayed onto a market later is a new risk, not
  a recovery (``gap_filled`` tells the caller which of its numbers will never reach the peer).
- SequenceReset-GapFill from the peer: in sequence like any message; moves the expected number to
  NewSeqNo. SequenceReset-Reset (123=N or absent): no sequence check; a higher NewSeqNo is taken,
  a lower one is refused with Reject(373=5).
- Logon with ResetSeqNumFlag(141)=Y: both sides start again at 1; during a session, the peer's
  reset is answered with our own Logon 141=Y.
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
    gaps: int = 0  # gaps in the peer's numbers we asked to be filled (one ResendRequest each)
    resend_requests_sent: int = 0
    seq_too_low: int = 0
    test_requests_sent: int = 0
    heartbeats_sent: int = 0
    invalid_fields: int = 0  # well-framed messages rejected for a field (MsgSeqNum=x, ...)
    queued: int = 0  # messages held until a gap before them was filled
    poss_dup_ignored: int = 0  # PossDupFlag=Y duplicates of messages already processed
    resend_requests_received: int = 0
    gap_fills_sent: int = 0
    messages_resent: int = 0
    gap_fills_received: int = 0
    sequence_resets_received: int = 0  # SequenceReset-Reset (123=N)
    seq_num_resets: int = 0  # Logons with ResetSeqNumFlag=Y (ours answered, or the peer's)
    peer_expects: int = 0  # the peer's next expected MsgSeqNum of ours, when known (0: unknown)
    last_error: str = ""
    reasons: dict = field(default_factory=dict)


@dataclass
class Received:
    apps: list[F.FixMessage]  # application messages for the caller (D, F, 8, 9, ... and Logon/Logout)
    replies: list[bytes]
    close: bool = False
    reason: str = ""
    gap_filled: list[tuple[int, int]] = field(default_factory=list)  # our numbers [first, next) skipped


class FixSession:
    MAX_QUEUED = 10_000  # messages held for a gap; a peer that never fills it is logged out

    def __init__(self, sender: str, target: str, heartbeat_s: int = 30, clock=time.monotonic,
                 keep_sent: int = 0):  # fmt: skip
        self.sender, self.target = sender, target
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.out_seq = 1
        self.in_seq = 1
        self.logged_on = False
        self.logout_sent = False
        self.reset_sent = False  # our Logon asked for 141=Y: the peer's 141=Y is its answer
        self.stats = SessionStats()
        now = clock()
        self.last_rx = self.last_tx = now
        self.test_request_at: float | None = None
        self.queue: dict[int, F.FixMessage] = {}  # too-high messages by MsgSeqNum
        self.resend_range: tuple[int, int] | None = None  # what our outstanding ResendRequest asked for
        # The last ``keep_sent`` application messages sent, for resending: seq -> (type, fields, SendingTime).
        self.keep_sent = keep_sent
        self.kept: dict[int, tuple[bytes, list, bytes]] = {}

    # -- outgoing ------------------------------------------------------------------------------
    def build(self, msg_type: bytes, fields: list[tuple[int, object]] = (), seq: int | None = None,
              orig_sending_time: bytes | None = None) -> bytes:  # fmt: skip
        """A message with the next MsgSeqNum; with ``seq`` a retransmission under that number
        (PossDupFlag=Y, ``orig_sending_time`` as OrigSendingTime), which takes no new number."""
        now = F.utc_timestamp()
        header: list[tuple[int, object]] = [(F.SenderCompID, self.sender), (F.TargetCompID, self.target),
                                            (F.MsgSeqNum, self.out_seq if seq is None else seq)]  # fmt: skip
        if seq is not None:
            header += [
                (F.PossDupFlag, b"Y"),
                (F.SendingTime, now),
                (F.OrigSendingTime, orig_sending_time or now),
            ]
        else:
            header.append((F.SendingTime, now))
            if self.keep_sent and msg_type not in F.ADMIN_TYPES:
                self.kept[self.out_seq] = (msg_type, list(fields), now)
                if len(self.kept) > self.keep_sent:
                    del self.kept[next(iter(self.kept))]
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
            self._reset_numbers()
        self.reset_sent = reset
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

    def peer_processed(self, seq: int) -> None:
        """The peer answered our message ``seq`` (an ExecutionReport, a Reject): it expects more."""
        if seq >= self.stats.peer_expects:
            self.stats.peer_expects = seq + 1

    def _reset_numbers(self) -> None:
        self.out_seq = self.in_seq = 1
        self.queue.clear()
        self.kept.clear()
        self.resend_range = None

    # -- incoming ------------------------------------------------------------------------------
    def on_error(self, err: F.FixError) -> Received:
        self.stats.garbage += 1
        self.stats.last_error = str(err)
        return Received([], [self.reject(str(err))])

    def on_message(self, msg: F.FixMessage) -> Received:
        self.last_rx = self.clock()
        self.test_request_at = None
        self.stats.messages_in += 1
        out = Received([], [])
        try:
            self._on_message(msg, out)
        except F.FieldError as e:
            _merge(out, self.on_field_error(msg, e))
        return out

    def on_field_error(self, msg: F.FixMessage, err: F.FieldError) -> Received:
        """A field the session (or the application: an ExecutionReport's LastPx) cannot use."""
        self.stats.invalid_fields += 1
        self.stats.last_error = str(err)
        if not self.logged_on:  # an invalid Logon is answered with Logout (FIX session protocol)
            text = f"invalid Logon: {err}"
            return Received([], [self.logout(text)], close=True, reason=text)
        ref_seq = _seq_or_zero(msg)
        return Received([], [self.reject(str(err), ref_seq, err.tag, err.reason)])

    def _on_message(self, msg: F.FixMessage, out: Received) -> None:
        t = msg.msg_type
        if msg.get(F.MsgSeqNum) is None:
            raise F.FieldError("MsgSeqNum(34) missing", F.MsgSeqNum, F.FieldError.REQUIRED_TAG_MISSING)
        seq = _positive(msg, F.MsgSeqNum, 0)
        if msg.get(F.SenderCompID) != self.target.encode() or msg.get(F.TargetCompID) != self.sender.encode():
            text = f"CompID problem: got {msg.get(F.SenderCompID)!r}->{msg.get(F.TargetCompID)!r}"
            _close(out, [self.reject(text, seq), self.logout(text)], text)
            return
        if t == F.LOGON and msg.get(F.ResetSeqNumFlag) == b"Y":
            self._reset_by_logon(out)
        elif t == F.SEQUENCE_RESET and msg.get(F.GapFillFlag) != b"Y":
            self._sequence_reset(msg, out)  # Reset mode: no sequence check (FIX 4.4)
            return
        if seq < self.in_seq:
            if msg.get(F.PossDupFlag) == b"Y":
                self.stats.poss_dup_ignored += 1  # a resend of what we have
                return
            self.stats.seq_too_low += 1
            text = f"MsgSeqNum too low, expecting {self.in_seq} but received {seq}"
            _close(out, [self.logout(text)], text)
            return
        if seq > self.in_seq:
            self._too_high(msg, seq, out)
            return
        self.in_seq = seq + 1
        self._process(msg, seq, out)
        self._drain(out)

    def _too_high(self, msg: F.FixMessage, seq: int, out: Received) -> None:
        t = msg.msg_type
        if t == F.LOGOUT:  # the peer is leaving: answer now, whatever is missing
            self._process(msg, seq, out)
            return
        if t in (F.RESEND_REQUEST, F.LOGON):  # acted on now; queued only to consume the number
            self._process(msg, seq, out)
        if len(self.queue) >= self.MAX_QUEUED:
            text = f"MsgSeqNum gap from {self.in_seq} not filled: more than {self.MAX_QUEUED} messages held"
            _close(out, [self.logout(text)], text)
            return
        self.queue[seq] = msg
        self.stats.queued += 1
        if self.resend_range is None:  # one request per gap, as QuickFIX: the answer covers the rest
            self.stats.gaps += 1
            self.stats.resend_requests_sent += 1
            self.resend_range = (self.in_seq, seq - 1)
            out.replies.append(self.build(F.RESEND_REQUEST, [(F.BeginSeqNo, self.in_seq), (F.EndSeqNo, 0)]))

    def _drain(self, out: Received) -> None:
        """Process the queued messages that are now in sequence; forget those a GapFill skipped."""
        while self.queue and not out.close:
            msg = self.queue.pop(self.in_seq, None)
            if msg is None:
                break
            seq, self.in_seq = self.in_seq, self.in_seq + 1
            if msg.msg_type not in (F.RESEND_REQUEST, F.LOGON):  # those were acted on when they came
                self._process(msg, seq, out)
        if self.resend_range is not None and self.in_seq > self.resend_range[1]:
            self.resend_range = None

    def _skip_to(self, new_seq: int) -> None:
        self.in_seq = new_seq
        for seq in [s for s in self.queue if s < new_seq]:
            del self.queue[seq]

    def _process(self, msg: F.FixMessage, seq: int, out: Received) -> None:
        try:
            self._dispatch(msg, seq, out)
        except F.FieldError as e:
            _merge(out, self.on_field_error(msg, e))

    def _dispatch(self, msg: F.FixMessage, seq: int, out: Received) -> None:
        t = msg.msg_type
        if t == F.HEARTBEAT:
            return
        if t == F.TEST_REQUEST:
            out.replies.append(self.build(F.HEARTBEAT, [(F.TestReqID, msg.get(F.TestReqID, b""))]))
        elif t == F.RESEND_REQUEST:
            self._answer_resend(msg, seq, out)
        elif t == F.SEQUENCE_RESET:  # GapFill, in sequence
            self.stats.gap_fills_received += 1
            new_seq = _positive(msg, F.NewSeqNo, 0)
            if new_seq <= seq:
                raise F.FieldError(f"NewSeqNo {new_seq} is not above MsgSeqNum {seq}", F.NewSeqNo,
                                   F.FieldError.VALUE_INCORRECT)  # fmt: skip
            self._skip_to(max(new_seq, self.in_seq))
        elif t == F.LOGON:
            if not self.logged_on:
                hb = msg.int(F.HeartBtInt, self.heartbeat_s)
                if hb > 0:
                    self.heartbeat_s = hb
                self.logged_on = True
                out.apps.append(msg)
        elif t == F.LOGOUT:
            text = (msg.get(F.Text) or b"").decode(errors="replace")
            replies = [] if self.logout_sent else [self.logout()]
            self.logged_on = False
            out.apps.append(msg)
            _close(out, replies, f"peer logged out{': ' + text if text else ''}")
        else:
            if t == F.REJECT:
                self.stats.rejects_received += 1
                self.stats.last_error = (msg.get(F.Text) or b"").decode(errors="replace")
            out.apps.append(msg)

    def _reset_by_logon(self, out: Received) -> None:
        """Logon 141=Y: both sides start again at 1. Ours answered, or the peer's, which we answer
        once logged on (before that, the Logon is the caller's to answer: the acceptor's first)."""
        self.stats.seq_num_resets += 1
        if self.reset_sent:
            self.reset_sent = False
            self.in_seq = 1
            self.queue.clear()
            self.resend_range = None
            return
        self._reset_numbers()
        if self.logged_on:
            out.replies.append(self.build(F.LOGON, [(F.EncryptMethod, 0), (F.HeartBtInt, self.heartbeat_s),
                                                    (F.ResetSeqNumFlag, b"Y")]))  # fmt: skip

    def _sequence_reset(self, msg: F.FixMessage, out: Received) -> None:
        self.stats.sequence_resets_received += 1
        new_seq = _positive(msg, F.NewSeqNo, self.in_seq)
        if new_seq > self.in_seq:
            self._skip_to(new_seq)
            self._drain(out)
        elif new_seq < self.in_seq:
            raise F.FieldError(f"NewSeqNo {new_seq} is below the expected MsgSeqNum {self.in_seq}", F.NewSeqNo,
                               F.FieldError.VALUE_INCORRECT)  # fmt: skip

    def _answer_resend(self, msg: F.FixMessage, seq: int, out: Received) -> None:
        """Our messages [BeginSeqNo, EndSeqNo] again: the kept ones resent, the rest gap-filled."""
        self.stats.resend_requests_received += 1
        if msg.get(F.BeginSeqNo) is None or msg.get(F.EndSeqNo) is None:
            tag = F.BeginSeqNo if msg.get(F.BeginSeqNo) is None else F.EndSeqNo
            raise F.FieldError(f"ResendRequest without tag {tag}", tag, F.FieldError.REQUIRED_TAG_MISSING)
        begin, end = _positive(msg, F.BeginSeqNo, 0), msg.int(F.EndSeqNo)
        last = self.out_seq - 1
        if begin > last:
            raise F.FieldError(f"BeginSeqNo {begin} is beyond the last MsgSeqNum sent ({last})", F.BeginSeqNo,
                               F.FieldError.VALUE_INCORRECT)  # fmt: skip
        if end == 0 or end > last:  # 0: everything since BeginSeqNo
            end = last
        if end < begin:
            raise F.FieldError(f"EndSeqNo {end} is below BeginSeqNo {begin}", F.EndSeqNo,
                               F.FieldError.VALUE_INCORRECT)  # fmt: skip
        self.stats.peer_expects = begin
        pos = begin
        for kept_seq in [s for s in self.kept if begin <= s <= end]:
            if kept_seq > pos:
                self._gap_fill(pos, kept_seq, out)
            msg_type, fields, sending_time = self.kept[kept_seq]
            out.replies.append(self.build(msg_type, fields, seq=kept_seq, orig_sending_time=sending_time))
            self.stats.messages_resent += 1
            pos = kept_seq + 1
        if pos <= end:
            self._gap_fill(pos, end + 1, out)

    def _gap_fill(self, first: int, next_seq: int, out: Received) -> None:
        self.stats.gap_fills_sent += 1
        out.gap_filled.append((first, next_seq))
        out.replies.append(
            self.build(F.SEQUENCE_RESET, [(F.GapFillFlag, b"Y"), (F.NewSeqNo, next_seq)], seq=first)
        )

    # -- time ----------------------------------------------------------------------------------
    def timer(self) -> Received:
        """Heartbeat when we have been quiet; TestRequest when the peer has; give up after that."""
        if not self.logged_on:
            return Received([], [])
        now = self.clock()
        out = []
        if self.test_request_at is not None and now - self.test_request_at > self.heartbeat_s:
            text = "no answer to TestRequest"
            return Received([], [self.logout(text)], close=True, reason=text)
        if self.test_request_at is None and now - self.last_rx > self.heartbeat_s * 1.2:
            self.test_request_at = now
            self.stats.test_requests_sent += 1
            out.append(self.build(F.TEST_REQUEST, [(F.TestReqID, b"TS%d" % int(now))]))
        if now - self.last_tx >= self.heartbeat_s:
            self.stats.heartbeats_sent += 1
            out.append(self.build(F.HEARTBEAT))
        return Received([], out)


def _close(out: Received, replies: list[bytes], reason: str) -> None:
    out.replies += replies
    out.close, out.reason = True, reason


def _merge(out: Received, more: Received) -> None:
    out.apps += more.apps
    out.replies += more.replies
    out.gap_filled += more.gap_filled
    if more.close and not out.close:
        out.close, out.reason = True, more.reason


def _seq_or_zero(msg: F.FixMessage) -> int:
    """RefSeqNum for a Reject: the message's MsgSeqNum when it is a number at all."""
    v = msg.get(F.MsgSeqNum) or b""
    return int(v) if v.isdigit() and len(v) <= 18 else 0


def _positive(msg: F.FixMessage, tag: int, default: int) -> int:
    v = msg.int(tag, default)
    if v <= 0:
        raise F.FieldError(f"tag {tag} must be a positive number: {v}", tag, F.FieldError.VALUE_INCORRECT)
    return v
