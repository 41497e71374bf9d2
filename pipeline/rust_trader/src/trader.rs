//! The trader: start-up (market-data socket, FIX sessions, Logon, probe rings), the busy-poll
//! loop over the sockets, and the end of the session (answers awaited, Logout, last stats).
//!
//! Per market-data message (one trace, keyed by its MoldUDP64 sequence number), one tick record:
//! md.rx (kernel receive stamp, REALTIME), md.read (wire_to_read), md.decoded (feed),
//! book.updated (book), signal (strategy), risk.checked (risk); then the fan-out, one record per
//! leg sent: order.start (leg_wait, its wait for the tick's earlier legs) and order.encoded
//! (encode); then point records
//! order.tx (kernel transmit stamp from the error queue: send) and ack.rx (order_rtt) of the same
//! trace and leg in the `trader-orders` ring, which declares order.encoded first (never stamped
//! there) to link its points to the tick ring's.
//!
//! Market making (`--quotes both`, the default, as `profile` runs it; docs/pipeline.md "A two-venue market
//! maker"): a signal quotes both sides, leg 0 the bid and leg 1 the ask on the primary venue;
//! every `--hedge-every`-th signal that quoted also sends leg 2 on the signal's side to the hedge
//! venue (`--hedge-fix-port`, its own FIX session). Dimensions venue, symbol, msg_type and side
//! are interned once: the hot path ORs small ids into the dims word.

use crate::args::Args;
use crate::book::{BookSet, IntMap};
use crate::error::Error;
use crate::fix::{self, FixMessage, Item};
use crate::gateway::{Gateway, Venue};
use crate::itch::MoldReceiver;
use crate::log;
use crate::oms::{self, LegOf, OrderManager};
use crate::probes::{Orders, Ticks};
use crate::risk::{Reject, RiskChecker, RiskLimits};
use crate::stats::{self, OrderCounts, Stats};
use crate::strategy::ImbalanceStrategy;
use crate::sys;
use std::io::{ErrorKind, Read};
use std::net::UdpSocket;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tickscope_probe::{ClockDomain, Point};

const MD_RX: u32 = 0;
const MD_READ: u32 = 1;
const MD_DECODED: u32 = 2;
const BOOK_UPDATED: u32 = 3;
const SIGNAL: u32 = 4;
const RISK_CHECKED: u32 = 5;
const ORDER_START: u32 = 6;
const ORDER_ENCODED: u32 = 7;
// The orders ring declares order.encoded first and never stamps it: that places its points after
// the tick ring's, whichever ring the collector finds first (README "Declaring points").
const ORDER_TX: u32 = 1;
const ACK_RX: u32 = 2;

/// Leg numbers, as the Python trader's: a leg risk holds is not sent and its number stays unused.
const LEG_BID: u16 = 0;
const LEG_ASK: u16 = 1;
const LEG_HEDGE: u16 = 2;
const LEG_TAKER: u16 = 0; // --quotes one: the signal's one marketable order
/// Slot k of the dims word is DIMENSIONS[k] (probe/layout.py DIM_SLOT_BITS: 16 bits a slot).
const DIMENSIONS: [&str; 4] = ["venue", "symbol", "msg_type", "side"];
const VENUE_SLOT: u32 = 0;
const SYMBOL_SLOT: u32 = 16;
const MSG_TYPE_SLOT: u32 = 32;
const SIDE_SLOT: u32 = 48;
/// The ITCH 5.0 messages the feed handler decodes (itch.rs), each a `msg_type` value.
const ITCH_TYPES: &[u8] = b"SRAFECXDUP";
const PRIMARY: usize = 0;

/// What one read of an order-entry socket brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixRead {
    /// Nothing waiting: the socket would block.
    Drained,
    /// Read and handled; there may be more.
    More,
    /// The session is over (peer closed, Logout, a read error): stop reading it.
    Over,
}

/// When `Trader::periodic` next has work (monotonic ns).
pub struct Timers {
    next_house: u64,
    next_stats: u64,
    next_beat: u64,
}

impl Default for Timers {
    fn default() -> Timers {
        let now = monotonic_ns();
        // Calibration pairs every 100 ms, not with the stats each second: a run that ends within
        // its first second (a short replay, an early Ctrl-C) still gets its TSC fitted over heartbeats.
        Timers { next_house: now + 1_000_000, next_stats: now + 1_000_000_000, next_beat: now + 100_000_000 }
    }
}

