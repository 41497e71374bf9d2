//! The trader: start-up (market-data socket, FIX connection, Logon, probe rings), the busy-poll
//! loop over both sockets, and the end of the session (answers awaited, Logout, last stats).
//!
//! Per market-data message (one trace, keyed by its MoldUDP64 sequence number), one tick record:
//! md.rx (kernel receive stamp, REALTIME), md.read (wire_to_read), md.decoded (feed),
//! book.updated (book), signal (strategy), risk.checked (risk), order.encoded (encode); then
//! point records order.tx (kernel transmit stamp from the error queue: send) and ack.rx
//! (order_rtt) of the same trace in the `trader-orders` ring, which declares order.encoded first
//! (never stamped there) to link its points to the tick ring's.

use crate::args::Args;
use crate::book::{BookSet, IntMap};
use crate::error::Error;
use crate::fix::{self, FixMessage, FixStream, Item, OrderTemplate};
use crate::in_flight::InFlight;
use crate::itch::MoldReceiver;
use crate::log;
use crate::oms::{self, OrderManager};
use crate::risk::{Reject, RiskChecker, RiskLimits};
use crate::session::FixSession;
use crate::stats::{self, OrderCounts, Stats};
use crate::strategy::ImbalanceStrategy;
use crate::sys;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tickscope_probe::{ClockDomain, Point, PointWriter, TickWriter};

const MD_RX: u32 = 0;
const MD_READ: u32 = 1;
const MD_DECODED: u32 = 2;
const BOOK_UPDATED: u32 = 3;
const SIGNAL: u32 = 4;
const RISK_CHECKED: u32 = 5;
const ORDER_ENCODED: u32 = 6;
// The orders ring declares order.encoded first and never stamps it: that places its points after
// the tick ring's, whichever ring the collector finds first (README "Declaring points").
const ORDER_TX: u32 = 1;
const ACK_RX: u32 = 2;

fn monotonic_ns() -> u64 {
    sys::clock_ns(sys::CLOCK_MONOTONIC)
}

pub struct Trader {
    args: Args,
    md: UdpSocket,
    rx_enabled: bool,
    fix: TcpStream,
    tx_enabled: bool,
    kernel_tx: bool,
    sent_bytes: u64,
    buf: Vec<u8>,
    fix_buf: Vec<u8>,
    items: Vec<Item>,
    mold: MoldReceiver,
    books: BookSet,
    risk: RiskChecker,
    strategy: ImbalanceStrategy,
    oms: OrderManager,
    session: FixSession,
    template: OrderTemplate,
    stream: FixStream,
    clordid: Vec<u8>,
    ticks: TickWriter,
    orders: Option<PointWriter>,
    /// OPT_ID of an order's last byte -> its trace id, until the kernel's transmit stamp arrives.
    pending_tx: IntMap<u32, u64>,
    in_flight: InFlight,
    counts: OrderCounts,
    log_lines: u64,
    stats_path: PathBuf,
    closing: bool,
}

