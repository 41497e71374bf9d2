//! A small instrumented Rust program for tickscope's tests.
//!
//!     rust_writer points TRACES [CAPACITY] [BASE] [BEAT]   4 points per trace, known TSC spans
//!                                                          (record_ts); heartbeat every BEAT traces
//!     rust_writer ticks TRACES [CAPACITY] [BASE] [BEAT]    the same spans as one tick record per trace
//!     rust_writer live TRACES [CAPACITY] [BASE] [BEAT]     4 points per trace stamped now (record)
//!     rust_writer relay                             per trace id read on stdin: md.decoded and
//!                                                   order.tx now, then the id back on stdout
//!     rust_writer threads TRACES [BEAT]             a feed thread (TickWriter: md.rx, md.decoded,
//!                                                   signal) hands each trace to an order thread
//!                                                   (PointWriter: order.tx): the send stage crosses rings
//!     rust_writer feed TRACES [BEAT]                the feed half alone, "trace ticks" lines on stdout
//!     rust_writer orders [BEAT]                     the order half alone, those lines on stdin
//!                                                   (`feed | orders`: the send stage crosses processes)
//!     rust_writer legs TRACES                       fan-out and branching paths with dimensions:
//!                                                   the subject of probe/examples/c_legs.c
//!     rust_writer layout                            the ring layout constants as JSON
//!
//! Writers go to $TICKSCOPE_RING_DIR; the last line is
//! "produced=N written=W dropped=M clock=C invariant=B trusted=T" (N calls, W records published).
//! Stage k (1..3) of trace i spans `span(i, k)` clock ticks exactly: tests compute the expected
//! durations from the same formula and the collector's fitted TSC rate.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use tickscope_probe::layout as L;
use tickscope_probe::{dims, tsc_invariant, tsc_trusted, Error, Point, PointWriter, TickWriter};

const POINTS: [Point<'static>; 4] = [
    Point::new("md.rx"),
    Point::new("md.decoded").stage("feed"),
    Point::new("signal").stage("strategy"),
    Point::new("order.tx").stage("send").trade(),
];

const RELAY_POINTS: [Point<'static>; 3] = [
    Point::new("md.rx"),
    Point::new("md.decoded").stage("feed"),
    Point::new("order.tx").stage("send").trade(),
];