fn monotonic_ns() -> u64 {
    sys::clock_ns(sys::CLOCK_MONOTONIC)
}

/// Orders sent per leg kind, in the stats file's order (`orders_by_leg`).
#[derive(Debug, Default, Clone)]
pub struct LegCounts {
    pub kinds: Vec<(&'static str, u64)>,
}

/// Every dimension value known at start, interned once, as slot bits ready to OR.
struct DimBits {
    /// Per venue (gateway index).
    venue: Vec<u64>,
    buy: u64,
    sell: u64,
    /// Per ITCH message type byte: the feed's venue | the type; 0 for a type never declared.
    msg: [u64; 256],
    /// Per stock locate; interned on first sight (the feed names its instruments as it goes).
    symbol: IntMap<u16, u64>,
}

pub struct Trader {
    args: Args,
    md: UdpSocket,
    rx_enabled: bool,
    /// The primary venue first, then the hedge venue if any.
    venues: Vec<Gateway>,
    hedge: Option<usize>,
    kernel_tx: bool,
    buf: Vec<u8>,
    fix_buf: Vec<u8>,
    items: Vec<Item>,
    mold: MoldReceiver,
    books: BookSet,
    risk: RiskChecker,
    strategy: ImbalanceStrategy,
    oms: OrderManager,
    clordid: Vec<u8>,
    ticks: Ticks,
    orders: Option<Orders>,
    dims: DimBits,
    counts: OrderCounts,
    by_leg: LegCounts,
    quoted: u64,
    hedges_due: u64,
    hedges_held_by_risk: u64,
    log_lines: u64,
    stats_path: PathBuf,
    closing: bool,
}

impl Trader {
    pub fn new(args: Args) -> Result<Trader, Error> {
        let md = UdpSocket::bind((args.md_host.as_str(), args.md_port))
            .map_err(|source| Error::Bind { port: args.md_port, source })?;
        let _ = sys::set_int_option(md.as_raw_fd(), sys::SO_RCVBUF, 8 << 20);
        md.set_nonblocking(true).map_err(|source| Error::Socket { what: "market data", source })?;
        let rx_flags = sys::RX_SOFTWARE | sys::SOFTWARE | sys::RX_HARDWARE | sys::RAW_HARDWARE;
        let rx_enabled = sys::set_int_option(md.as_raw_fd(), sys::SO_TIMESTAMPING, rx_flags).is_ok();
        let venue = |name, host, port, hedge| Venue {
            name,
            host,
            port,
            sender: &args.sender,
            heartbeat: args.heartbeat,
            hedge,
        };
        let mut venues = vec![Gateway::connect(
            venue(&args.target, &args.fix_host, args.fix_port, false),
            args.connect_timeout,
        )?];
        if args.hedge_fix_port != 0 {
            let v = venue(&args.hedge_target, &args.hedge_fix_host, args.hedge_fix_port, true);
            venues.push(Gateway::connect(v, args.connect_timeout)?);
        }
        let hedge = if venues.len() > 1 { Some(1) } else { None };
        // The tick ring exists before Logon: the venue starts publishing once we are logged on.
        let tick_points = [
            Point::new("md.rx").clock(ClockDomain::Realtime),
            Point::new("md.read").stage("wire_to_read"),
            Point::new("md.decoded").stage("feed"),
            Point::new("book.updated").stage("book"),
            Point::new("signal").stage("strategy"),
            Point::new("risk.checked").stage("risk"),
            // The fan-out: each order is a leg. A leg's own work starts at order.start: leg_wait
            // is its wait for the legs of its tick sent before it (their encode and send).
            Point::new("order.start").stage("leg_wait").leg(),
            Point::new("order.encoded").stage("encode"),
        ];
        let mut ticks = Ticks::open_dims("trader", &tick_points, &DIMENSIONS, 1 << 15)?;
        let dims = intern_dimensions(&mut ticks, &venues);
        let risk = RiskChecker::new(RiskLimits::default());
        let soft = risk.limits.max_position * 4 / 5;
        let pid = std::process::id();
        let mut kinds: Vec<(&'static str, u64)> =
            if args.quotes_both { vec![("bid", 0), ("ask", 0)] } else { vec![("taker", 0)] };
        if hedge.is_some() {
            kinds.push(("hedge", 0));
        }
        let mut t = Trader {
            strategy: ImbalanceStrategy::new(args.threshold, args.qty, soft),
            args,
            md,
            rx_enabled,
            venues,
            hedge,
            kernel_tx: false,
            buf: vec![0u8; 1 << 16],
            fix_buf: vec![0u8; 1 << 16],
            items: Vec::with_capacity(64),
            mold: MoldReceiver::default(),
            books: BookSet::default(),
            risk,
            oms: OrderManager::default(),
            clordid: Vec::with_capacity(24),
            ticks,
            orders: None,
            dims,
            counts: OrderCounts::default(),
            by_leg: LegCounts { kinds },
            quoted: 0,
            hedges_due: 0,
            hedges_held_by_risk: 0,
            log_lines: 0,
            stats_path: tickscope_probe::ring_dir().join(format!("trader.{}.stats.json", pid)),
            closing: false,
        };
        // The hedge venue first: the primary's Logon starts the feed, so both are up by then.
        let mut after_logon: Vec<(usize, Vec<Item>)> = vec![];
        for g in (0..t.venues.len()).rev() {
            let items = t.venues[g].logon(t.args.logon_timeout, &mut t.fix_buf)?;
            after_logon.push((g, items));
        }
        // One clock for order.tx of every venue: kernel stamps only where every session has them.
        t.kernel_tx = t.venues.iter().all(|g| g.kernel_tx);
        let clock = if t.kernel_tx { ClockDomain::Realtime } else { tickscope_probe::native_clock() };
        let points = [
            Point::new("order.encoded").clock(clock),
            Point::new("order.tx").stage("send").clock(clock).trade(),
            Point::new("ack.rx").stage("order_rtt"),
        ];
        t.orders = Some(Orders::open("trader-orders", &points, 1 << 14)?);
        for (g, items) in after_logon {
            if !items.is_empty() {
                let now = t.orders.as_ref().map(|o| o.now()).unwrap_or(0);
                t.on_fix_items(g, items.into_iter(), now);
            }
        }
        Ok(t)
    }

    fn log_limited(&mut self, line: &str) {
        self.log_lines += 1;
        if self.log_lines <= 20 || self.log_lines % 1000 == 0 {
            let more = if self.log_lines == 20 { " (further lines rate-limited)" } else { "" };
            log(&format!("{}{}", line, more));
        }
    }

    fn loop_kind(&self) -> &'static str {
        if self.args.tokio {
            "tokio"
        } else {
            "busy"
        }
    }

