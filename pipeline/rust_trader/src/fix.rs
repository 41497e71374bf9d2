//! FIX 4.4: a validating parser (BodyLength counted, CheckSum exactly three digits and checked),
//! a stream splitter that reports damage as one-line errors, an encoder, and the NewOrderSingle
//! template of the hot path. The same rules and error texts as pipeline/fix.py.

pub const SOH: u8 = 1;
pub const HEAD: &[u8] = b"8=FIX.4.4\x019=";
const MAX_BODY_LENGTH_DIGITS: usize = 9;
const MAX_INT_DIGITS: usize = 18;
pub const MAX_MESSAGE: usize = 64 * 1024;

pub const MSG_TYPE: u32 = 35;
pub const SENDER_COMP_ID: u32 = 49;
pub const TARGET_COMP_ID: u32 = 56;
pub const MSG_SEQ_NUM: u32 = 34;
pub const SENDING_TIME: u32 = 52;
pub const POSS_DUP_FLAG: u32 = 43;
pub const TEST_REQ_ID: u32 = 112;
pub const HEART_BT_INT: u32 = 108;
pub const RESET_SEQ_NUM_FLAG: u32 = 141;
pub const ENCRYPT_METHOD: u32 = 98;
pub const TEXT: u32 = 58;
pub const REF_SEQ_NUM: u32 = 45;
pub const REF_TAG_ID: u32 = 371;
pub const SESSION_REJECT_REASON: u32 = 373;
pub const BEGIN_SEQ_NO: u32 = 7;
pub const END_SEQ_NO: u32 = 16;
pub const NEW_SEQ_NO: u32 = 36;
pub const GAP_FILL_FLAG: u32 = 123;
pub const ORIG_SENDING_TIME: u32 = 122;
pub const CL_ORD_ID: u32 = 11;
pub const ORIG_CL_ORD_ID: u32 = 41;
pub const EXEC_TYPE: u32 = 150;
pub const SYMBOL: u32 = 55;
pub const SIDE: u32 = 54;
pub const TRANSACT_TIME: u32 = 60;
pub const LAST_QTY: u32 = 32;
pub const LAST_PX: u32 = 31;

pub const REQUIRED_TAG_MISSING: i64 = 1;
pub const VALUE_INCORRECT: i64 = 5;
pub const INCORRECT_DATA_FORMAT: i64 = 6;

/// Python's repr of a byte string, for error texts that match the Python trader's.
pub fn brepr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    let mut s = String::from("b");
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if c as char == quote => {
                s.push('\\');
                s.push(quote)
            }
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{:02x}", c)),
        }
    }
    s.push(quote);
    s
}

fn head(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

fn find(hay: &[u8], needle: &[u8], from: usize, to: usize) -> Option<usize> {
    let to = to.min(hay.len());
    if from >= to || needle.len() > to - from {
        return None;
    }
    hay[from..to].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

fn all_digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|c| c.is_ascii_digit())
}

fn digits_value(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, &c| v.saturating_mul(10).saturating_add((c - b'0') as u64))
}

#[derive(Debug, Clone)]
pub struct FixMessage {
    pub raw: Vec<u8>,
    fields: Vec<(u32, u32, u32)>, // tag, value start, value end
    pub msg_type: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub text: String,
    pub tag: u32,
    pub reason: i64,
}

impl FixMessage {
    /// The value of `tag` (the last one when repeated, as a dict would keep it).
    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.fields.iter().rev().find(|f| f.0 == tag).map(|f| &self.raw[f.1 as usize..f.2 as usize])
    }

    pub fn int(&self, tag: u32, default: i64) -> Result<i64, FieldError> {
        match self.get(tag) {
            None => Ok(default),
            Some(v) => parse_int(v, tag),
        }
    }
}