const FEED_POINTS: [Point<'static>; 3] =
    [Point::new("md.rx"), Point::new("md.decoded").stage("feed"), Point::new("signal").stage("strategy")];

/// The order thread declares `signal` (never stamped here) before its own point: that is what
/// orders `order.tx` after the feed thread's points, whichever ring opens first.
const ORDER_POINTS: [Point<'static>; 2] =
    [Point::new("signal"), Point::new("order.tx").stage("send").trade()];

/// The feed half of a two-ring trace: known spans 1 and 2 from `now()`; hands (trace, signal's
/// stamp) on.
fn feed(traces: u64, beat_every: u64, mut hand_on: impl FnMut(u64, u64)) -> Result<(u64, u64), Error> {
    let mut w = TickWriter::open("rust-feed", &FEED_POINTS, 1 << 16)?;
    for i in 0..traces {
        let rx = w.now();
        let decoded = rx + span(i, 1);
        let signal = decoded + span(i, 2);
        w.stamp_ts(0, rx);
        w.stamp_ts(1, decoded);
        w.stamp_ts(2, signal);
        while !w.commit(1 + i, 0, 0) {
            std::thread::yield_now(); // full: a known-delay subject waits rather than drops
        }
        hand_on(1 + i, signal);
        if i % beat_every == beat_every - 1 {
            w.heartbeat();
        }
        spin(2000);
    }
    Ok((traces, w.dropped()))
}

/// The order half: order.tx = signal's stamp + span 3 of that trace.
fn orders(beat_every: u64, handed: impl Iterator<Item = (u64, u64)>) -> Result<(u64, u64), Error> {
    let mut w = PointWriter::open("rust-orders", &ORDER_POINTS, 1 << 16)?;
    let mut produced = 0;
    for (trace, signal) in handed {
        while !w.record_ts(1, trace, signal + span(trace - 1, 3), 0, 0) {
            std::thread::yield_now();
        }
        produced += 1;
        if produced % beat_every == 0 {
            w.heartbeat();
        }
    }
    Ok((produced, w.dropped()))
}

/// The subject of probe/examples/c_legs.c (see there): known TSC spans, an even trace a quote on
/// two legs (XNAS buy and sell), an odd one a trade message on one leg (BATS buy), the paths
/// branching after md.decoded across two rings of this thread; symbol S0..S2 (by i % 3) on md.decoded.
fn legs(traces: u64) -> Result<(u64, u64), Error> {
    const FEED: u64 = 15000;
    const QUOTE: u64 = 40000;
    const TRADE: u64 = 90000;
    const ACK: u64 = 100000;
    const PACE: u64 = 200000;
    let send = |i: u64, k: u64| 2000 + 500 * k + (i * 7919) % 1000;
    let quote_points = [
        Point::new("md.rx"),
        Point::new("md.decoded").stage("feed"),
        Point::new("quote.handled").stage("quote"),
        Point::new("order.tx").stage("send").trade().leg(),
        Point::new("ack.rx").stage("order_rtt"),
    ];
    let trade_points =
        [Point::new("md.decoded"), Point::new("trade.handled").stage("trade_msg"), Point::new("order.tx")];
    let mut quotes = PointWriter::open_dims("quotes", &quote_points, &["venue", "side", "symbol"], 1 << 16)?;
    let mut trades = PointWriter::open("trades", &trade_points, 1 << 14)?;
    let xnas_buy = dims([quotes.intern("venue", "XNAS"), quotes.intern("side", "buy"), 0, 0]);
    let xnas_sell = dims([quotes.intern("venue", "XNAS"), quotes.intern("side", "sell"), 0, 0]);
    let bats_buy = dims([quotes.intern("venue", "BATS"), quotes.intern("side", "buy"), 0, 0]);
    let symbol: Vec<u64> =
        ["S0", "S1", "S2"].iter().map(|s| dims([0, 0, quotes.intern("symbol", s), 0])).collect();
    let put = |w: &mut PointWriter, point: u32, trace: u64, ts: u64, leg: u16, d: u64| {
        while !w.record_ts(point, trace, ts, leg, d) {
            std::thread::yield_now(); // full: a known-delay subject waits rather than drops
        }
    };
    let mut produced = 0;
    for i in 1..=traces {
        let ts0 = quotes.now();
        let decoded = ts0 + FEED;
        put(&mut quotes, 0, i, ts0, 0, 0);
        put(&mut quotes, 1, i, decoded, 0, symbol[(i % 3) as usize]);
        let quote = i % 2 == 0;
        let handled = decoded + if quote { QUOTE } else { TRADE };
        if quote {
            put(&mut quotes, 2, i, handled, 0, 0);
        } else {
            put(&mut trades, 1, i, handled, 0, 0);
        }
        for k in 0..if quote { 2 } else { 1 } {
            let tx = handled + send(i, k);
            let d = if !quote {
                bats_buy
            } else if k == 0 {
                xnas_buy
            } else {
                xnas_sell
            };
            put(&mut quotes, 3, i, tx, k as u16, d);
            put(&mut quotes, 4, i, tx + ACK + k, k as u16, 0);
            produced += 2;
        }
        produced += 3;
        if i % 1000 == 0 {
            quotes.heartbeat();
            trades.heartbeat();
        }
        while quotes.now() < ts0 + PACE {}
    }
    Ok((produced, quotes.dropped() + trades.dropped()))
}

/// BEAT as given: a heartbeat every that many traces; 0, never.
fn heartbeat_every(beat: u64) -> u64 {
    if beat == 0 {
        u64::MAX
    } else {
        beat
    }
}

/// Ticks between point k-1 and point k of trace i: 0.3 .. ~30 us at a few GHz, all different.
fn span(i: u64, k: u64) -> u64 {
    1000 * k + (i * 7919 % 1000) * 23 * k
}

fn spin(n: u64) {
    let mut sink = 0u64;
    for k in 0..n {
        // SAFETY: a volatile store to a local: only keeps the loop from being optimised away.
        unsafe { std::ptr::write_volatile(&mut sink, sink.wrapping_add(k)) };
    }
}

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).map(|s| s.parse().expect("a number")).unwrap_or(default)
}

