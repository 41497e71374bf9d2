//! A small instrumented Rust program for tickscope's tests.
//!
//!     rust_writer points TRACES [CAPACITY] [BASE] [BEAT]   4 points per trace, known TSC spans
//!                                                          (record_ts); heartbeat every BEAT traces
//!     rust_writer ticks TRACES [CAPACITY] [BASE] [BEAT]    the same spans as one tick record per trace
//!     rust_writer live TRACES [CAPACITY] [BASE] [BEAT]     4 points per trace stamped now (record)
//!     rust_writer relay                             per trace id read on stdin: md.decoded and
//!                                                   order.tx now, then the id back on stdout
//!     rust_writer layout                            the ring layout constants as JSON
//!
//! Writers go to $TICKSCOPE_RING_DIR; the last line is "produced=N dropped=M clock=C invariant=B".
//! Stage k (1..3) of trace i spans `span(i, k)` clock ticks exactly: tests compute the expected
//! durations from the same formula and the collector's fitted TSC rate.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use tickscope_probe::layout as L;
use tickscope_probe::{tsc_invariant, Error, Point, PointWriter, TickWriter};

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

fn summary(produced: u64, dropped: u64, clock: tickscope_probe::ClockDomain) {
    println!("produced={produced} dropped={dropped} clock={clock:?} invariant={}", tsc_invariant());
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
                        w.record(k as u32, base + i, if k == 3 { 42 } else { 0 });
                    } else {
                        if k > 0 {
                            ts += span(i, k);
                        }
                        w.record_ts(k as u32, base + i, ts, span(i, k.max(1)));
                    }
                    produced += 1;
                }
                if i % beat_every == beat_every - 1 {
                    w.heartbeat();
                }
            }
            summary(produced, w.dropped(), w.clock());
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
                w.commit(base + i, i);
                if i % beat_every == beat_every - 1 {
                    w.heartbeat();
                }
            }
            summary(traces, w.dropped(), w.clock());
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
                w.record(1, trace, 0);
                w.record(2, trace, 0);
                produced += 2;
                if produced % 256 == 0 {
                    w.heartbeat();
                }
                writeln!(out, "{trace}").and_then(|_| out.flush()).expect("stdout");
            }
            eprintln!("produced={produced} dropped={}", w.dropped());
        }
        "layout" => {
            let body: Vec<String> = L::CONSTANTS.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            println!("{{{}}}", body.join(", "));
        }
        other => {
            eprintln!("rust_writer: unknown mode {other:?} (points, ticks, live, relay, layout)");
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
