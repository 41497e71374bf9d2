//! The FIX 4.4 session layer (pipeline/fix_session.py), initiator side: sequence numbers,
//! Logon/Logout, Heartbeat/TestRequest, ResendRequest on a gap, Reject(35=3) for garbage and for
//! well-framed messages with a field the session cannot use. Nothing a peer sends panics.

use crate::fix::{self, FieldError, FixMessage, UtcClock};

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
    pub last_error: String,
}

pub struct Received {
    pub app: Option<FixMessage>,
    pub replies: Vec<Vec<u8>>,
    pub close: bool,
    pub reason: String,
}

impl Received {
    fn none(replies: Vec<Vec<u8>>) -> Self {
        Received { app: None, replies, close: false, reason: String::new() }
    }
    fn closing(replies: Vec<Vec<u8>>, reason: String) -> Self {
        Received { app: None, replies, close: true, reason }
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
    pub stats: SessionStats,
    pub last_rx: f64,
    pub last_tx: f64,
    test_request_at: Option<f64>,
    pub clock: UtcClock,
}

fn num(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
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
            stats: SessionStats::default(),
            last_rx: now,
            last_tx: now,
            test_request_at: None,
            clock: UtcClock::default(),
        }
    }

    pub fn build(&mut self, msg_type: &[u8], fields: &[(u32, &[u8])], poss_dup: bool) -> Vec<u8> {
        let seq = num(self.out_seq as i64);
        let now = self.clock.now();
        let mut all: Vec<(u32, &[u8])> = vec![
            (fix::SENDER_COMP_ID, self.sender.as_bytes()),
            (fix::TARGET_COMP_ID, self.target.as_bytes()),
            (fix::MSG_SEQ_NUM, &seq),
            (fix::SENDING_TIME, &now),
        ];
        if poss_dup {
            all.push((fix::POSS_DUP_FLAG, b"Y"));
        }
        all.extend_from_slice(fields);
        let raw = fix::encode(msg_type, &all);
        self.out_seq += 1;
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
        self.out_seq = 1;
        self.in_seq = 1;
        let hb = num(self.heartbeat_s);
        self.build(b"A", &[(fix::ENCRYPT_METHOD, b"0"), (fix::HEART_BT_INT, &hb), (fix::RESET_SEQ_NUM_FLAG, b"Y")], false)
    }

    pub fn logout(&mut self, text: &str) -> Vec<u8> {
        self.logout_sent = true;
        if text.is_empty() {
            self.build(b"5", &[], false)
        } else {
            self.build(b"5", &[(fix::TEXT, text.as_bytes())], false)
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
        self.build(b"3", &fields, false)
    }

    pub fn on_error(&mut self, err: &str) -> Received {
        self.stats.garbage += 1;
        self.stats.last_error = err.into();
        Received::none(vec![self.reject(err, 0, 0, None)])
    }

    pub fn on_message(&mut self, msg: FixMessage) -> Received {
        self.last_rx = monotonic_s();
        self.test_request_at = None;
        self.stats.messages_in += 1;
        match self.handle(&msg) {
            Ok(Some(mut r)) => {
                if r.app.is_none() && r.close && msg.msg_type == b"5" {
                    r.app = Some(msg);
                }
                r
            }
            Ok(None) => Received { app: Some(msg), replies: vec![], close: false, reason: String::new() },
            Err((e, replies)) => {
                let mut r = self.on_field_error(&msg, &e);
                let mut all = replies;
                all.append(&mut r.replies);
                r.replies = all;
                r
            }
        }
    }

    pub fn on_field_error(&mut self, msg: &FixMessage, err: &FieldError) -> Received {
        self.stats.invalid_fields += 1;
        self.stats.last_error = err.text.clone();
        if !self.logged_on {
            let text = format!("invalid Logon: {}", err.text);
            return Received::closing(vec![self.logout(&text)], text);
        }
        let ref_seq = match msg.get(fix::MSG_SEQ_NUM) {
            Some(v) if !v.is_empty() && v.len() <= 18 && v.iter().all(|c| c.is_ascii_digit()) => fix::parse_int(v, 0).unwrap_or(0),
            _ => 0,
        };
        Received::none(vec![self.reject(&err.text, ref_seq, err.tag, Some(err.reason))])
    }

    fn positive(msg: &FixMessage, tag: u32, default: i64) -> Result<i64, FieldError> {
        let v = msg.int(tag, default)?;
        if v <= 0 {
            return Err(FieldError { text: format!("tag {} must be a positive number: {}", tag, v), tag, reason: fix::VALUE_INCORRECT });
        }
        Ok(v)
    }

    /// Ok(None): an application message for the caller with no replies; Ok(Some): what to do;
    /// Err: a field error (with the replies built before it was found).
    fn handle(&mut self, msg: &FixMessage) -> Result<Option<Received>, (FieldError, Vec<Vec<u8>>)> {
        let t = msg.msg_type.as_slice();
        let e = |e: FieldError| (e, vec![]);
        if msg.get(fix::MSG_SEQ_NUM).is_none() {
            return Err(e(FieldError { text: "MsgSeqNum(34) missing".into(), tag: fix::MSG_SEQ_NUM, reason: fix::REQUIRED_TAG_MISSING }));
        }
        let seq = Self::positive(msg, fix::MSG_SEQ_NUM, 0).map_err(e)?;
        if msg.get(fix::SENDER_COMP_ID) != Some(self.target.as_bytes()) || msg.get(fix::TARGET_COMP_ID) != Some(self.sender.as_bytes()) {
            let text = format!(
                "CompID problem: got {}->{}",
                msg.get(fix::SENDER_COMP_ID).map(fix::brepr).unwrap_or_else(|| "None".into()),
                msg.get(fix::TARGET_COMP_ID).map(fix::brepr).unwrap_or_else(|| "None".into())
            );
            let replies = vec![self.reject(&text, seq, 0, None), self.logout(&text)];
            return Ok(Some(Received::closing(replies, text)));
        }
        if t == b"A" && msg.get(fix::RESET_SEQ_NUM_FLAG) == Some(b"Y") {
            self.in_seq = 1;
        }
        if t == b"4" && msg.get(fix::GAP_FILL_FLAG) != Some(b"Y") {
            self.in_seq = Self::positive(msg, fix::NEW_SEQ_NO, self.in_seq).map_err(e)?;
            return Ok(Some(Received::none(vec![])));
        }
        let mut replies = vec![];
        if seq < self.in_seq {
            if msg.get(fix::POSS_DUP_FLAG) == Some(b"Y") {
                return Ok(Some(Received::none(vec![])));
            }
            self.stats.seq_too_low += 1;
            let text = format!("MsgSeqNum too low, expecting {} but received {}", self.in_seq, seq);
            return Ok(Some(Received::closing(vec![self.logout(&text)], text)));
        }
        if seq > self.in_seq {
            self.stats.gaps += 1;
            self.stats.resend_requests_sent += 1;
            let begin = num(self.in_seq);
            replies.push(self.build(b"2", &[(fix::BEGIN_SEQ_NO, &begin), (fix::END_SEQ_NO, b"0")], false));
        }
        self.in_seq = seq + 1;
        match t {
            b"4" => {
                let n = Self::positive(msg, fix::NEW_SEQ_NO, self.in_seq).map_err(|x| (x, replies.clone()))?;
                self.in_seq = self.in_seq.max(n);
                Ok(Some(Received::none(replies)))
            }
            b"A" => {
                if !self.logged_on {
                    let hb = msg.int(fix::HEART_BT_INT, self.heartbeat_s).map_err(|x| (x, replies.clone()))?;
                    if hb > 0 {
                        self.heartbeat_s = hb;
                    }
                    self.logged_on = true;
                }
                Ok(Some(Received { app: None, replies, close: false, reason: String::new() }))
            }
            b"0" => Ok(Some(Received::none(replies))),
            b"1" => {
                let id = msg.get(fix::TEST_REQ_ID).unwrap_or(b"").to_vec();
                replies.push(self.build(b"0", &[(fix::TEST_REQ_ID, &id)], false));
                Ok(Some(Received::none(replies)))
            }
            b"2" => {
                let n = num(self.out_seq as i64 + 1);
                replies.push(self.build(b"4", &[(fix::GAP_FILL_FLAG, b"Y"), (fix::NEW_SEQ_NO, &n)], true));
                Ok(Some(Received::none(replies)))
            }
            b"3" => {
                self.stats.rejects_received += 1;
                self.stats.last_error = String::from_utf8_lossy(msg.get(fix::TEXT).unwrap_or(b"")).into_owned();
                Ok(Some(Received { app: Some(msg.clone()), replies, close: false, reason: String::new() }))
            }
            b"5" => {
                let text = String::from_utf8_lossy(msg.get(fix::TEXT).unwrap_or(b"")).into_owned();
                if !self.logout_sent {
                    replies.push(self.logout(""));
                }
                self.logged_on = false;
                let reason = if text.is_empty() { "peer logged out".to_string() } else { format!("peer logged out: {}", text) };
                Ok(Some(Received::closing(replies, reason)))
            }
            _ => Ok(Some(Received { app: Some(msg.clone()), replies, close: false, reason: String::new() })),
        }
    }

    /// Heartbeat when we have been quiet; TestRequest when the peer has; give up after that.
    pub fn timer(&mut self) -> Received {
        if !self.logged_on {
            return Received::none(vec![]);
        }
        let now = monotonic_s();
        let hb = self.heartbeat_s as f64;
        let mut out = vec![];
        if let Some(at) = self.test_request_at {
            if now - at > hb {
                let text = "no answer to TestRequest".to_string();
                return Received::closing(vec![self.logout(&text)], text);
            }
        }
        if self.test_request_at.is_none() && now - self.last_rx > hb * 1.2 {
            self.test_request_at = Some(now);
            self.stats.test_requests_sent += 1;
            let id = format!("TS{}", now as i64);
            out.push(self.build(b"1", &[(fix::TEST_REQ_ID, id.as_bytes())], false));
        }
        if now - self.last_tx >= hb {
            self.stats.heartbeats_sent += 1;
            out.push(self.build(b"0", &[], false));
        }
        Received::none(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FixSession, FixSession) {
        let (mut t, mut v) = (FixSession::new("TRADER", "VENUE", 30), FixSession::new("VENUE", "TRADER", 30));
        let logon = fix::parse(t.logon()).unwrap();
        v.on_message(logon);
        let answer = v.build(b"A", &[(fix::HEART_BT_INT, b"30")], false);
        v.logged_on = true;
        t.on_message(fix::parse(answer).unwrap());
        assert!(t.logged_on);
        (t, v)
    }

    #[test]
    fn test_request_is_answered_and_a_gap_asks_for_a_resend() {
        let (mut t, mut v) = pair();
        let r = t.on_message(fix::parse(v.build(b"1", &[(fix::TEST_REQ_ID, b"x")], false)).unwrap());
        let hb = fix::parse(r.replies[0].clone()).unwrap();
        assert_eq!((hb.msg_type.as_slice(), hb.get(fix::TEST_REQ_ID)), (&b"0"[..], Some(&b"x"[..])));
        v.out_seq += 3;
        let r = t.on_message(fix::parse(v.build(b"0", &[], false)).unwrap());
        assert_eq!(fix::parse(r.replies[0].clone()).unwrap().msg_type, b"2");
        assert_eq!(t.stats.gaps, 1);
    }

    #[test]
    fn a_non_numeric_msg_seq_num_is_rejected_and_the_session_goes_on() {
        let (mut t, _) = pair();
        let raw = fix::encode(b"0", &[(49, b"VENUE"), (56, b"TRADER"), (34, b"x")]);
        let r = t.on_message(fix::parse(raw).unwrap());
        let rej = fix::parse(r.replies[0].clone()).unwrap();
        assert_eq!((rej.msg_type.as_slice(), rej.int(fix::REF_TAG_ID, 0), rej.int(fix::SESSION_REJECT_REASON, 0)), (&b"3"[..], Ok(34), Ok(6)));
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
}
