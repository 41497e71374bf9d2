//! MoldUDP64 framing and ITCH 5.0 decoding, read in place from the receive buffer (no copies).
//! The same rules and counters as pipeline/itch.py: damage is counted and skipped, never raised.

pub const MOLD_HEADER: usize = 20;
const HEARTBEAT: u16 = 0;
const END_OF_SESSION: u16 = 0xFFFF;

/// ITCH 5.0 message lengths by type: the decoded ones and the known ones skipped.
pub fn expected_length(kind: u8) -> Option<usize> {
    Some(match kind {
        b'S' => 12,
        b'R' => 39,
        b'A' => 36,
        b'F' => 40,
        b'E' => 31,
        b'C' => 36,
        b'X' => 23,
        b'D' => 19,
        b'U' => 35,
        b'P' => 44,
        b'H' => 25,
        b'Y' => 20,
        b'L' => 26,
        b'V' => 35,
        b'W' => 12,
        b'K' => 28,
        b'J' => 35,
        b'h' => 21,
        b'Q' => 40,
        b'B' => 19,
        b'I' => 50,
        b'N' => 20,
        b'O' => 48,
        _ => return None,
    })
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline(always)]
fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// The messages an order-level book needs (fields named as in the ITCH 5.0 specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    SystemEvent { code: u8 },
    StockDirectory { locate: u16, stock: &'a [u8] },
    AddOrder { locate: u16, ref_: u64, side: u8, shares: u32, stock: &'a [u8], price: u32 },
    Executed { locate: u16, ref_: u64, shares: u32 },
    Cancel { locate: u16, ref_: u64, shares: u32 },
    Delete { locate: u16, ref_: u64 },
    Replace { locate: u16, old_ref: u64, new_ref: u64, shares: u32, price: u32 },
    Trade { locate: u16 },
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownType(u8),
    BadLength { kind: u8, length: usize, expected: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            DecodeError::Empty => write!(f, "empty ITCH message (length 0)"),
            DecodeError::UnknownType(k) => write!(f, "unknown ITCH message type {:?}", k as char),
            DecodeError::BadLength { kind, length, expected } => {
                write!(f, "ITCH {:?} message of {} bytes, expected {}", kind as char, length, expected)
            }
        }
    }
}

/// One message (exactly its bytes) -> Ok(Some(fields)), Ok(None) for a known type not needed.
pub fn decode(m: &[u8]) -> Result<Option<Msg<'_>>, DecodeError> {
    let kind = *m.first().ok_or(DecodeError::Empty)?;
    let expected = expected_length(kind).ok_or(DecodeError::UnknownType(kind))?;
    if m.len() != expected {
        return Err(DecodeError::BadLength { kind, length: m.len(), expected });
    }
    let locate = be16(m, 1);
    Ok(Some(match kind {
        b'S' => Msg::SystemEvent { code: m[11] },
        b'R' => Msg::StockDirectory { locate, stock: &m[11..19] },
        b'A' | b'F' => Msg::AddOrder {
            locate,
            ref_: be64(m, 11),
            side: m[19],
            shares: be32(m, 20),
            stock: &m[24..32],
            price: be32(m, 32),
        },
        b'E' | b'C' => Msg::Executed { locate, ref_: be64(m, 11), shares: be32(m, 19) },
        b'X' => Msg::Cancel { locate, ref_: be64(m, 11), shares: be32(m, 19) },
        b'D' => Msg::Delete { locate, ref_: be64(m, 11) },
        b'U' => Msg::Replace {
            locate,
            old_ref: be64(m, 11),
            new_ref: be64(m, 19),
            shares: be32(m, 27),
            price: be32(m, 31),
        },
        b'P' => Msg::Trade { locate },
        _ => return Ok(None),
    }))
}

#[derive(Debug, Default, Clone)]
pub struct FeedStats {
    pub packets: u64,
    pub messages: u64,
    pub skipped: u64,
    pub heartbeats: u64,
    pub gaps: u64,
    pub gap_messages: u64,
    pub stale_packets: u64,
    pub malformed_packets: u64,
    pub malformed_messages: u64,
    pub end_of_session: bool,
}

