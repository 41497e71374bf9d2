//! One FIX order session (a venue): its socket, session layer, order template, and the orders it
//! has on the wire. The trader holds one per venue: the primary, and the hedge venue when
//! `--hedge-fix-port` is given (pipeline/trader.py `Gateway`).

use crate::error::Error;
use crate::fix::{FixStream, Item, OrderTemplate};
use crate::in_flight::InFlight;
use crate::session::FixSession;
use crate::sys;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

pub struct Gateway {
    /// The venue's name: its TargetCompID, also the `venue` dimension's value.
    pub venue: String,
    pub host: String,
    pub port: u16,
    pub hedge: bool,
    /// "hedge venue X: " for the hedge session's log lines, "" for the primary's.
    pub prefix: String,
    pub fix: TcpStream,
    tx_enabled: bool,
    /// The kernel stamped our Logon: order.tx can use kernel transmit stamps on this session.
    pub kernel_tx: bool,
    sent_bytes: u64,
    pub session: FixSession,
    pub template: OrderTemplate,
    pub stream: FixStream,
    /// The orders on the wire waiting for the kernel's transmit stamp: (trace id, leg).
    pub pending_tx: PendingSends<(u64, u16)>,
    pub in_flight: InFlight,
    /// False once the session is over (peer closed, Logout): the loop stops reading it.
    pub alive: bool,
}

/// Sends waiting for their transmit stamp, in send order (their OPT_ID keys increase, modulo
/// 2^32). TCP stamps an skb once, keyed by the last byte of the last send it holds: sends the
/// kernel merged into one skb before it left (Nagle, a queue held back under load) get one stamp
/// between them, with the last one's key. So a stamp of key K is the transmit time of every send
/// still waiting up to K, not only of the send whose key is K (pipeline/timestamping.py
/// `PendingSends`, the same rule).
pub struct PendingSends<T> {
    sends: VecDeque<(u32, T)>,
}

impl<T> Default for PendingSends<T> {
    fn default() -> Self {
        PendingSends { sends: VecDeque::new() }
    }
}

impl<T> PendingSends<T> {
    pub fn add(&mut self, key: u32, send: T) {
        self.sends.push_back((key, send));
    }

    /// Each send a stamp of `key` covers, oldest first, to `f`; they wait no longer.
    pub fn stamped(&mut self, key: u32, mut f: impl FnMut(T)) {
        while let Some(&(k, _)) = self.sends.front() {
            if key.wrapping_sub(k) > u32::MAX >> 1 {
                break; // a send after `key`
            }
            if let Some((_, send)) = self.sends.pop_front() {
                f(send);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }
}

/// Where a gateway connects and as whom.
pub struct Venue<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub sender: &'a str,
    pub heartbeat: i64,
    pub hedge: bool,
}

impl Gateway {
    pub fn connect(v: Venue, timeout_s: f64) -> Result<Gateway, Error> {
        let hedge = v.hedge;
        let wrap =
            |e| if hedge { Error::HedgeVenue { venue: v.name.into(), source: Box::new(e) } } else { e };
        let fix = connect(v.host, v.port, timeout_s).map_err(wrap)?;
        let tx_flags = sys::TX_SOFTWARE | sys::SOFTWARE | sys::OPT_ID | sys::OPT_TSONLY;
        let tx_enabled = sys::set_int_option(fix.as_raw_fd(), sys::SO_TIMESTAMPING, tx_flags).is_ok();
        Ok(Gateway {
            venue: v.name.into(),
            host: v.host.into(),
            port: v.port,
            hedge,
            prefix: if hedge { format!("hedge venue {}: ", v.name) } else { String::new() },
            fix,
            tx_enabled,
            kernel_tx: false,
            sent_bytes: 0,
            session: FixSession::new(v.sender, v.name, v.heartbeat),
            template: OrderTemplate::new(v.sender, v.name),
            stream: FixStream::default(),
            pending_tx: PendingSends::default(),
            in_flight: InFlight::default(),
            alive: true,
        })
    }

    /// An error of this session, named "hedge venue X: ..." when it is the hedge venue's.
    pub fn error(&self, e: Error) -> Error {
        if self.hedge {
            Error::HedgeVenue { venue: self.venue.clone(), source: Box::new(e) }
        } else {
            e
        }
    }