    /// The line that says the trader is up, with the stamping it got.
    pub fn started(&self) -> String {
        format!(
            "logged on; kernel rx stamps {}, kernel tx stamps {}, loop {} (rust)",
            self.rx_enabled,
            self.kernel_tx,
            self.loop_kind()
        )
    }

    // -- hot path --------------------------------------------------------------------------------
    /// Reads every datagram waiting on the market-data socket (until it would block); the count.
    pub fn on_market_data(&mut self) -> usize {
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
                let raw = &buf[off as usize..(off + len) as usize];
                let msg = self.mold.decode(raw, seq);
                self.ticks.stamp(MD_DECODED);
                let mut word = 0;
                if let Some(m) = msg {
                    let changed = self.books.apply(&m);
                    self.ticks.stamp(BOOK_UPDATED);
                    word = raw.first().map(|&k| self.dims.msg[k as usize]).unwrap_or(0);
                    if word == 0 {
                        word = self.dims.venue[PRIMARY];
                    }
                    if let Some(locate) = changed {
                        word |= self.symbol_bits(locate);
                        let now = monotonic_ns();
                        let book = self.books.get(locate).expect("changed book exists");
                        let intent = self.strategy.on_book(book, &self.risk.positions, now);
                        self.ticks.stamp(SIGNAL);
                        if let Some(intent) = intent {
                            if self.order(seq, locate, intent, now, word) {
                                continue; // committed once per leg
                            }
                        }
                    }
                }
                self.ticks.commit(seq, 0, word);
            }
        }
        self.buf = buf;
        if packets > 0 && !self.mold.last_error.is_empty() {
            let e = std::mem::take(&mut self.mold.last_error);
            self.log_limited(&e);
        }
        packets
    }

    /// The symbol's slot bits, interned on first sight of its book.
    fn symbol_bits(&mut self, locate: u16) -> u64 {
        if let Some(&bits) = self.dims.symbol.get(&locate) {
            return bits;
        }
        let symbol = self.books.get(locate).map(|b| b.symbol.clone()).unwrap_or_default();
        // 0 (no symbol) when too long or the ring's value table is full: the intern says so.
        let bits = (self.ticks.intern("symbol", &symbol) as u64) << SYMBOL_SLOT;
        self.dims.symbol.insert(locate, bits);
        bits
    }

    fn risk_ok(&mut self, verdict: Reject, symbol: &str, side: u8, qty: i64, price: i64) -> bool {
        if verdict == Reject::Ok {
            return true;
        }
        if verdict != Reject::KillSwitch {
            let px = price as f64 / 10_000.0;
            let line = format!("risk reject {} {} {} {}@{}", verdict.name(), symbol, side as char, qty, px);
            self.log_limited(&line);
        }
        false
    }

    /// Quotes both sides of the book (legs bid and ask, primary venue; `--quotes one`: one
    /// marketable order on the signal's side, leg taker) and, every `--hedge-every`-th signal that
    /// quoted, hedges on the signal's side (leg hedge, hedge venue). Commits the tick once per leg
    /// sent and returns true; false when risk let no leg through (the caller commits the tick,
    /// which then ends at risk.checked).
    fn order(
        &mut self,
        seq: u64,
        locate: u16,
        (side, qty, price): (u8, i64, i64),
        now: u64,
        word: u64,
    ) -> bool {
        let book = self.books.get(locate).expect("changed book exists");
        let mid = book.mid();
        let (best_bid, best_ask) = (book.bids.best().map(|l| l.price), book.asks.best().map(|l| l.price));
        let mut sym = [0u8; 16];
        let sl = book.symbol.len().min(16);
        sym[..sl].copy_from_slice(&book.symbol.as_bytes()[..sl]);
        let symbol = std::str::from_utf8(&sym[..sl]).unwrap_or("");
        // (leg, kind index in by_leg, venue, side, price): at most three, no allocation.
        let mut legs = [(0u16, 0usize, 0usize, 0u8, 0i64); 3];
        let mut n = 0;
        let quotes = if self.args.quotes_both {
            [(LEG_BID, b'B', best_bid), (LEG_ASK, b'S', best_ask)]
        } else {
            [(LEG_TAKER, side, Some(price as u32)), (0, 0, None)]
        };
        for (kind, &(leg, leg_side, leg_price)) in quotes.iter().enumerate() {
            let leg_price = match leg_price {
                Some(p) => p as i64,
                None => continue,
            };
            let verdict = self.risk.check(locate, symbol, leg_side, qty, leg_price, mid, now);
            if self.risk_ok(verdict, symbol, leg_side, qty, leg_price) {
                legs[n] = (leg, kind, PRIMARY, leg_side, leg_price);
                n += 1;
            }
        }
        if n > 0 {
            self.quoted += 1;
            if let Some(h) = self.hedge {
                if self.quoted % self.args.hedge_every as u64 == 0 {
                    self.hedges_due += 1;
                    let verdict = self.risk.check(locate, symbol, side, qty, price, mid, now);
                    if self.risk_ok(verdict, symbol, side, qty, price) {
                        legs[n] = (LEG_HEDGE, self.by_leg.kinds.len() - 1, h, side, price);
                        n += 1;
                    } else {
                        self.hedges_held_by_risk += 1;
                    }
                }
            }
        }
        self.ticks.stamp(RISK_CHECKED);
        if n == 0 {
            return false;
        }
        // The tick's stamps and its own values (feed venue, symbol, msg_type) as a record of their
        // own: a record that also stamps a leg's point gives its values to that leg, and the
        // stages before the fan-out are sliced by the tick's values only (docs/concepts.md).
        self.ticks.commit(seq, 0, word);
        for &(leg, kind, g, leg_side, leg_price) in &legs[..n] {
            self.ticks.stamp(ORDER_START);
            let id = self.oms.new_order(
                locate,
                symbol,
                leg_side,
                qty,
                leg_price,
                LegOf { trace_id: seq, leg, venue: g as u8 },
            );
            let gw = &mut self.venues[g];
            let msg_seq = gw.session.next_seq();
            self.clordid.clear();
            self.clordid.extend_from_slice(b"TS");
            fix::push_u64(&mut self.clordid, seq); // TS<trace>.<leg>-<n> as the Python trader's: the wire joins on them
            self.clordid.push(b'.');
            fix::push_u64(&mut self.clordid, leg as u64);
            self.clordid.push(b'-');
            fix::push_u64(&mut self.clordid, id);
            let wall = sys::clock_ns(sys::CLOCK_REALTIME);
            let fix_side = if leg_side == b'B' { b'1' } else { b'2' };
            let clock = &mut gw.session.clock;
            gw.template.encode(clock, wall, msg_seq, &self.clordid, &sym[..sl], fix_side, qty, leg_price);
            self.ticks.stamp(ORDER_ENCODED);
            // Each leg is a record of its own: only its order.start and order.encoded, with the leg's values.
            let side_bits = if leg_side == b'B' { self.dims.buy } else { self.dims.sell };
            self.ticks.commit(seq, leg, (word & !0xFFFF) | self.dims.venue[g] | side_bits);
            let gw = &mut self.venues[g];
            let out = std::mem::take(&mut gw.template.out);
            let sent = gw.send_raw(&out);
            gw.template.out = out;
            let key = match sent {
                Ok(k) => k,
                Err(e) => {
                    self.kill(g, Error::OrderSend(e));
                    return true;
                }
            };
            // Counted the moment it is on the wire: a stop is a flag tested by the loop, never
            // between the send and this line, so the count matches what the acceptor received.
            self.counts.sent += 1;
            self.by_leg.kinds[kind].1 += 1;
            gw.in_flight.sent(id, msg_seq, now);
            gw.session.sent();
            if self.kernel_tx {
                gw.pending_tx.add(key, (seq, leg));
            } else if let Some(o) = self.orders.as_mut() {
                o.record(ORDER_TX, seq, leg, 0);
            }
        }
        true
    }

    /// Reads venue `g`'s order-entry socket; false when that session is over.
    fn on_fix(&mut self, g: usize) -> bool {
        self.read_fix(g) != FixRead::Over
    }

    /// One read of venue `g`'s order-entry socket and what it brought.
    pub fn read_fix(&mut self, g: usize) -> FixRead {
        let n = match self.venues[g].fix.read(&mut self.fix_buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return FixRead::Drained,
            Err(e) if e.kind() == ErrorKind::Interrupted => return FixRead::More,
            Err(e) => {
                self.kill(g, Error::Read(e));
                return FixRead::Over;
            }
        };
        let arrived = self.orders.as_ref().map(|o| o.now()).unwrap_or(0);
        if n == 0 {
            if !self.closing {
                self.kill(g, Error::PeerClosed);
            }
            return FixRead::Over;
        }
        // The item buffer is kept across reads: no allocation per read on the hot path.
        let mut items = std::mem::take(&mut self.items);
        self.venues[g].stream.feed(&self.fix_buf[..n], &mut items);
        let alive = self.on_fix_items(g, items.drain(..), arrived);
        self.items = items;
        if alive {
            FixRead::More
        } else {
            FixRead::Over
        }
    }

    /// Log lines of the hedge session say so (built only for a line, never per message).
    fn prefix(&self, g: usize) -> String {
        self.venues[g].prefix.clone()
    }

    fn on_fix_items(&mut self, g: usize, items: impl Iterator<Item = Item>, arrived: u64) -> bool {
        let mut replies: Vec<Vec<u8>> = vec![];
        let mut alive = true;
        for item in items {
            let msg = match item {
                Err(e) => {
                    self.log_limited(&format!("{}FIX from venue: {}", self.prefix(g), e));
                    replies.extend(self.venues[g].session.on_error(&e).replies);
                    continue;
                }
                Ok(m) => m,
            };
            let invalid = self.venues[g].session.stats.invalid_fields;
            let got = self.venues[g].session.on_message(msg);
            replies.extend(got.replies);
            let gw = &self.venues[g];
            if gw.session.stats.invalid_fields != invalid {
                let line = format!("{}FIX from venue: rejected: {}", gw.prefix, gw.session.stats.last_error);
                self.log_limited(&line);
            }
            if !got.gap_filled.is_empty() {
                self.gap_filled(g, &got.gap_filled);
            }
            for app in got.apps {
                let handled = match app.msg_type.as_slice() {
                    b"8" => self.execution(g, &app, arrived),
                    b"3" => self.session_reject(g, &app),
                    _ => Ok(()),
                };
                if let Err(e) = handled {
                    let kind = String::from_utf8_lossy(&app.msg_type);
                    let line = format!("{}FIX from venue: {} rejected: {}", self.prefix(g), kind, e.text);
                    self.log_limited(&line);
                    replies.extend(self.venues[g].session.on_field_error(&app, &e).replies);
                }
            }
            if got.close {
                // Our own Logout answered while closing is the end we asked for, not a failure.
                let asked_for = self.closing && !self.venues[g].session.logged_on;
                if !asked_for {
                    self.kill(g, Error::SessionEnded(got.reason));
                }
                alive = false;
            }
        }
        if !replies.is_empty() {
            self.send(g, &replies.concat());
        }
        alive
    }

    fn execution(&mut self, g: usize, msg: &FixMessage, arrived: u64) -> Result<(), fix::FieldError> {
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
            .map(|o| (o.trace_id, o.leg));
        self.oms.on_execution(&mut self.risk, clordid, exec_type, last_qty, last_px);
        if let (Some((trace, leg)), Some(o)) = (first, self.orders.as_mut()) {
            o.record_ts(ACK_RX, trace, arrived, leg, 0);
        }
        let gw = &mut self.venues[g];
        if let Some(msg_seq) = id.and_then(|n| gw.in_flight.answered(n)) {
            gw.session.peer_processed(msg_seq);
            if exec_type == b"8" {
                self.counts.rejected += 1;
            } else {
                self.counts.acked += 1;
            }
        }
        Ok(())
    }

    /// A session-level Reject of an order: answered (rejected), no longer in flight.
    fn session_reject(&mut self, g: usize, msg: &FixMessage) -> Result<(), fix::FieldError> {
        let ref_seq = msg.int(fix::REF_SEQ_NUM, -1)?;
        if ref_seq < 0 {
            return Ok(());
        }
        let gw = &mut self.venues[g];
        if let Some(id) = gw.in_flight.rejected(ref_seq as u64) {
            gw.session.peer_processed(ref_seq as u64);
            self.counts.rejected += 1;
            let cl = format!("TS{}", id);
            self.oms.on_execution(&mut self.risk, cl.as_bytes(), b"8", 0, 0);
            let text = String::from_utf8_lossy(msg.get(fix::TEXT).unwrap_or(b"")).into_owned();
            let line = format!("{}order {} rejected by the session: {}", self.prefix(g), cl, text);
            self.log_limited(&line);
        }
        Ok(())
    }

    /// Orders under numbers we gap-filled at the venue's ResendRequest never reach it (IOC orders
    /// are not resent, see session.rs): answered, by us, as not delivered.
    fn gap_filled(&mut self, g: usize, ranges: &[(u64, u64)]) {
        let lost = self.venues[g].in_flight.lost_in(ranges);
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
                "{}{} orders (MsgSeqNum {}..{}) gap-filled at the venue's ResendRequest: never delivered, not resent (stale IOC orders)",
                self.prefix(g),
                lost.len(),
                first.0,
                last.0
            ));
        }
    }

    /// One warning when the oldest unanswered order has waited more than --ack-wait while the
    /// venue kept sending (heartbeats, rejects, other answers): the session is alive, the orders are not.
    fn check_stall(&mut self, g: usize) {
        let now_s = monotonic_ns() as f64 / 1e9;
        let gw = &mut self.venues[g];
        if gw.in_flight.newly_stalled(now_s, self.args.ack_wait, gw.session.last_rx) {
            self.counts.stalls += 1;
            log(&format!(
                "{}warning: order session stalled: {} orders unanswered for over {} s while the venue is still sending; {}",
                gw.prefix,
                gw.in_flight.len(),
                self.args.ack_wait,
                gw.seq_facts()
            ));
        }
    }

    fn housekeeping(&mut self, g: usize) {
        self.record_tx_stamps();
        let got = self.venues[g].session.timer();
        if !got.replies.is_empty() {
            self.send(g, &got.replies.concat());
        }
        if got.close {
            self.kill(g, Error::Session(got.reason));
        }
    }

    fn send(&mut self, g: usize, raw: &[u8]) {
        if let Err(e) = self.venues[g].send_raw(raw) {
            self.kill(g, Error::Send(e));
        }
    }

    /// Kill switch (for what went wrong on venue `g`): no more orders; cancel what is open, each
    /// on its own venue; the market-data side keeps measuring.
    fn kill(&mut self, g: usize, why: Error) {
        if self.risk.killed {
            return;
        }
        let reason = self.venues[g].error(why).to_string();
        self.risk.kill(&reason);
        log(&format!("kill switch: {}", reason));
        for o in self.oms.cancel_all() {
            let gw = &mut self.venues[o.venue as usize];
            if gw.session.logged_on {
                let cl = format!("TS{}-{}", o.trace_id, o.id);
                let cancel = format!("{}C", cl);
                let now = gw.session.clock.now();
                let raw = gw.session.build(
                    b"F",
                    &[
                        (fix::ORIG_CL_ORD_ID, cl.as_bytes()),
                        (fix::CL_ORD_ID, cancel.as_bytes()),
                        (fix::SYMBOL, o.symbol()),
                        (fix::SIDE, if o.side == b'B' { b"1" } else { b"2" }),
                        (fix::TRANSACT_TIME, &now),
                    ],
                );
                if gw.send_raw(&raw).is_err() {
                    break;
                }
            }
        }
    }

    fn record_tx_stamps(&mut self) {
        for gw in self.venues.iter_mut() {
            if gw.pending_tx.is_empty() {
                continue;
            }
            let (pending, orders) = (&mut gw.pending_tx, &mut self.orders);
            sys::drain_tx_stamps(gw.fix.as_raw_fd(), |key, ts| {
                pending.stamped(key, |(seq, leg)| {
                    if let Some(o) = orders.as_mut() {
                        o.record_ts(ORDER_TX, seq, ts, leg, 0);
                    }
                });
            });
        }
    }

    fn in_flight(&self) -> usize {
        self.venues.iter().map(|g| g.in_flight.len()).sum()
    }

    // -- loop and end ----------------------------------------------------------------------------
    /// Busy-poll the non-blocking sockets until `stop` or the feed's end of session: the lowest
    /// latency, one core at 100 %.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut timers = Timers::default();
        while !stop.load(Ordering::Relaxed) {
            self.on_market_data();
            for g in 0..self.venues.len() {
                if self.venues[g].alive {
                    self.venues[g].alive = self.on_fix(g);
                }
            }
            if self.periodic(&mut timers) {
                break;
            }
        }
    }

    /// What is due by the clock (session timers each millisecond, stall checks and heartbeats
    /// every 100 ms, the stats file each second), whichever loop runs; true at the feed's end of
    /// session.
    pub fn periodic(&mut self, timers: &mut Timers) -> bool {
        let now = monotonic_ns();
        if now < timers.next_house {
            return false;
        }
        for g in 0..self.venues.len() {
            if self.venues[g].alive {
                self.housekeeping(g);
            }
        }
        timers.next_house = now + 1_000_000;
        if now >= timers.next_beat {
            for g in 0..self.venues.len() {
                self.check_stall(g);
            }
            self.ticks.heartbeat();
            if let Some(o) = self.orders.as_mut() {
                o.heartbeat();
            }
            timers.next_beat = now + 100_000_000;
        }
        if now >= timers.next_stats {
            self.write_stats();
            timers.next_stats = now + 1_000_000_000;
        }
        self.mold.stats.end_of_session
    }

    /// End of session: wait (bounded) for answers to orders on the wire, log out of every
    /// session, and read until each peer's Logout, so the last acks are counted; what is still
    /// unanswered is reported as in flight at end, never dropped.
    pub fn close(&mut self) {
        self.closing = true;
        if !self.risk.killed {
            let wait = self.args.ack_wait;
            self.read_fix_while(|t, g| !t.venues[g].in_flight.is_empty(), wait);
        }
        for g in 0..self.venues.len() {
            if self.venues[g].session.logged_on {
                let raw = self.venues[g].session.logout("trader stopping");
                self.send(g, &raw);
            }
        }
        let wait = self.args.logout_wait;
        self.read_fix_while(|t, g| t.venues[g].session.logged_on, wait);
        self.record_tx_stamps();
        let end = Instant::now() + Duration::from_millis(50);
        while self.venues.iter().any(|g| !g.pending_tx.is_empty()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
            self.record_tx_stamps();
        }
        self.write_stats();
    }

    /// Reads every logged-on session while `pending` holds for one of them, at most `timeout_s`.
    fn read_fix_while(&mut self, pending: impl Fn(&Trader, usize) -> bool, timeout_s: f64) {
        let end = Instant::now() + Duration::from_secs_f64(timeout_s);
        let mut reading: Vec<bool> = self.venues.iter().map(|g| g.session.logged_on).collect();
        loop {
            let waiting: Vec<usize> =
                (0..self.venues.len()).filter(|&g| reading[g] && pending(self, g)).collect();
            if waiting.is_empty() || Instant::now() >= end {
                return;
            }
            for g in waiting {
                if !self.on_fix(g) {
                    reading[g] = false;
                }
            }
            self.record_tx_stamps();
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The closing summary line; an error naming the orders never answered, if any.
    pub fn finish(&self) -> (String, Result<(), Error>) {
        let f = &self.mold.stats;
        let c = &self.counts;
        let legs: Vec<String> = self.by_leg.kinds.iter().map(|(k, n)| format!("{} {}", k, n)).collect();
        let summary = format!(
            "messages {}, gaps {}, orders {} ({}), acks {}, rejected {}, gap-filled {}, in flight at end {}, risk rejects {}",
            f.messages,
            f.gaps,
            c.sent,
            legs.join(", "),
            c.acked,
            c.rejected,
            c.gap_filled,
            self.in_flight(),
            self.risk.counts.iter().sum::<u64>()
        );
        let unanswered = self.in_flight();
        let outcome = if unanswered == 0 {
            Ok(())
        } else {
            let facts: Vec<String> = self
                .venues
                .iter()
                .filter(|g| !g.in_flight.is_empty() || !g.hedge)
                .map(|g| {
                    let facts = g.seq_facts();
                    if g.hedge {
                        format!("hedge venue {}: {}", g.venue, facts)
                    } else {
                        facts
                    }
                })
                .collect();
            Err(Error::Unanswered { unanswered, sent: c.sent, facts: facts.join("; ") })
        };
        (summary, outcome)
    }

    fn write_stats(&self) {
        let primary = &self.venues[PRIMARY];
        let stats = Stats {
            feed: &self.mold.stats,
            unknown_order_refs: self.books.unknown_refs,
            orders: &self.counts,
            in_flight: self.in_flight(),
            by_leg: &self.by_leg.kinds,
            quotes: if self.args.quotes_both { "both" } else { "one" },
            quoted_signals: self.quoted,
            hedges_due: self.hedges_due,
            hedges_held_by_risk: self.hedges_held_by_risk,
            hedge_every: if self.hedge.is_some() { self.args.hedge_every } else { 0 },
            venues: self
                .venues
                .iter()
                .map(|g| stats::VenueStats {
                    name: &g.venue,
                    role: if g.hedge { "hedge" } else { "primary" },
                    port: g.port,
                    in_flight_at_end: g.in_flight.len(),
                })
                .collect(),
            oms: &self.oms,
            risk: &self.risk,
            signals_held_back: self.strategy.held_back,
            fix: &primary.session.stats,
            fix_hedge: self.hedge.map(|h| &self.venues[h].session.stats),
            kernel_rx_stamps: self.rx_enabled,
            kernel_tx_stamps: self.kernel_tx,
            tx_stamps_unmatched: self.venues.iter().map(|g| g.pending_tx.len()).sum(),
            loop_kind: self.loop_kind(),
        };
        stats::write_atomically(&self.stats_path, &stats.to_json());
    }
}

/// Every value known at start, interned once on the tick ring: the venues, both sides, the ITCH
/// message types (each with the feed's venue: market data comes from the primary venue).
fn intern_dimensions(ticks: &mut Ticks, venues: &[Gateway]) -> DimBits {
    let venue: Vec<u64> =
        venues.iter().map(|g| (ticks.intern("venue", &g.venue) as u64) << VENUE_SLOT).collect();
    let buy = (ticks.intern("side", "buy") as u64) << SIDE_SLOT;
    let sell = (ticks.intern("side", "sell") as u64) << SIDE_SLOT;
    let mut msg = [0u64; 256];
    for &k in ITCH_TYPES {
        let name = (k as char).to_string();
        msg[k as usize] = venue[PRIMARY] | (ticks.intern("msg_type", &name) as u64) << MSG_TYPE_SLOT;
    }
    DimBits { venue, buy, sell, msg, symbol: IntMap::default() }
}

/// What the tokio loop (tokio_loop.rs) needs to watch the sockets itself.
#[cfg(feature = "tokio-loop")]
impl Trader {
    /// `--loop tokio` was asked for.
    pub fn tokio(&self) -> bool {
        self.args.tokio
    }

    /// Venue `g`'s session is still read (not closed by the peer, no Logout).
    pub fn venue_alive(&self, g: usize) -> bool {
        self.venues[g].alive
    }

    pub fn end_venue(&mut self, g: usize) {
        self.venues[g].alive = false;
    }

    pub fn md_fd(&self) -> std::os::unix::io::RawFd {
        self.md.as_raw_fd()
    }

    /// The order-entry sockets' descriptors, the primary venue first.
    pub fn fix_fds(&self) -> Vec<std::os::unix::io::RawFd> {
        self.venues.iter().map(|g| g.fix.as_raw_fd()).collect()
    }
}