/// Frames MoldUDP64 packets into (sequence number, offset, length) of each new message, in
/// sequence, counting gaps, stale packets and damaged framing.
pub struct MoldReceiver {
    pub expected_seq: Option<u64>,
    pub stats: FeedStats,
    pub last_error: String,
    offsets: Vec<(u32, u32)>,
    /// (sequence number, offset, length) of the new messages of the last packet, in order.
    pub ready: Vec<(u64, u32, u32)>,
}

impl Default for MoldReceiver {
    fn default() -> Self {
        MoldReceiver {
            expected_seq: None,
            stats: FeedStats::default(),
            last_error: String::new(),
            offsets: Vec::with_capacity(256),
            ready: Vec::with_capacity(256),
        }
    }
}

impl MoldReceiver {
    /// Frames `buf` (one datagram) into `ready`: the messages not seen before, in sequence.
    pub fn packet(&mut self, buf: &[u8]) {
        let n = buf.len();
        self.ready.clear();
        self.stats.packets += 1;
        if n < MOLD_HEADER {
            self.stats.malformed_packets += 1;
            self.last_error = format!("MoldUDP64 packet of {} bytes is shorter than its 20-byte header", n);
            return;
        }
        let seq = be64(buf, 10);
        let count = be16(buf, 18);
        if count == HEARTBEAT {
            self.stats.heartbeats += 1;
            self.advance_to(seq);
            return;
        }
        if count == END_OF_SESSION {
            self.stats.end_of_session = true;
            return;
        }
        if let Some(exp) = self.expected_seq {
            if seq.saturating_add(count as u64) <= exp {
                self.stats.stale_packets += 1;
                return;
            }
        }
        if seq.checked_add(count as u64).is_none() {
            // Its numbers (and the next expected one) would not fit the u64 on the wire: as the
            // Python trader does, a malformed packet, not a wrapped sequence.
            self.stats.malformed_packets += 1;
            self.last_error =
                format!("MoldUDP64 packet seq {}: its {} messages would number past 2^64 - 1", seq, count);
            return;
        }
        // Validate the framing before handing out anything: a count mismatch spoils the packet.
        self.offsets.clear();
        let mut pos = MOLD_HEADER;
        for _ in 0..count {
            if pos + 2 > n {
                break;
            }
            let len = be16(buf, pos) as usize;
            if pos + 2 + len > n {
                break;
            }
            self.offsets.push(((pos + 2) as u32, len as u32));
            pos += 2 + len;
        }
        if self.offsets.len() != count as usize || pos != n {
            self.stats.malformed_packets += 1;
            self.last_error = format!(
                "MoldUDP64 packet seq {}: header says {} messages, framing holds {}",
                seq,
                count,
                self.offsets.len()
            );
            self.advance_to(seq.saturating_add(count as u64));
            return;
        }
        self.advance_to(seq);
        for i in 0..self.offsets.len() {
            let (off, len) = self.offsets[i];
            let msg_seq = seq + i as u64;
            if let Some(exp) = self.expected_seq {
                if msg_seq < exp {
                    continue; // overlap with what we already have
                }
            }
            self.expected_seq = Some(msg_seq + 1);
            self.ready.push((msg_seq, off, len));
        }
    }