    /// Logon; returns what the venue sent right after its Logon (handled once set up).
    pub fn logon(&mut self, timeout_s: f64, buf: &mut [u8]) -> Result<Vec<Item>, Error> {
        self.logon_inner(timeout_s, buf).map_err(|e| self.error(e))
    }

    fn logon_inner(&mut self, timeout_s: f64, buf: &mut [u8]) -> Result<Vec<Item>, Error> {
        let raw = self.session.logon();
        self.send_raw(&raw).map_err(Error::LogonSend)?;
        let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
        let _ = self.fix.set_read_timeout(Some(Duration::from_millis(100)));
        let mut items = vec![];
        while !self.session.logged_on {
            if Instant::now() > deadline {
                let (host, port, secs) = (self.host.clone(), self.port, timeout_s);
                return Err(Error::LogonTimeout { host, port, secs });
            }
            let n = match self.fix.read(buf) {
                Ok(0) => return Err(Error::LogonClosed),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(Error::LogonRead(e)),
            };
            let mut got = vec![];
            self.stream.feed(&buf[..n], &mut got);
            let mut it = got.into_iter();
            for item in it.by_ref() {
                let msg = item.map_err(Error::LogonGarbage)?;
                let r = self.session.on_message(msg);
                if !r.replies.is_empty() {
                    let all: Vec<u8> = r.replies.concat();
                    self.send_raw(&all).map_err(Error::Send)?;
                }
                if r.close {
                    return Err(Error::LogonRefused(r.reason));
                }
                if self.session.logged_on {
                    break;
                }
            }
            items.extend(it);
        }
        self.fix.set_nonblocking(true).map_err(|source| Error::Socket { what: "FIX", source })?;
        // Did the kernel stamp our Logon? Then order.tx may use kernel transmit stamps.
        let end = Instant::now() + Duration::from_millis(20);
        while self.tx_enabled && !self.kernel_tx && Instant::now() < end {
            self.kernel_tx = sys::drain_tx_stamps(self.fix.as_raw_fd(), |_, _| {}) > 0;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(items)
    }

    pub fn send_raw(&mut self, raw: &[u8]) -> std::io::Result<u32> {
        write_all(&mut self.fix, raw)?;
        self.sent_bytes += raw.len() as u64;
        Ok((self.sent_bytes - 1) as u32) // the OPT_ID the kernel reports for the last byte
    }

    pub fn seq_facts(&self) -> String {
        let expects = self.session.stats.peer_expects;
        let processed = if expects > 0 { (expects - 1).to_string() } else { "unknown".into() };
        format!("last MsgSeqNum sent {}, last the venue processed {}", self.session.out_seq - 1, processed)
    }
}

fn connect(host: &str, port: u16, timeout_s: f64) -> Result<TcpStream, Error> {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    loop {
        let err = match (host, port).to_socket_addrs() {
            Err(e) => e,
            Ok(mut addrs) => match addrs.next() {
                None => std::io::Error::new(ErrorKind::Other, "no address"),
                Some(addr) => match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => e,
                },
            },
        };
        if Instant::now() > deadline {
            return Err(Error::Connect { host: host.into(), port, source: err });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_all(s: &mut TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    // Non-blocking socket: a full send buffer is waited out (loopback drains it in microseconds).
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(std::io::Error::new(ErrorKind::WriteZero, "connection closed")),
            Ok(n) => data = &data[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::thread::yield_now()
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PendingSends;

    #[test]
    fn a_stamp_covers_the_sends_up_to_its_key_across_the_32_bit_wrap() {
        let mut p = PendingSends::default();
        for (i, key) in [u32::MAX - 299, u32::MAX - 99, 99, 500].into_iter().enumerate() {
            p.add(key, i);
        }
        let mut got = Vec::new();
        p.stamped(u32::MAX - 300, |i| got.push(i));
        assert!(got.is_empty());
        p.stamped(u32::MAX - 99, |i| got.push(i));
        assert_eq!(got, [0, 1]);
        p.stamped(99, |i| got.push(i));
        assert_eq!((got.len(), p.len()), (3, 1));
        p.stamped(499, |i| got.push(i));
        p.stamped(500, |i| got.push(i));
        assert_eq!(got, [0, 1, 2, 3]);
        assert!(p.is_empty());
    }
}
