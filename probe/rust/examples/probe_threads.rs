//! A `Probe` used from several threads, for tickscope's tests and as a worked example.
//!
//!     probe_threads hop TRACES      each trace hops three threads: md.rx and md.decoded on the
//!                                   main thread, signal on a strategy thread, order.tx on an
//!                                   order thread; stage k of trace i spans `span(i, k)` ticks
//!                                   exactly (`record_ts`), as in rust_writer
//!     probe_threads guard TRACES    the same points stamped now, md.decoded by a stage guard
//!     probe_threads flood N         N records into a ring of 64 on one thread (drops without a
//!                                   collector)
//!     probe_threads wait TRACES     as hop, then "ready" on stdout and sleep until killed (the
//!                                   main thread's ring stays open)
//!     probe_threads bad-dims        a probe with five dimensions: `main` returns the error
//!
//! Rings go to $TICKSCOPE_RING_DIR (default /dev/shm/tickscope); the last line on stdout is
//! "produced=N clock=C".

use std::sync::mpsc;
use tickscope_probe::{points, Error, Point, Probe};

points! {
    /// One tick's journey, as rust_writer's four points.
    enum Tick {
        Rx = "md.rx",
        Decoded = Point::new("md.decoded").stage("feed"),
        Signal = Point::new("signal").stage("strategy"),
        Sent = Point::new("order.tx").stage("send").trade(),
    }
}

fn span(i: u64, k: u64) -> u64 {
    1000 * k + (i * 7919 % 1000) * 23 * k
}

/// A known-delay subject waits for room rather than drop: its counts must be exact.
fn record_ts(probe: &Probe<Tick>, point: Tick, trace: u64, ts: u64) {
    while !probe.record_ts(point, trace, ts, 0, 0) {
        std::thread::yield_now();
    }
}

/// Runs `stage` on a thread of its own for every (trace, stamp) received, passing them on.
fn relay(
    probe: &Probe<Tick>,
    rx: mpsc::Receiver<(u64, u64)>,
    stage: impl Fn(&Probe<Tick>, u64, u64) -> u64 + Send + 'static,
) -> (mpsc::Receiver<(u64, u64)>, std::thread::JoinHandle<()>) {
    let (tx, out) = mpsc::channel();
    let probe = probe.clone();
    let handle = std::thread::spawn(move || {
        for (trace, ts) in rx {
            let next = stage(&probe, trace, ts);
            let _ = tx.send((trace, next));
        }
    });
    (out, handle)
}

fn hop(probe: &Probe<Tick>, traces: u64, known: bool) -> u64 {
    let (tx, rx) = mpsc::channel();
    let (rx, strategy) = relay(probe, rx, move |p, trace, ts| {
        if known {
            let signal = ts + span(trace - 1, 2);
            record_ts(p, Tick::Signal, trace, signal);
            signal
        } else {
            p.record(Tick::Signal, trace);
            0
        }
    });
    let (done, orders) = relay(probe, rx, move |p, trace, ts| {
        if known {
            record_ts(p, Tick::Sent, trace, ts + span(trace - 1, 3));
        } else {
            p.record(Tick::Sent, trace);
        }
        0
    });
    for i in 0..traces {
        let trace = 1 + i;
        if known {
            let rx = probe.now();
            record_ts(probe, Tick::Rx, trace, rx);
            record_ts(probe, Tick::Decoded, trace, rx + span(i, 1));
            tx.send((trace, rx + span(i, 1))).expect("strategy thread");
        } else {
            {
                let _feed = probe.stage(Tick::Rx, Tick::Decoded, trace);
                std::thread::yield_now(); // the stage's work
            }
            tx.send((trace, 0)).expect("strategy thread");
        }
        if i % 64 == 63 {
            // Keep the relay threads' rings from filling while they lag.
            std::thread::yield_now();
        }
    }
    drop(tx);
    strategy.join().expect("strategy thread");
    orders.join().expect("order thread");
    assert_eq!(done.iter().count() as u64, traces);
    4 * traces
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let n = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(1000u64);
    let produced = match args.get(1).map(String::as_str) {
        Some("hop") => hop(&Probe::new("rust-hop")?, n(2), true),
        Some("wait") => {
            let probe = Probe::new("rust-wait")?;
            hop(&probe, n(2), true);
            println!("ready");
            loop {
                std::thread::park();
            }
        }
        Some("guard") => hop(&Probe::new("rust-guard")?, n(2), false),
        Some("flood") => {
            let probe = Probe::<Tick>::builder("rust-flood").capacity(64).build()?;
            for trace in 0..n(2) {
                probe.record(Tick::Rx, trace);
            }
            n(2)
        }
        Some("bad-dims") => {
            Probe::<Tick>::builder("rust-dims").dims(&["venue", "side", "symbol", "type", "tif"]).build()?;
            0
        }
        _ => {
            eprintln!("usage: probe_threads hop|guard|flood TRACES | bad-dims");
            std::process::exit(2);
        }
    };
    println!("produced={produced} clock={:?}", tickscope_probe::native_clock());
    Ok(())
}