fn summary(produced: u64, written: u64, dropped: u64, clock: tickscope_probe::ClockDomain) {
    println!(
        "produced={produced} written={written} dropped={dropped} clock={clock:?} invariant={} trusted={}",
        tsc_invariant(),
        tsc_trusted()
    );
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("points");
    let traces = arg(&args, 2, 1000);
    let capacity = arg(&args, 3, 1 << 16);
    let base = arg(&args, 4, 1);
    let beat_every = arg(&args, 5, 4096).max(1);
    match mode {
        "points" | "live" => {
            let mut w = PointWriter::open("rust-points", &POINTS, capacity)?;
            let mut produced = 0;
            for i in 0..traces {
                let mut ts = w.now();
                for k in 0..4u64 {
                    if mode == "live" {
                        spin(20); // a little work between points
                        w.record(k as u32, base + i, 0, if k == 3 { 42 } else { 0 });
                    } else {
                        if k > 0 {
                            ts += span(i, k);
                        }
                        w.record_ts(k as u32, base + i, ts, 0, span(i, k.max(1)));
                    }
                    produced += 1;
                }
                if i % beat_every == beat_every - 1 {
                    w.heartbeat();
                }
            }
            summary(produced, w.written(), w.dropped(), w.clock());
        }
        "ticks" => {
            let mut w = TickWriter::open("rust-ticks", &POINTS, capacity)?;
            for i in 0..traces {
                let mut ts = w.now();
                w.stamp_ts(0, ts);
                for k in 1..4u64 {
                    ts += span(i, k);
                    w.stamp_ts(k as u32, ts);
                }
                w.commit(base + i, 0, i);
                if i % beat_every == beat_every - 1 {
                    w.heartbeat();
                }
            }
            summary(traces, w.written(), w.dropped(), w.clock());
        }
        "relay" => {
            let mut w = PointWriter::open("rust-relay", &RELAY_POINTS, capacity)?;
            let stdin = std::io::stdin();
            let mut out = std::io::stdout().lock();
            let mut produced = 0u64;
            for line in stdin.lock().lines() {
                let line = line.expect("stdin");
                let trace: u64 = match line.trim().parse() {
                    Ok(t) => t,
                    Err(_) => break,
                };
                w.record(1, trace, 0, 0);
                w.record(2, trace, 0, 0);
                produced += 2;
                if produced % 256 == 0 {
                    w.heartbeat();
                }
                writeln!(out, "{trace}").and_then(|_| out.flush()).expect("stdout");
            }
            eprintln!("produced={produced} dropped={}", w.dropped());
        }
        "threads" => {
            let beat_every = heartbeat_every(arg(&args, 3, 0));
            // Bounded, as a real order queue is: the feed thread never runs more than 256 traces
            // ahead, so no trace waits on a descheduled order thread for long.
            let (tx, rx) = std::sync::mpsc::sync_channel(256);
            let order_thread = std::thread::spawn(move || orders(beat_every, rx.into_iter()));
            let (fed, feed_dropped) =
                feed(traces, beat_every, |t, s| tx.send((t, s)).expect("order thread"))?;
            drop(tx);
            let (sent, order_dropped) = order_thread.join().expect("order thread")?;
            println!("produced={} dropped={}", fed + sent, feed_dropped + order_dropped);
        }
        "feed" => {
            let beat_every = heartbeat_every(arg(&args, 3, 0));
            let mut out = std::io::stdout().lock();
            let (fed, dropped) = feed(traces, beat_every, |t, s| writeln!(out, "{t} {s}").expect("stdout"))?;
            eprintln!("feed produced={fed} dropped={dropped}");
        }
        "orders" => {
            let beat_every = heartbeat_every(arg(&args, 2, 0));
            let lines = std::io::stdin().lock().lines().map_while(Result::ok);
            let handed = lines.filter_map(|l| {
                let mut it = l.split_whitespace().map(|x| x.parse::<u64>());
                Some((it.next()?.ok()?, it.next()?.ok()?))
            });
            let (sent, dropped) = orders(beat_every, handed)?;
            eprintln!("orders produced={sent} dropped={dropped}");
        }
        "legs" => {
            let (produced, dropped) = legs(traces)?;
            println!("produced={produced} dropped={dropped}");
        }
        "layout" => {
            let body: Vec<String> = L::CONSTANTS.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            println!("{{{}}}", body.join(", "));
        }
        other => {
            eprintln!("rust_writer: unknown mode {other:?} (points, ticks, live, relay, threads, feed, orders, legs, layout)");
            std::process::exit(2);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rust_writer: {e}");
            ExitCode::FAILURE
        }
    }
}