pub fn parse_int(v: &[u8], tag: u32) -> Result<i64, FieldError> {
    let (neg, digits) = if v.first() == Some(&b'-') { (true, &v[1..]) } else { (false, v) };
    if !all_digits(digits) || digits.len() > MAX_INT_DIGITS {
        return Err(FieldError {
            text: format!("tag {} is not an integer: {}", tag, brepr(head(v, 20))),
            tag,
            reason: INCORRECT_DATA_FORMAT,
        });
    }
    let x = digits_value(digits) as i64;
    Ok(if neg { -x } else { x })
}

/// A FIX Price -> units of 1/10000, exactly.
pub fn parse_price(v: &[u8], tag: u32) -> Result<i64, FieldError> {
    let (whole, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &v[v.len()..]),
    };
    let mut frac = frac;
    while frac.last() == Some(&b'0') {
        frac = &frac[..frac.len() - 1];
    }
    if !all_digits(whole) || whole.len() > 12 || (!frac.is_empty() && !all_digits(frac)) || frac.len() > 4 {
        return Err(FieldError {
            text: format!("tag {} is not a price with at most 4 decimals: {}", tag, brepr(head(v, 20))),
            tag,
            reason: INCORRECT_DATA_FORMAT,
        });
    }
    let mut f = digits_value(frac) as i64;
    for _ in frac.len()..4 {
        f *= 10;
    }
    Ok(digits_value(whole) as i64 * 10_000 + f)
}

pub fn checksum(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |s, &c| s.wrapping_add(c as u32)) & 0xFF
}

/// One complete message -> FixMessage, or the one-line reason it is not exactly FIX.
pub fn parse(raw: Vec<u8>) -> Result<FixMessage, String> {
    if !raw.starts_with(HEAD) {
        return Err(format!("does not start with 8=FIX.4.4|9=: {}", brepr(head(&raw, 20))));
    }
    let len_end = match raw[HEAD.len()..].iter().position(|&c| c == SOH) {
        Some(i) => i + HEAD.len(),
        None => return Err("no SOH after BodyLength".into()),
    };
    let length_text = &raw[HEAD.len()..len_end];
    if !all_digits(length_text) || length_text.len() > MAX_BODY_LENGTH_DIGITS {
        return Err(format!("BodyLength is not a number: {}", brepr(head(length_text, 20))));
    }
    let body_len = digits_value(length_text) as usize;
    let body_start = len_end + 1;
    let trailer = body_start + body_len;
    if raw.get(trailer..trailer + 3) != Some(b"10=") {
        return Err(format!("BodyLength {} does not end at the CheckSum field", body_len));
    }
    if raw[trailer - 1] != SOH {
        return Err("the field before CheckSum does not end in SOH".into());
    }
    if raw.len() != trailer + 7 || raw[raw.len() - 1] != SOH {
        return Err("CheckSum field is not 10=NNN| at the end of the message".into());
    }
    let sum_text = &raw[trailer + 3..trailer + 6];
    if !all_digits(sum_text) {
        return Err(format!("CheckSum is not 3 digits: {}", brepr(sum_text)));
    }
    let declared = digits_value(sum_text) as u32;
    let actual = checksum(&raw[..trailer]);
    if declared != actual {
        return Err(format!("CheckSum {:03} does not match the computed {:03}", declared, actual));
    }
    let mut fields = Vec::with_capacity(24);
    let mut pos = body_start;
    let end = trailer - 1;
    while pos <= end && body_start < end {
        let stop = raw[pos..end].iter().position(|&c| c == SOH).map(|i| i + pos).unwrap_or(end);
        let item = &raw[pos..stop];
        match item.iter().position(|&c| c == b'=') {
            Some(eq) if all_digits(&item[..eq]) => {
                let tag = digits_value(&item[..eq]).min(u32::MAX as u64) as u32;
                fields.push((tag, (pos + eq + 1) as u32, stop as u32));
            }
            _ => return Err(format!("malformed field {}", brepr(head(item, 30)))),
        }
        pos = stop + 1;
    }
    if body_start >= end {
        return Err("malformed field b''".into());
    }
    let msg_type =
        fields.iter().rev().find(|f| f.0 == MSG_TYPE).map(|f| raw[f.1 as usize..f.2 as usize].to_vec());
    match msg_type {
        Some(t) if raw[body_start..].starts_with(b"35=") => Ok(FixMessage { raw, fields, msg_type: t }),
        _ => Err("MsgType(35) must be the third field".into()),
    }
}