    /// `decode` that counts instead of failing: None for skipped or malformed messages.
    #[inline]
    pub fn decode<'a>(&mut self, m: &'a [u8], seq: u64) -> Option<Msg<'a>> {
        match decode(m) {
            Ok(Some(msg)) => {
                self.stats.messages += 1;
                Some(msg)
            }
            Ok(None) => {
                self.stats.skipped += 1;
                None
            }
            Err(e) => {
                self.stats.malformed_messages += 1;
                self.last_error = format!("seq {}: {}", seq, e);
                None
            }
        }
    }

    fn advance_to(&mut self, seq: u64) {
        match self.expected_seq {
            Some(exp) if seq > exp => {
                self.stats.gaps += 1;
                self.stats.gap_messages += seq - exp;
                self.last_error = format!("gap: expected seq {}, got {}", exp, seq);
                self.expected_seq = Some(seq);
            }
            None => self.expected_seq = Some(seq),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bytes as pipeline/itch.py's encoders produce them (checked against struct.pack by hand).
    fn add_order(ref_: u64, side: u8, shares: u32, price: u32) -> Vec<u8> {
        let mut m = vec![b'A', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&ref_.to_be_bytes());
        m.push(side);
        m.extend_from_slice(&shares.to_be_bytes());
        m.extend_from_slice(b"AAPL    ");
        m.extend_from_slice(&price.to_be_bytes());
        m
    }

    fn packet(seq: u64, msgs: &[&[u8]]) -> Vec<u8> {
        let mut p = b"TEST000001".to_vec();
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(msgs.len() as u16).to_be_bytes());
        for m in msgs {
            p.extend_from_slice(&(m.len() as u16).to_be_bytes());
            p.extend_from_slice(m);
        }
        p
    }

    #[test]
    fn add_order_decodes_from_known_bytes() {
        // itch.add_order(1, 0, 0, 7, b"B", 100, "AAPL", 1_000_000).hex()
        let m = hex("4100010000000000000000000000000000000742000000644141504c20202020000f4240");
        assert_eq!(m, add_order(7, b'B', 100, 1_000_000));
        assert_eq!(
            decode(&m).unwrap().unwrap(),
            Msg::AddOrder {
                locate: 1,
                ref_: 7,
                side: b'B',
                shares: 100,
                stock: b"AAPL    ",
                price: 1_000_000
            }
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        s.as_bytes()
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn replace_and_delete_decode_from_known_bytes() {
        // itch.order_replace(2, 0, 0, 5, 6, 300, 1_000_100): type, locate, tracking, ts, refs, shares, price
        let u = hex("5500020000000000000000000000000000000500000000000000060000012c000f42a4");
        assert_eq!(
            decode(&u).unwrap().unwrap(),
            Msg::Replace { locate: 2, old_ref: 5, new_ref: 6, shares: 300, price: 1_000_100 }
        );
        let d = hex("44000200000000000000000000000000000005");
        assert_eq!(decode(&d).unwrap().unwrap(), Msg::Delete { locate: 2, ref_: 5 });
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"Zxxxxxxxxxx"), Err(DecodeError::UnknownType(b'Z')));
        assert_eq!(decode(&[b'D'; 5]), Err(DecodeError::BadLength { kind: b'D', length: 5, expected: 19 }));
        assert_eq!(decode(&[b'H'; 25]), Ok(None));
    }

    #[test]
    fn framing_counts_gaps_stale_and_damage() {
        let a = add_order(1, b'B', 100, 1_000_000);
        let mut rx = MoldReceiver::default();
        let mut seen = vec![];
        let mut feed = |rx: &mut MoldReceiver, p: &[u8]| {
            rx.packet(p);
            for &(s, off, len) in rx.ready.clone().iter() {
                if rx.decode(&p[off as usize..(off + len) as usize], s).is_some() {
                    seen.push(s)
                }
            }
        };
        feed(&mut rx, &packet(1, &[&a, &a]));
        feed(&mut rx, &packet(5, &[&a])); // 3, 4 missed
        feed(&mut rx, &packet(2, &[&a])); // stale
        feed(&mut rx, &[0u8; 7]); // shorter than the header
        let mut cut = packet(6, &[&a]);
        cut.truncate(cut.len() - 5);
        feed(&mut rx, &cut); // framing holds fewer than the count
        feed(&mut rx, &packet(7, &[&a, b""])); // a zero-length message
        assert_eq!(seen, vec![1, 2, 5, 7]);
        // 3, 4 missed; then the spoiled packet 6 is skipped over, as the Python receiver does
        assert_eq!((rx.stats.gaps, rx.stats.gap_messages, rx.stats.stale_packets), (2, 3, 1));
        assert_eq!((rx.stats.malformed_packets, rx.stats.malformed_messages), (2, 1));
        assert_eq!(rx.expected_seq, Some(9));
    }
}
