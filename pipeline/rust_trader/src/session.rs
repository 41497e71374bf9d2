//! The FIX 4.4 session layer (pipeline/fix_session.py), initiator side: sequence numbers,
//! Logon/Logout, Heartbeat/TestRequest, Reject(35=3) for garbage and for well-framed messages with
//! a field the session cannot use, and recovery as QuickFIX's session layer does it: a message
//! above the expected number is queued behind one ResendRequest and processed once the gap is
//! filled; a ResendRequest from the peer is answered with SequenceReset-GapFill numbered with the
//! first number it covers (its orders are IOC: a stale one is not resent); PossDup duplicates are
//! ignored and counted; SequenceReset-Reset and Logon 141=Y move the numbers. Nothing a peer sends
//! panics.

use crate::fix::{self, FieldError, FixMessage, UtcClock};
use std::collections::BTreeMap;

/// Messages held for a gap; a peer that never fills it is logged out.
pub const MAX_QUEUED: usize = 10_000;

#[derive(Default, Debug)]
pub struct SessionStats {
    pub messages_in: u64,
    pub messages_out: u64,
    pub rejects_sent: u64,
    pub rejects_received: u64,
    pub garbage: u64,
    pub gaps: u64,
    pub resend_requests_sent: u64,
    pub seq_too_low: u64,
    pub test_requests_sent: u64,
    pub heartbeats_sent: u64,
    pub invalid_fields: u64,
    pub queued: u64,
    pub poss_dup_ignored: u64,
    pub resend_requests_received: u64,
    pub gap_fills_sent: u64,
    pub messages_resent: u64,
    pub gap_fills_received: u64,
    pub sequence_resets_received: u64,
    pub seq_num_resets: u64,
    /// The peer's next expected MsgSeqNum of ours, when known (0: unknown).
    pub peer_expects: u64,
    pub last_error: String,
}

#[derive(Default)]
pub struct Received {
    /// Application messages for the caller (and the peer's Logout).
    pub apps: Vec<FixMessage>,
    pub replies: Vec<Vec<u8>>,
    pub close: bool,
    pub reason: String,
    /// Our numbers [first, next) covered by a GapFill: what they carried never reaches the peer.
    pub gap_filled: Vec<(u64, u64)>,
}

impl Received {
    fn closing(&mut self, replies: Vec<Vec<u8>>, reason: String) {
        self.replies.extend(replies);
        self.close = true;
        self.reason = reason;
    }

    fn merge(&mut self, more: Received) {
        self.apps.extend(more.apps);
        self.replies.extend(more.replies);
        self.gap_filled.extend(more.gap_filled);
        if more.close && !self.close {
            self.close = true;
            self.reason = more.reason;
        }
    }
}

fn monotonic_s() -> f64 {
    crate::sys::clock_ns(crate::sys::CLOCK_MONOTONIC) as f64 / 1e9
}

pub struct FixSession {
    pub sender: String,
    pub target: String,
    pub heartbeat_s: i64,
    pub out_seq: u64,
    pub in_seq: i64,
    pub logged_on: bool,
    pub logout_sent: bool,
    /// Our Logon asked for 141=Y: the peer's 141=Y is its answer, not a reset of its own.
    pub reset_sent: bool,
    pub stats: SessionStats,
    pub last_rx: f64,
    pub last_tx: f64,
    test_request_at: Option<f64>,
    queue: BTreeMap<i64, FixMessage>,
    resend_range: Option<(i64, i64)>,
    pub clock: UtcClock,
}