/// Splits a TCP byte stream into messages, each parsed or reported as a one-line error.
#[derive(Default)]
pub struct FixStream {
    buf: Vec<u8>,
}

pub type Item = Result<FixMessage, String>;

impl FixStream {
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Item>) {
        self.buf.extend_from_slice(data);
        loop {
            let start = match find(&self.buf, b"8=FIX", 0, self.buf.len()) {
                None => {
                    if self.buf.len() > 16 {
                        out.push(Err(format!("garbage without BeginString: {}", brepr(head(&self.buf, 20)))));
                        // Keep a tail that may be the start of the next BeginString.
                        let keep = (1..5).rev().find(|&k| self.buf.ends_with(&b"8=FIX"[..k])).unwrap_or(0);
                        let cut = self.buf.len() - keep;
                        self.buf.drain(..cut);
                    }
                    return;
                }
                Some(s) => s,
            };
            if start > 0 {
                out.push(Err(format!(
                    "garbage before BeginString: {}",
                    brepr(head(&self.buf, start.min(20)))
                )));
                self.buf.drain(..start);
            }
            let framed = self.by_body_length();
            if framed > 0 {
                let raw: Vec<u8> = self.buf.drain(..framed).collect();
                out.push(parse(raw));
                continue;
            }
            // BodyLength unusable, or not all here yet: the first CheckSum field ends it.
            let end = find(&self.buf, b"\x0110=", 0, self.buf.len());
            let restart = find(&self.buf, HEAD, 1, end.unwrap_or(self.buf.len()));
            if let Some(r) = restart {
                out.push(Err(format!("message without CheckSum: {}", brepr(head(&self.buf, r.min(20))))));
                self.buf.drain(..r);
                continue;
            }
            match end {
                Some(e) if self.buf.len() >= e + 8 => {
                    let raw: Vec<u8> = self.buf.drain(..e + 8).collect();
                    out.push(parse(raw));
                }
                _ => {
                    if self.buf.len() > MAX_MESSAGE {
                        out.push(Err("message longer than 64 KiB without a CheckSum".into()));
                        self.buf.clear();
                    }
                    return;
                }
            }
        }
    }

    fn by_body_length(&self) -> usize {
        let buf = &self.buf;
        if !buf.starts_with(HEAD) {
            return 0;
        }
        let len_end = match find(buf, &[SOH], HEAD.len(), HEAD.len() + MAX_BODY_LENGTH_DIGITS + 1) {
            None => return 0,
            Some(e) => e,
        };
        let length_text = &buf[HEAD.len()..len_end];
        if !all_digits(length_text) {
            return 0;
        }
        let end = len_end + 1 + digits_value(length_text) as usize + 7;
        if buf.len() < end || &buf[end - 7..end - 4] != b"10=" || buf[end - 1] != SOH {
            return 0;
        }
        end
    }
}

#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push_trailer(out: &mut Vec<u8>) {
    let sum = checksum(out);
    out.extend_from_slice(b"10=");
    out.extend_from_slice(&[
        b'0' + (sum / 100) as u8,
        b'0' + (sum / 10 % 10) as u8,
        b'0' + (sum % 10) as u8,
        SOH,
    ]);
}

/// A complete message: BeginString, BodyLength, MsgType, the fields in order, CheckSum.
pub fn encode(msg_type: &[u8], fields: &[(u32, &[u8])]) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"35=");
    body.extend_from_slice(msg_type);
    body.push(SOH);
    for (tag, v) in fields {
        push_u64(&mut body, *tag as u64);
        body.push(b'=');
        body.extend_from_slice(v);
        body.push(SOH);
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(HEAD);
    push_u64(&mut out, body.len() as u64);
    out.push(SOH);
    out.extend_from_slice(&body);
    push_trailer(&mut out);
    out
}