fn connect(args: &Args) -> Result<TcpStream, Error> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.connect_timeout);
    loop {
        let err = match (args.fix_host.as_str(), args.fix_port).to_socket_addrs() {
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
            return Err(Error::Connect { host: args.fix_host.clone(), port: args.fix_port, source: err });
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

impl Trader {
    pub fn new(args: Args) -> Result<Trader, Error> {
        let md = UdpSocket::bind((args.md_host.as_str(), args.md_port))
            .map_err(|source| Error::Bind { port: args.md_port, source })?;
        let _ = sys::set_int_option(md.as_raw_fd(), sys::SO_RCVBUF, 8 << 20);
        md.set_nonblocking(true).map_err(|source| Error::Socket { what: "market data", source })?;
        let rx_flags = sys::RX_SOFTWARE | sys::SOFTWARE | sys::RX_HARDWARE | sys::RAW_HARDWARE;
        let rx_enabled = sys::set_int_option(md.as_raw_fd(), sys::SO_TIMESTAMPING, rx_flags).is_ok();
        let fix = connect(&args)?;
        let tx_flags = sys::TX_SOFTWARE | sys::SOFTWARE | sys::OPT_ID | sys::OPT_TSONLY;
        let tx_enabled = sys::set_int_option(fix.as_raw_fd(), sys::SO_TIMESTAMPING, tx_flags).is_ok();
        // The tick ring exists before Logon: the venue starts publishing once we are logged on.
        let tick_points = [
            Point::new("md.rx").clock(ClockDomain::Realtime),
            Point::new("md.read").stage("wire_to_read"),
            Point::new("md.decoded").stage("feed"),
            Point::new("book.updated").stage("book"),
            Point::new("signal").stage("strategy"),
            Point::new("risk.checked").stage("risk"),
            Point::new("order.encoded").stage("encode").leg(),
        ];
        let ticks = TickWriter::open("trader", &tick_points, 1 << 15)?;
        let risk = RiskChecker::new(RiskLimits::default());
        let soft = risk.limits.max_position * 4 / 5;
        let pid = std::process::id();
        let mut t = Trader {
            session: FixSession::new(&args.sender, &args.target, args.heartbeat),
            template: OrderTemplate::new(&args.sender, &args.target),
            strategy: ImbalanceStrategy::new(args.threshold, args.qty, soft),
            args,
            md,
            rx_enabled,
            fix,
            tx_enabled,
            kernel_tx: false,
            sent_bytes: 0,
            buf: vec![0u8; 1 << 16],
            fix_buf: vec![0u8; 1 << 16],
            items: Vec::with_capacity(64),
            mold: MoldReceiver::default(),
            books: BookSet::default(),
            risk,
            oms: OrderManager::default(),
            stream: FixStream::default(),
            clordid: Vec::with_capacity(24),
            ticks,
            orders: None,
            pending_tx: IntMap::default(),
            in_flight: InFlight::default(),
            counts: OrderCounts::default(),
            log_lines: 0,
            stats_path: tickscope_probe::ring_dir().join(format!("trader.{}.stats.json", pid)),
            closing: false,
        };
        let mut after_logon = t.logon()?;
        let clock = if t.kernel_tx { ClockDomain::Realtime } else { tickscope_probe::native_clock() };
        let points = [
            Point::new("order.encoded").clock(clock),
            Point::new("order.tx").stage("send").clock(clock).trade(),
            Point::new("ack.rx").stage("order_rtt"),
        ];
        t.orders = Some(PointWriter::open("trader-orders", &points, 1 << 14)?);
        if !after_logon.is_empty() {
            let now = t.orders.as_ref().map(|o| o.now()).unwrap_or(0);
            t.on_fix_items(after_logon.drain(..), now);
        }
        Ok(t)
    }

    /// Logon; returns what the venue sent right after its Logon (handled once set up).
    fn logon(&mut self) -> Result<Vec<Item>, Error> {
        let raw = self.session.logon();
        self.send_raw(&raw).map_err(Error::LogonSend)?;
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.logon_timeout);
        let _ = self.fix.set_read_timeout(Some(Duration::from_millis(100)));
        let mut items = vec![];
        while !self.session.logged_on {
            if Instant::now() > deadline {
                let (host, port, secs) =
                    (self.args.fix_host.clone(), self.args.fix_port, self.args.logon_timeout);
                return Err(Error::LogonTimeout { host, port, secs });
            }
            let n = match self.fix.read(&mut self.fix_buf) {
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
            self.stream.feed(&self.fix_buf[..n], &mut got);
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
        // Did the kernel stamp our Logon? Then order.tx uses kernel transmit stamps.
        let end = Instant::now() + Duration::from_millis(20);
        while self.tx_enabled && !self.kernel_tx && Instant::now() < end {
            self.kernel_tx = sys::drain_tx_stamps(self.fix.as_raw_fd(), |_, _| {}) > 0;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(items)
    }

    fn send_raw(&mut self, raw: &[u8]) -> std::io::Result<u32> {
        write_all(&mut self.fix, raw)?;
        self.sent_bytes += raw.len() as u64;
        Ok((self.sent_bytes - 1) as u32) // the OPT_ID the kernel reports for the last byte
    }

    fn log_limited(&mut self, line: &str) {
        self.log_lines += 1;
        if self.log_lines <= 20 || self.log_lines % 1000 == 0 {
            let more = if self.log_lines == 20 { " (further lines rate-limited)" } else { "" };
            log(&format!("{}{}", line, more));
        }
    }

    /// The line that says the trader is up, with the stamping it got.
    pub fn started(&self) -> String {
        format!(
            "logged on; kernel rx stamps {}, kernel tx stamps {}, loop busy (rust)",
            self.rx_enabled, self.kernel_tx
        )
    }

    // -- hot path --------------------------------------------------------------------------------
    fn on_market_data(&mut self) -> usize {
        let mut buf = std::mem::take(&mut self.buf);
        let fd = self.md.as_raw_fd();
        let mut packets = 0;
        loop {
            let (n, kernel_rx) = match sys::recv_stamped(fd, &mut buf) {
                sys::Recv::Data(n, ts) => (n, ts),
                sys::Recv::WouldBlock => break,
                sys::Recv::Error(e) => {
                    self.log_limited(&format!("market data receive failed: {}", e));
                    break;
                }
            };
            packets += 1;
            self.mold.packet(&buf[..n]);
            for i in 0..self.mold.ready.len() {
                let (seq, off, len) = self.mold.ready[i];
                // md.read: this message's turn; later messages of a packet wait for earlier ones,
                // and that wait belongs to wire_to_read (queueing), not to decoding.
                self.ticks.stamp_ts(MD_RX, kernel_rx);
                self.ticks.stamp(MD_READ);
                let msg = self.mold.decode(&buf[off as usize..(off + len) as usize], seq);
                self.ticks.stamp(MD_DECODED);
                if let Some(m) = msg {
                    let changed = self.books.apply(&m);
                    self.ticks.stamp(BOOK_UPDATED);
                    if let Some(locate) = changed {
                        let now = monotonic_ns();
                        let book = self.books.get(locate).expect("changed book exists");
                        let intent = self.strategy.on_book(book, &self.risk.positions, now);
                        self.ticks.stamp(SIGNAL);
                        if let Some(intent) = intent {
                            self.order(seq, locate, intent, now);
                        }
                    }
                }
                self.ticks.commit(seq, 0, 0);
            }
        }
        self.buf = buf;
        if packets > 0 && !self.mold.last_error.is_empty() {
            let e = std::mem::take(&mut self.mold.last_error);
            self.log_limited(&e);
        }
        packets
    }

    fn order(&mut self, seq: u64, locate: u16, (side, qty, price): (u8, i64, i64), now: u64) {
        let book = self.books.get(locate).expect("changed book exists");
        let mid = book.mid();
        let mut sym = [0u8; 16];
        let sl = book.symbol.len().min(16);
        sym[..sl].copy_from_slice(&book.symbol.as_bytes()[..sl]);
        let symbol = std::str::from_utf8(&sym[..sl]).unwrap_or("");
        let verdict = self.risk.check(locate, symbol, side, qty, price, mid, now);
        self.ticks.stamp(RISK_CHECKED);
        if verdict != Reject::Ok {
            if verdict != Reject::KillSwitch {
                let px = price as f64 / 10_000.0;
                let line =
                    format!("risk reject {} {} {} {}@{}", verdict.name(), symbol, side as char, qty, px);
                self.log_limited(&line);
            }
            return;
        }
        let id = self.oms.new_order(locate, symbol, side, qty, price, seq);
        let msg_seq = self.session.next_seq();
        self.clordid.clear();
        self.clordid.extend_from_slice(b"TS");
        fix::push_u64(&mut self.clordid, seq); // the trace id first, as the Python trader does: the wire joins on it
        self.clordid.push(b'-');
        fix::push_u64(&mut self.clordid, id);
        let wall = sys::clock_ns(sys::CLOCK_REALTIME);
        let fix_side = if side == b'B' { b'1' } else { b'2' };
        let clock = &mut self.session.clock;
        self.template.encode(clock, wall, msg_seq, &self.clordid, &sym[..sl], fix_side, qty, price);
        self.ticks.stamp(ORDER_ENCODED);
        let out = std::mem::take(&mut self.template.out);
        let sent = self.send_raw(&out);
        self.template.out = out;
        let key = match sent {
            Ok(k) => k,
            Err(e) => {
                self.kill(Error::OrderSend(e));
                return;
            }
        };
        // Counted the moment it is on the wire: a stop is a flag tested by the loop, never
        // between the send and this line, so the count matches what the acceptor received.
        self.counts.sent += 1;
        self.in_flight.sent(id, msg_seq, now);
        self.session.sent();
        if self.kernel_tx {
            self.pending_tx.insert(key, seq);
        } else if let Some(o) = self.orders.as_mut() {
            o.record(ORDER_TX, seq, 0, 0);
        }
    }

    /// Reads the order-entry socket; false when the session is over.
    fn on_fix(&mut self) -> bool {
        let n = match self.fix.read(&mut self.fix_buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return true,
            Err(e) => {
                self.kill(Error::Read(e));
                return false;
            }
        };
        let arrived = self.orders.as_ref().map(|o| o.now()).unwrap_or(0);
        if n == 0 {
            if !self.closing {
                self.kill(Error::PeerClosed);
            }
            return false;
        }
        // The item buffer is kept across reads: no allocation per read on the hot path.
        let mut items = std::mem::take(&mut self.items);
        self.stream.feed(&self.fix_buf[..n], &mut items);
        let alive = self.on_fix_items(items.drain(..), arrived);
        self.items = items;
        alive
    }

    fn on_fix_items(&mut self, items: impl Iterator<Item = Item>, arrived: u64) -> bool {
        let mut replies: Vec<Vec<u8>> = vec![];
        let mut alive = true;
        for item in items {
            let msg = match item {
                Err(e) => {
                    self.log_limited(&format!("FIX from venue: {}", e));
                    replies.extend(self.session.on_error(&e).replies);
                    continue;
                }
                Ok(m) => m,
            };
            let invalid = self.session.stats.invalid_fields;
            let got = self.session.on_message(msg);
            replies.extend(got.replies);
            if self.session.stats.invalid_fields != invalid {
                let line = format!("FIX from venue: rejected: {}", self.session.stats.last_error);
                self.log_limited(&line);
            }
            if !got.gap_filled.is_empty() {
                self.gap_filled(&got.gap_filled);
            }
            for app in got.apps {
                let handled = match app.msg_type.as_slice() {
                    b"8" => self.execution(&app, arrived),
                    b"3" => self.session_reject(&app),
                    _ => Ok(()),
                };
                if let Err(e) = handled {
                    let kind = String::from_utf8_lossy(&app.msg_type);
                    let line = format!("FIX from venue: {} rejected: {}", kind, e.text);
                    self.log_limited(&line);
                    replies.extend(self.session.on_field_error(&app, &e).replies);
                }
            }
            if got.close {
                // Our own Logout answered while closing is the end we asked for, not a failure.
                let asked_for = self.closing && !self.session.logged_on;
                if !asked_for {
                    self.kill(Error::SessionEnded(got.reason));
                }
                alive = false;
            }
        }
        if !replies.is_empty() {
            self.send(&replies.concat());
        }
        alive
    }

    fn execution(&mut self, msg: &FixMessage, arrived: u64) -> Result<(), fix::FieldError> {
        // Every field checked before anything changes.
        let last_px = fix::parse_price(msg.get(fix::LAST_PX).unwrap_or(b"0"), fix::LAST_PX)?;
        let last_qty = msg.int(fix::LAST_QTY, 0)?;
        if last_qty < 0 {
            return Err(fix::FieldError {
                text: format!("LastQty(32) is negative: {}", last_qty),
                tag: fix::LAST_QTY,
                reason: fix::VALUE_INCORRECT,
            });
        }
        let clordid = msg.get(fix::CL_ORD_ID).unwrap_or(b"");
        let exec_type = msg.get(fix::EXEC_TYPE).unwrap_or(b"");
        let id = oms::clordid_number(clordid);
        let first = id
            .and_then(|n| self.oms.orders.get(&n))
            .filter(|o| o.state == oms::State::PendingNew)
            .map(|o| o.trace_id);
        self.oms.on_execution(&mut self.risk, clordid, exec_type, last_qty, last_px);
        if let (Some(trace), Some(o)) = (first, self.orders.as_mut()) {
            o.record_ts(ACK_RX, trace, arrived, 0, 0);
        }
        if let Some(msg_seq) = id.and_then(|n| self.in_flight.answered(n)) {
            self.session.peer_processed(msg_seq);
            if exec_type == b"8" {
                self.counts.rejected += 1;
            } else {
                self.counts.acked += 1;
            }
        }
        Ok(())
    }

    /// A session-level Reject of an order: answered (rejected), no longer in flight.
    fn session_reject(&mut self, msg: &FixMessage) -> Result<(), fix::FieldError> {
        let ref_seq = msg.int(fix::REF_SEQ_NUM, -1)?;
        if ref_seq < 0 {
            return Ok(());
        }
        if let Some(id) = self.in_flight.rejected(ref_seq as u64) {
            self.session.peer_processed(ref_seq as u64);
            self.counts.rejected += 1;
            let cl = format!("TS{}", id);
            self.oms.on_execution(&mut self.risk, cl.as_bytes(), b"8", 0, 0);
            let text = String::from_utf8_lossy(msg.get(fix::TEXT).unwrap_or(b"")).into_owned();
            self.log_limited(&format!("order {} rejected by the session: {}", cl, text));
        }
        Ok(())
    }

    /// Orders under numbers we gap-filled at the venue's ResendRequest never reach it (IOC orders
    /// are not resent, see session.rs): answered, by us, as not delivered.
    fn gap_filled(&mut self, ranges: &[(u64, u64)]) {
        let lost = self.in_flight.lost_in(ranges);
        for &(_, id) in &lost {
            if let Some(o) = self.oms.orders.get(&id) {
                let cl = format!("TS{}-{}", o.trace_id, id);
                self.oms.on_execution(&mut self.risk, cl.as_bytes(), b"8", 0, 0);
                // terminal: risk released
            }
        }
        self.counts.gap_filled += lost.len() as u64;
        if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
            log(&format!(
                "{} orders (MsgSeqNum {}..{}) gap-filled at the venue's ResendRequest: never delivered, not resent (stale IOC orders)",
                lost.len(),
                first.0,
                last.0
            ));
        }
    }

    /// One warning when the oldest unanswered order has waited more than --ack-wait while the
    /// venue kept sending (heartbeats, rejects, other answers): the session is alive, the orders are not.
    fn check_stall(&mut self) {
        let now_s = monotonic_ns() as f64 / 1e9;
        if self.in_flight.newly_stalled(now_s, self.args.ack_wait, self.session.last_rx) {
            self.counts.stalls += 1;
            log(&format!(
                "warning: order session stalled: {} orders unanswered for over {} s while the venue is still sending; {}",
                self.in_flight.len(),
                self.args.ack_wait,
                self.seq_facts()
            ));
        }
    }

    fn seq_facts(&self) -> String {
        let expects = self.session.stats.peer_expects;
        let processed = if expects > 0 { (expects - 1).to_string() } else { "unknown".into() };
        format!("last MsgSeqNum sent {}, last the venue processed {}", self.session.out_seq - 1, processed)
    }

    fn housekeeping(&mut self) {
        self.record_tx_stamps();
        let got = self.session.timer();
        if !got.replies.is_empty() {
            self.send(&got.replies.concat());
        }
        if got.close {
            self.kill(Error::Session(got.reason));
        }
    }

    fn send(&mut self, raw: &[u8]) {
        if let Err(e) = self.send_raw(raw) {
            self.kill(Error::Send(e));
        }
    }

    /// Kill switch: no more orders; cancel what is open; the market-data side keeps measuring.
    fn kill(&mut self, why: Error) {
        if self.risk.killed {
            return;
        }
        let reason = why.to_string();
        self.risk.kill(&reason);
        log(&format!("kill switch: {}", reason));
        for o in self.oms.cancel_all() {
            if self.session.logged_on {
                let cl = format!("TS{}-{}", o.trace_id, o.id);
                let cancel = format!("{}C", cl);
                let now = self.session.clock.now();
                let raw = self.session.build(
                    b"F",
                    &[
                        (fix::ORIG_CL_ORD_ID, cl.as_bytes()),
                        (fix::CL_ORD_ID, cancel.as_bytes()),
                        (fix::SYMBOL, o.symbol()),
                        (fix::SIDE, if o.side == b'B' { b"1" } else { b"2" }),
                        (fix::TRANSACT_TIME, &now),
                    ],
                );
                if self.send_raw(&raw).is_err() {
                    break;
                }
            }
        }
    }

    fn record_tx_stamps(&mut self) {
        if self.pending_tx.is_empty() {
            return;
        }
        let (pending, orders) = (&mut self.pending_tx, &mut self.orders);
        sys::drain_tx_stamps(self.fix.as_raw_fd(), |key, ts| {
            if let (Some(seq), Some(o)) = (pending.remove(&key), orders.as_mut()) {
                o.record_ts(ORDER_TX, seq, ts, 0, 0);
            }
        });
    }

    // -- loop and end ----------------------------------------------------------------------------
    /// Busy-poll both non-blocking sockets until `stop` or the feed's end of session: the lowest
    /// latency, one core at 100 %.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut next_house = monotonic_ns() + 1_000_000;
        let mut next_stats = monotonic_ns() + 1_000_000_000;
        // Calibration pairs every 100 ms, not with the stats each second: a run that ends within
        // its first second (a short replay, an early Ctrl-C) still gets its TSC fitted over heartbeats.
        let mut next_beat = monotonic_ns() + 100_000_000;
        let mut fix_alive = true;
        while !stop.load(Ordering::Relaxed) {
            self.on_market_data();
            if fix_alive {
                fix_alive = self.on_fix();
            }
            let now = monotonic_ns();
            if now >= next_house {
                if fix_alive {
                    self.housekeeping();
                }
                next_house = now + 1_000_000;
                if now >= next_beat {
                    self.check_stall();
                    self.ticks.heartbeat();
                    if let Some(o) = self.orders.as_mut() {
                        o.heartbeat();
                    }
                    next_beat = now + 100_000_000;
                }
                if now >= next_stats {
                    self.write_stats();
                    next_stats = now + 1_000_000_000;
                }
                if self.mold.stats.end_of_session {
                    break;
                }
            }
        }
    }

    /// End of session: wait (bounded) for answers to orders on the wire, log out, and read until
    /// the peer's Logout, so the last acks are counted; what is still unanswered is reported as
    /// in flight at end, never dropped.
    pub fn close(&mut self) {
        self.closing = true;
        if self.session.logged_on && !self.risk.killed {
            let wait = self.args.ack_wait;
            self.read_fix_while(|t| !t.in_flight.is_empty(), wait);
        }
        if self.session.logged_on {
            let raw = self.session.logout("trader stopping");
            self.send(&raw);
            let wait = self.args.logout_wait;
            self.read_fix_while(|t| t.session.logged_on, wait);
        }
        self.record_tx_stamps();
        let end = Instant::now() + Duration::from_millis(50);
        while !self.pending_tx.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
            self.record_tx_stamps();
        }
        self.write_stats();
    }

    fn read_fix_while(&mut self, pending: impl Fn(&Trader) -> bool, timeout_s: f64) {
        let end = Instant::now() + Duration::from_secs_f64(timeout_s);
        while pending(self) && Instant::now() < end {
            if !self.on_fix() {
                return;
            }
            self.record_tx_stamps();
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The closing summary line; an error naming the orders never answered, if any.
    pub fn finish(&self) -> (String, Result<(), Error>) {
        let f = &self.mold.stats;
        let c = &self.counts;
        let summary = format!(
            "messages {}, gaps {}, orders {}, acks {}, rejected {}, gap-filled {}, in flight at end {}, risk rejects {}",
            f.messages,
            f.gaps,
            c.sent,
            c.acked,
            c.rejected,
            c.gap_filled,
            self.in_flight.len(),
            self.risk.counts.iter().sum::<u64>()
        );
        let outcome = if self.in_flight.is_empty() {
            Ok(())
        } else {
            Err(Error::Unanswered { unanswered: self.in_flight.len(), sent: c.sent, facts: self.seq_facts() })
        };
        (summary, outcome)
    }

    fn write_stats(&self) {
        let stats = Stats {
            feed: &self.mold.stats,
            unknown_order_refs: self.books.unknown_refs,
            orders: &self.counts,
            in_flight: self.in_flight.len(),
            oms: &self.oms,
            risk: &self.risk,
            signals_held_back: self.strategy.held_back,
            fix: &self.session.stats,
            kernel_rx_stamps: self.rx_enabled,
            kernel_tx_stamps: self.kernel_tx,
            tx_stamps_unmatched: self.pending_tx.len(),
        };
        stats::write_atomically(&self.stats_path, &stats.to_json());
    }
}