fn num(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn field_error(text: String, tag: u32, reason: i64) -> FieldError {
    FieldError { text, tag, reason }
}

impl FixSession {
    pub fn new(sender: &str, target: &str, heartbeat_s: i64) -> Self {
        let now = monotonic_s();
        FixSession {
            sender: sender.into(),
            target: target.into(),
            heartbeat_s,
            out_seq: 1,
            in_seq: 1,
            logged_on: false,
            logout_sent: false,
            reset_sent: false,
            stats: SessionStats::default(),
            last_rx: now,
            last_tx: now,
            test_request_at: None,
            queue: BTreeMap::new(),
            resend_range: None,
            clock: UtcClock::default(),
        }
    }

    /// A message with the next MsgSeqNum.
    pub fn build(&mut self, msg_type: &[u8], fields: &[(u32, &[u8])]) -> Vec<u8> {
        let seq = num(self.out_seq as i64);
        let now = self.clock.now();
        let mut all: Vec<(u32, &[u8])> = vec![
            (fix::SENDER_COMP_ID, self.sender.as_bytes()),
            (fix::TARGET_COMP_ID, self.target.as_bytes()),
            (fix::MSG_SEQ_NUM, &seq),
            (fix::SENDING_TIME, &now),
        ];
        all.extend_from_slice(fields);
        let raw = fix::encode(msg_type, &all);
        self.out_seq += 1;
        self.sent();
        raw
    }

    /// A retransmission under an earlier number (PossDupFlag=Y, OrigSendingTime): takes no new number.
    fn build_at(&mut self, seq: i64, msg_type: &[u8], fields: &[(u32, &[u8])]) -> Vec<u8> {
        let seq = num(seq);
        let now = self.clock.now();
        let mut all: Vec<(u32, &[u8])> = vec![
            (fix::SENDER_COMP_ID, self.sender.as_bytes()),
            (fix::TARGET_COMP_ID, self.target.as_bytes()),
            (fix::MSG_SEQ_NUM, &seq),
            (fix::POSS_DUP_FLAG, b"Y"),
            (fix::SENDING_TIME, &now),
            (fix::ORIG_SENDING_TIME, &now),
        ];
        all.extend_from_slice(fields);
        let raw = fix::encode(msg_type, &all);
        self.sent();
        raw
    }

    /// Accounts for a message sent outside `build` (the order template).
    pub fn sent(&mut self) {
        self.last_tx = monotonic_s();
        self.stats.messages_out += 1;
    }

    pub fn next_seq(&mut self) -> u64 {
        let s = self.out_seq;
        self.out_seq += 1;
        s
    }

    pub fn logon(&mut self) -> Vec<u8> {
        self.reset_numbers();
        self.reset_sent = true;
        let hb = num(self.heartbeat_s);
        self.build(
            b"A",
            &[(fix::ENCRYPT_METHOD, b"0"), (fix::HEART_BT_INT, &hb), (fix::RESET_SEQ_NUM_FLAG, b"Y")],
        )
    }

    pub fn logout(&mut self, text: &str) -> Vec<u8> {
        self.logout_sent = true;
        if text.is_empty() {
            self.build(b"5", &[])
        } else {
            self.build(b"5", &[(fix::TEXT, text.as_bytes())])
        }
    }

    pub fn reject(&mut self, text: &str, ref_seq: i64, ref_tag: u32, reason: Option<i64>) -> Vec<u8> {
        self.stats.rejects_sent += 1;
        let (rs, rt, rr) = (num(ref_seq.max(0)), num(ref_tag as i64), num(reason.unwrap_or(0)));
        let mut fields: Vec<(u32, &[u8])> = vec![(fix::REF_SEQ_NUM, &rs)];
        if ref_tag != 0 {
            fields.push((fix::REF_TAG_ID, &rt));
        }
        if reason.is_some() {
            fields.push((fix::SESSION_REJECT_REASON, &rr));
        }
        let t: String = text.chars().take(200).collect();
        fields.push((fix::TEXT, t.as_bytes()));
        self.build(b"3", &fields)
    }

    /// The peer answered our message `seq` (an ExecutionReport, a Reject): it expects more.
    pub fn peer_processed(&mut self, seq: u64) {
        if seq >= self.stats.peer_expects {
            self.stats.peer_expects = seq + 1;
        }
    }

    fn reset_numbers(&mut self) {
        self.out_seq = 1;
        self.in_seq = 1;
        self.queue.clear();
        self.resend_range = None;
    }

    pub fn on_error(&mut self, err: &str) -> Received {
        self.stats.garbage += 1;
        self.stats.last_error = err.into();
        Received { replies: vec![self.reject(err, 0, 0, None)], ..Received::default() }
    }

    pub fn on_field_error(&mut self, msg: &FixMessage, err: &FieldError) -> Received {
        self.stats.invalid_fields += 1;
        self.stats.last_error = err.text.clone();
        let mut r = Received::default();
        if !self.logged_on {
            let text = format!("invalid Logon: {}", err.text);
            let logout = self.logout(&text);
            r.closing(vec![logout], text);
            return r;
        }
        let ref_seq = match msg.get(fix::MSG_SEQ_NUM) {
            Some(v) if !v.is_empty() && v.len() <= 18 && v.iter().all(|c| c.is_ascii_digit()) => {
                fix::parse_int(v, 0).unwrap_or(0)
            }
            _ => 0,
        };
        r.replies.push(self.reject(&err.text, ref_seq, err.tag, Some(err.reason)));
        r
    }

    fn positive(msg: &FixMessage, tag: u32, default: i64) -> Result<i64, FieldError> {
        let v = msg.int(tag, default)?;
        if v <= 0 {
            return Err(field_error(
                format!("tag {} must be a positive number: {}", tag, v),
                tag,
                fix::VALUE_INCORRECT,
            ));
        }
        Ok(v)
    }

    fn header_seq(msg: &FixMessage) -> Result<i64, FieldError> {
        if msg.get(fix::MSG_SEQ_NUM).is_none() {
            return Err(field_error(
                "MsgSeqNum(34) missing".into(),
                fix::MSG_SEQ_NUM,
                fix::REQUIRED_TAG_MISSING,
            ));
        }
        Self::positive(msg, fix::MSG_SEQ_NUM, 0)
    }

    pub fn on_message(&mut self, msg: FixMessage) -> Received {
        self.last_rx = monotonic_s();
        self.test_request_at = None;
        self.stats.messages_in += 1;
        let mut out = Received::default();
        let seq = match Self::header_seq(&msg) {
            Ok(s) => s,
            Err(e) => return self.on_field_error(&msg, &e),
        };
        if msg.get(fix::SENDER_COMP_ID) != Some(self.target.as_bytes())
            || msg.get(fix::TARGET_COMP_ID) != Some(self.sender.as_bytes())
        {
            let text = format!(
                "CompID problem: got {}->{}",
                msg.get(fix::SENDER_COMP_ID).map(fix::brepr).unwrap_or_else(|| "None".into()),
                msg.get(fix::TARGET_COMP_ID).map(fix::brepr).unwrap_or_else(|| "None".into())
            );
            let replies = vec![self.reject(&text, seq, 0, None), self.logout(&text)];
            out.closing(replies, text);
            return out;
        }
        let t = msg.msg_type.as_slice();
        if t == b"A" && msg.get(fix::RESET_SEQ_NUM_FLAG) == Some(b"Y") {
            self.reset_by_logon(&mut out);
        } else if t == b"4" && msg.get(fix::GAP_FILL_FLAG) != Some(b"Y") {
            // Reset mode: no sequence check (FIX 4.4).
            if let Err(e) = self.sequence_reset(&msg, &mut out) {
                let r = self.on_field_error(&msg, &e);
                out.merge(r);
            }
            return out;
        }
        if seq < self.in_seq {
            if msg.get(fix::POSS_DUP_FLAG) == Some(b"Y") {
                self.stats.poss_dup_ignored += 1; // a resend of what we have
                return out;
            }
            self.stats.seq_too_low += 1;
            let text = format!("MsgSeqNum too low, expecting {} but received {}", self.in_seq, seq);
            let logout = self.logout(&text);
            out.closing(vec![logout], text);
            return out;
        }
        if seq > self.in_seq {
            self.too_high(msg, seq, &mut out);
            return out;
        }
        self.in_seq = seq + 1;
        self.process(msg, seq, &mut out);
        self.drain(&mut out);
        out
    }

    fn too_high(&mut self, msg: FixMessage, seq: i64, out: &mut Received) {
        let t = msg.msg_type.clone();
        if t == b"5" {
            // The peer is leaving: answer now, whatever is missing.
            self.process(msg, seq, out);
            return;
        }
        if t == b"2" || t == b"A" {
            // Acted on now; queued only to consume the number.
            self.process(msg.clone(), seq, out);
        }
        if self.queue.len() >= MAX_QUEUED {
            let text = format!(
                "MsgSeqNum gap from {} not filled: more than {} messages held",
                self.in_seq, MAX_QUEUED
            );
            let logout = self.logout(&text);
            out.closing(vec![logout], text);
            return;
        }
        self.queue.insert(seq, msg);
        self.stats.queued += 1;
        if self.resend_range.is_none() {
            // One request per gap, as QuickFIX: the answer covers the rest.
            self.stats.gaps += 1;
            self.stats.resend_requests_sent += 1;
            self.resend_range = Some((self.in_seq, seq - 1));
            let begin = num(self.in_seq);
            out.replies.push(self.build(b"2", &[(fix::BEGIN_SEQ_NO, &begin), (fix::END_SEQ_NO, b"0")]));
        }
    }

    /// Processes the queued messages that are now in sequence.
    fn drain(&mut self, out: &mut Received) {
        while !self.queue.is_empty() && !out.close {
            let msg = match self.queue.remove(&self.in_seq) {
                Some(m) => m,
                None => break,
            };
            let seq = self.in_seq;
            self.in_seq += 1;
            if msg.msg_type != b"2" && msg.msg_type != b"A" {
                self.process(msg, seq, out); // ResendRequest and Logon were acted on when they came
            }
        }
        if let Some((_, end)) = self.resend_range {
            if self.in_seq > end {
                self.resend_range = None;
            }
        }
    }

    /// The expected number moves to `new_seq`; queued messages below it were gap-filled away.
    fn skip_to(&mut self, new_seq: i64) {
        self.in_seq = new_seq;
        self.queue = self.queue.split_off(&new_seq);
    }

    fn process(&mut self, msg: FixMessage, seq: i64, out: &mut Received) {
        match self.dispatch(&msg, seq, out) {
            Ok(true) => out.apps.push(msg),
            Ok(false) => {}
            Err(e) => {
                let r = self.on_field_error(&msg, &e);
                out.merge(r);
            }
        }
    }

    /// Ok(true): the message is the caller's (application, Logon, Logout, Reject).
    fn dispatch(&mut self, msg: &FixMessage, seq: i64, out: &mut Received) -> Result<bool, FieldError> {
        match msg.msg_type.as_slice() {
            b"0" => Ok(false),
            b"1" => {
                let id = msg.get(fix::TEST_REQ_ID).unwrap_or(b"").to_vec();
                out.replies.push(self.build(b"0", &[(fix::TEST_REQ_ID, &id)]));
                Ok(false)
            }
            b"2" => {
                self.answer_resend(msg, out)?;
                Ok(false)
            }
            b"4" => {
                self.stats.gap_fills_received += 1;
                let new_seq = Self::positive(msg, fix::NEW_SEQ_NO, 0)?;
                if new_seq <= seq {
                    return Err(field_error(
                        format!("NewSeqNo {} is not above MsgSeqNum {}", new_seq, seq),
                        fix::NEW_SEQ_NO,
                        fix::VALUE_INCORRECT,
                    ));
                }
                let to = new_seq.max(self.in_seq);
                self.skip_to(to);
                Ok(false)
            }
            b"A" => {
                if self.logged_on {
                    return Ok(false);
                }
                let hb = msg.int(fix::HEART_BT_INT, self.heartbeat_s)?;
                if hb > 0 {
                    self.heartbeat_s = hb;
                }
                self.logged_on = true;
                Ok(true)
            }
            b"5" => {
                let text = String::from_utf8_lossy(msg.get(fix::TEXT).unwrap_or(b"")).into_owned();
                let replies = if self.logout_sent { vec![] } else { vec![self.logout("")] };
                self.logged_on = false;
                let reason = if text.is_empty() {
                    "peer logged out".to_string()
                } else {
                    format!("peer logged out: {}", text)
                };
                out.closing(replies, reason);
                Ok(true)
            }
            b"3" => {
                self.stats.rejects_received += 1;
                self.stats.last_error =
                    String::from_utf8_lossy(msg.get(fix::TEXT).unwrap_or(b"")).into_owned();
                Ok(true)
            }
            _ => Ok(true),
        }
    }

    /// Logon 141=Y: both sides start again at 1. Ours answered, or the peer's, answered with ours.
    fn reset_by_logon(&mut self, out: &mut Received) {
        self.stats.seq_num_resets += 1;
        if self.reset_sent {
            self.reset_sent = false;
            self.in_seq = 1;
            self.queue.clear();
            self.resend_range = None;
            return;
        }
        self.reset_numbers();
        if self.logged_on {
            let hb = num(self.heartbeat_s);
            out.replies.push(self.build(
                b"A",
                &[(fix::ENCRYPT_METHOD, b"0"), (fix::HEART_BT_INT, &hb), (fix::RESET_SEQ_NUM_FLAG, b"Y")],
            ));
        }
    }

    fn sequence_reset(&mut self, msg: &FixMessage, out: &mut Received) -> Result<(), FieldError> {
        self.stats.sequence_resets_received += 1;
        let new_seq = Self::positive(msg, fix::NEW_SEQ_NO, self.in_seq)?;
        if new_seq > self.in_seq {
            self.skip_to(new_seq);
            self.drain(out);
        } else if new_seq < self.in_seq {
            return Err(field_error(
                format!("NewSeqNo {} is below the expected MsgSeqNum {}", new_seq, self.in_seq),
                fix::NEW_SEQ_NO,
                fix::VALUE_INCORRECT,
            ));
        }
        Ok(())
    }

    /// Our messages [BeginSeqNo, EndSeqNo or our last]: all gap-filled (the trader keeps none:
    /// its orders are IOC, and a stale order replayed onto a market is a new risk, not a recovery).
    fn answer_resend(&mut self, msg: &FixMessage, out: &mut Received) -> Result<(), FieldError> {
        self.stats.resend_requests_received += 1;
        for tag in [fix::BEGIN_SEQ_NO, fix::END_SEQ_NO] {
            if msg.get(tag).is_none() {
                return Err(field_error(
                    format!("ResendRequest without tag {}", tag),
                    tag,
                    fix::REQUIRED_TAG_MISSING,
                ));
            }
        }
        let begin = Self::positive(msg, fix::BEGIN_SEQ_NO, 0)?;
        let mut end = msg.int(fix::END_SEQ_NO, 0)?;
        let last = self.out_seq as i64 - 1;
        if begin > last {
            return Err(field_error(
                format!("BeginSeqNo {} is beyond the last MsgSeqNum sent ({})", begin, last),
                fix::BEGIN_SEQ_NO,
                fix::VALUE_INCORRECT,
            ));
        }
        if end == 0 || end > last {
            end = last; // 0: everything since BeginSeqNo
        }
        if end < begin {
            return Err(field_error(
                format!("EndSeqNo {} is below BeginSeqNo {}", end, begin),
                fix::END_SEQ_NO,
                fix::VALUE_INCORRECT,
            ));
        }
        self.stats.peer_expects = begin as u64;
        self.stats.gap_fills_sent += 1;
        out.gap_filled.push((begin as u64, end as u64 + 1));
        let next = num(end + 1);
        out.replies.push(self.build_at(begin, b"4", &[(fix::GAP_FILL_FLAG, b"Y"), (fix::NEW_SEQ_NO, &next)]));
        Ok(())
    }

    /// Heartbeat when we have been quiet; TestRequest when the peer has; give up after that.
    pub fn timer(&mut self) -> Received {
        let mut out = Received::default();
        if !self.logged_on {
            return out;
        }
        let now = monotonic_s();
        let hb = self.heartbeat_s as f64;
        if let Some(at) = self.test_request_at {
            if now - at > hb {
                let text = "no answer to TestRequest".to_string();
                let logout = self.logout(&text);
                out.closing(vec![logout], text);
                return out;
            }
        }
        if self.test_request_at.is_none() && now - self.last_rx > hb * 1.2 {
            self.test_request_at = Some(now);
            self.stats.test_requests_sent += 1;
            let id = format!("TS{}", now as i64);
            out.replies.push(self.build(b"1", &[(fix::TEST_REQ_ID, id.as_bytes())]));
        }
        if now - self.last_tx >= hb {
            self.stats.heartbeats_sent += 1;
            out.replies.push(self.build(b"0", &[]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FixSession, FixSession) {
        let (mut t, mut v) = (FixSession::new("TRADER", "VENUE", 30), FixSession::new("VENUE", "TRADER", 30));
        let logon = fix::parse(t.logon()).unwrap();
        v.on_message(logon);
        let answer = v.build(b"A", &[(fix::HEART_BT_INT, b"30")]);
        v.logged_on = true;
        t.on_message(fix::parse(answer).unwrap());
        assert!(t.logged_on);
        (t, v)
    }

    #[test]
    fn test_request_is_answered_and_a_gap_asks_for_a_resend() {
        let (mut t, mut v) = pair();
        let r = t.on_message(fix::parse(v.build(b"1", &[(fix::TEST_REQ_ID, b"x")])).unwrap());
        let hb = fix::parse(r.replies[0].clone()).unwrap();
        assert_eq!((hb.msg_type.as_slice(), hb.get(fix::TEST_REQ_ID)), (&b"0"[..], Some(&b"x"[..])));
        v.out_seq += 3;
        let r = t.on_message(fix::parse(v.build(b"0", &[])).unwrap());
        assert_eq!(fix::parse(r.replies[0].clone()).unwrap().msg_type, b"2");
        assert_eq!(t.stats.gaps, 1);
    }

    #[test]
    fn a_non_numeric_msg_seq_num_is_rejected_and_the_session_goes_on() {
        let (mut t, _) = pair();
        let raw = fix::encode(b"0", &[(49, b"VENUE"), (56, b"TRADER"), (34, b"x")]);
        let r = t.on_message(fix::parse(raw).unwrap());
        let rej = fix::parse(r.replies[0].clone()).unwrap();
        assert_eq!(
            (rej.msg_type.as_slice(), rej.int(fix::REF_TAG_ID, 0), rej.int(fix::SESSION_REJECT_REASON, 0)),
            (&b"3"[..], Ok(34), Ok(6))
        );
        assert!(!r.close && t.logged_on && t.stats.invalid_fields == 1);
    }

    #[test]
    fn garbage_is_rejected_and_logout_is_answered() {
        let (mut t, mut v) = pair();
        let r = t.on_error("CheckSum is not 3 digits: b' 12'");
        assert_eq!(fix::parse(r.replies[0].clone()).unwrap().msg_type, b"3");
        let r = t.on_message(fix::parse(v.logout("bye")).unwrap());
        assert!(r.close && !t.logged_on && r.reason == "peer logged out: bye");
        assert_eq!(fix::parse(r.replies[0].clone()).unwrap().msg_type, b"5");
    }
    #[test]
    fn a_resend_request_is_gap_filled_from_its_begin_seq_no_to_our_next_number() {
        let (mut t, mut v) = pair();
        for _ in 0..3 {
            t.next_seq(); // three orders from the template: 2, 3, 4
            t.sent();
        }
        let r = t.on_message(
            fix::parse(v.build(b"2", &[(fix::BEGIN_SEQ_NO, b"2"), (fix::END_SEQ_NO, b"0")])).unwrap(),
        );
        let gf = fix::parse(r.replies[0].clone()).unwrap();
        assert_eq!(
            (gf.msg_type.as_slice(), gf.int(fix::MSG_SEQ_NUM, 0), gf.int(fix::NEW_SEQ_NO, 0)),
            (&b"4"[..], Ok(2), Ok(5))
        );
        assert_eq!(
            (gf.get(fix::POSS_DUP_FLAG), gf.get(fix::GAP_FILL_FLAG)),
            (Some(&b"Y"[..]), Some(&b"Y"[..]))
        );
        assert!(gf.get(fix::ORIG_SENDING_TIME).is_some());
        assert_eq!((r.gap_filled, t.out_seq), (vec![(2, 5)], 5));
    }

    #[test]
    fn what_follows_a_gap_waits_for_the_fill() {
        let (mut t, mut v) = pair();
        v.out_seq += 2; // 2 and 3 lost
        let r = t.on_message(fix::parse(v.build(b"1", &[(fix::TEST_REQ_ID, b"x")])).unwrap());
        let types: Vec<Vec<u8>> = r.replies.iter().map(|m| fix::parse(m.clone()).unwrap().msg_type).collect();
        assert_eq!(types, vec![b"2".to_vec()]); // the ResendRequest, no Heartbeat yet
        let r = t.on_message(
            fix::parse(v.build_at(2, b"4", &[(fix::GAP_FILL_FLAG, b"Y"), (fix::NEW_SEQ_NO, b"4")])).unwrap(),
        );
        let hb = fix::parse(r.replies[0].clone()).unwrap();
        assert_eq!((hb.msg_type.as_slice(), hb.get(fix::TEST_REQ_ID)), (&b"0"[..], Some(&b"x"[..])));
        assert_eq!((t.in_seq, t.stats.queued, t.stats.gap_fills_received), (5, 1, 1));
    }
}