/// FIX UTCTimestamp with milliseconds from REALTIME ns; the date part is cached per second.
#[derive(Default)]
pub struct UtcClock {
    second: u64,
    text: [u8; 17],
}

impl UtcClock {
    pub fn format(&mut self, ns: u64, out: &mut Vec<u8>) {
        let secs = ns / 1_000_000_000;
        if secs != self.second || self.text[0] == 0 {
            self.second = secs;
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            // Howard Hinnant's civil_from_days.
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
            let t =
                format!("{:04}{:02}{:02}-{:02}:{:02}:{:02}", y, m, d, rem / 3600, rem / 60 % 60, rem % 60);
            self.text.copy_from_slice(t.as_bytes());
        }
        out.extend_from_slice(&self.text);
        let ms = (ns / 1_000_000 % 1000) as u32;
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ]);
    }

    pub fn now(&mut self) -> Vec<u8> {
        let mut v = Vec::with_capacity(21);
        self.format(crate::sys::clock_ns(crate::sys::CLOCK_REALTIME), &mut v);
        v
    }
}

/// NewOrderSingle (IOC limit) from a pre-built template: the constant parts are built once; per
/// order the variable fields are appended and one byte sum taken. No allocation after the first.
pub struct OrderTemplate {
    prefix: Vec<u8>, // 35=D|49=S|56=T|34=
    body: Vec<u8>,
    pub out: Vec<u8>,
    time: Vec<u8>,
}

impl OrderTemplate {
    pub fn new(sender: &str, target: &str) -> Self {
        let mut prefix = b"35=D\x0149=".to_vec();
        prefix.extend_from_slice(sender.as_bytes());
        prefix.extend_from_slice(b"\x0156=");
        prefix.extend_from_slice(target.as_bytes());
        prefix.extend_from_slice(b"\x0134=");
        OrderTemplate {
            prefix,
            body: Vec::with_capacity(256),
            out: Vec::with_capacity(320),
            time: Vec::with_capacity(24),
        }
    }

    /// Encodes into `self.out`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &mut self,
        clock: &mut UtcClock,
        now_ns: u64,
        seq: u64,
        clordid: &[u8],
        symbol: &[u8],
        side: u8,
        qty: i64,
        price: i64,
    ) {
        self.time.clear();
        clock.format(now_ns, &mut self.time);
        let b = &mut self.body;
        b.clear();
        b.extend_from_slice(&self.prefix);
        push_u64(b, seq);
        b.extend_from_slice(b"\x0152=");
        b.extend_from_slice(&self.time);
        b.extend_from_slice(b"\x0111=");
        b.extend_from_slice(clordid);
        b.extend_from_slice(b"\x0121=1\x0155=");
        b.extend_from_slice(symbol);
        b.extend_from_slice(b"\x0154=");
        b.push(side);
        b.extend_from_slice(b"\x0160=");
        b.extend_from_slice(&self.time);
        b.extend_from_slice(b"\x0138=");
        push_u64(b, qty.max(0) as u64);
        b.extend_from_slice(b"\x0140=2\x0144=");
        push_price(b, price);
        b.extend_from_slice(b"\x0159=3\x01");
        let o = &mut self.out;
        o.clear();
        o.extend_from_slice(HEAD);
        push_u64(o, b.len() as u64);
        o.push(SOH);
        o.extend_from_slice(b);
        push_trailer(o);
    }
}

/// Price units (1/10000) -> FIX Price text with four decimals.
pub fn push_price(out: &mut Vec<u8>, units: i64) {
    let u = units.max(0) as u64;
    push_u64(out, u / 10_000);
    let f = (u % 10_000) as u32;
    out.extend_from_slice(&[
        b'.',
        b'0' + (f / 1000) as u8,
        b'0' + (f / 100 % 10) as u8,
        b'0' + (f / 10 % 10) as u8,
        b'0' + (f % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8], checksum_text: Option<&[u8]>) -> Vec<u8> {
        let mut m = HEAD.to_vec();
        m.extend_from_slice(body.len().to_string().as_bytes());
        m.push(SOH);
        m.extend_from_slice(body);
        let sum = format!("{:03}", checksum(&m));
        m.extend_from_slice(b"10=");
        m.extend_from_slice(checksum_text.unwrap_or(sum.as_bytes()));
        m.push(SOH);
        m
    }

    #[test]
    fn encode_matches_pythons_bytes_and_parses_back() {
        // fix.encode(b"0", [(49, b"A"), (56, b"B"), (34, 7)])
        let m = encode(b"0", &[(49, b"A"), (56, b"B"), (34, b"7")]);
        assert_eq!(m, b"8=FIX.4.4\x019=20\x0135=0\x0149=A\x0156=B\x0134=7\x0110=131\x01".to_vec());
        let p = parse(m).unwrap();
        assert_eq!((p.msg_type.as_slice(), p.get(49), p.int(34, 0)), (&b"0"[..], Some(&b"A"[..]), Ok(7)));
    }

    #[test]
    fn template_is_valid_fix_with_the_order_fields() {
        let mut t = OrderTemplate::new("TICKSCOPE", "VENUE");
        let mut clock = UtcClock::default();
        t.encode(&mut clock, 1_764_055_800_123_456_789, 42, b"TS7", b"AAPL", b'1', 100, 1_000_100);
        let p = parse(t.out.clone()).unwrap();
        assert_eq!(p.get(52), Some(&b"20251125-07:30:00.123"[..]));
        assert_eq!(p.get(44), Some(&b"100.0100"[..]));
        assert_eq!(
            (p.get(11), p.get(55), p.get(54), p.get(38), p.get(59)),
            (Some(&b"TS7"[..]), Some(&b"AAPL"[..]), Some(&b"1"[..]), Some(&b"100"[..]), Some(&b"3"[..]))
        );
        assert_eq!(p.int(34, 0), Ok(42));
    }

    #[test]
    fn bad_checksum_and_body_length_are_errors() {
        let body = b"35=0\x0149=A\x0156=B\x0134=1\x01";
        assert!(parse(frame(body, None)).is_ok());
        assert_eq!(parse(frame(body, Some(b"000"))).unwrap_err().split(" does").next(), Some("CheckSum 000"));
        assert_eq!(parse(frame(body, Some(b" 12"))).unwrap_err(), "CheckSum is not 3 digits: b' 12'");
        assert_eq!(
            parse(frame(body, Some(b"12"))).unwrap_err(),
            "CheckSum field is not 10=NNN| at the end of the message"
        );
        let mut m = frame(body, None);
        m[12] = b'1'; // BodyLength 20 -> 10
        assert!(parse(m).unwrap_err().starts_with("BodyLength 10 does not end"));
        let p = parse(frame(b"35=0\x0149=A\x0156=B\x0134=x\x01", None)).unwrap();
        assert_eq!(p.int(34, 0).unwrap_err().reason, INCORRECT_DATA_FORMAT);
        assert_eq!(parse_price(b"101.23", 44), Ok(1_012_300));
        assert!(parse_price(b"1e999", 31).is_err());
    }

    #[test]
    fn stream_splits_reports_garbage_and_keeps_what_follows() {
        let good = frame(b"35=0\x0149=A\x0156=B\x0134=1\x01", None);
        let mut data = b"junk".to_vec();
        data.extend_from_slice(&good[..good.len() - 10]); // cut short: no CheckSum
        data.extend_from_slice(&good);
        data.extend_from_slice(&good[..9]); // the start of the next
        let mut s = FixStream::default();
        let mut out = vec![];
        s.feed(&data, &mut out);
        let kinds: Vec<bool> = out.iter().map(|i| i.is_ok()).collect();
        assert_eq!(kinds, [false, false, true]);
        assert!(out[0].as_ref().unwrap_err().starts_with("garbage before BeginString"));
        out.clear();
        s.feed(&good[9..], &mut out);
        assert!(out.len() == 1 && out[0].is_ok());
    }
}
