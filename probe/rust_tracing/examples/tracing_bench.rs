//! Cost per span through `ProbeLayer`, beside its references, in one run (one JSON line, ns):
//!
//! - `record_ns`: a bare `Probe::record` (what the layer calls);
//! - `span_noop_ns`: a span created, entered, exited and closed under a registry with a layer
//!   that does nothing (what `tracing` itself costs);
//! - `span_probe_ns`: the same span carrying `point` and `trace_id` under `ProbeLayer` (one
//!   record at close);
//! - `event_probe_ns`: an event carrying `point` and `trace_id` under `ProbeLayer`.
//!
//!     tracing_bench DIR

use tickscope_probe::layout as L;
use tickscope_probe::{points, Probe};
use tickscope_probe_tracing::ProbeLayer;
use tracing_subscriber::layer::{Layer, SubscriberExt};

points! {
    enum P { Rx = "md.rx", Decoded = "md.decoded" }
}

const ROUNDS: usize = 15;
const PER_ROUND: u64 = 1 << 14;

struct Noop;
impl<S: tracing_core::Subscriber> Layer<S> for Noop {}

/// Plays the collector: releases everything written to the rings in `dir`.
fn consume(dir: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    for entry in std::fs::read_dir(dir).expect("ring dir").flatten() {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(entry.path()).expect("ring");
        let mut head = [0u8; 8];
        f.read_exact_at(&mut head, L::OFF_HEAD as u64).expect("head");
        f.write_all_at(&head, L::OFF_TAIL as u64).expect("tail");
    }
}

fn best_ns(dir: &std::path::Path, mut body: impl FnMut(u64)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        consume(dir);
        let t0 = std::time::Instant::now();
        for i in 0..PER_ROUND {
            body(i);
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / PER_ROUND as f64);
    }
    consume(dir);
    best
}

fn main() {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).expect("usage: tracing_bench DIR");
    let probe =
        Probe::<P>::builder("rust-tracing-bench").dir(&dir).capacity(PER_ROUND * 2).build().expect("probe");
    probe.record(P::Rx, 0); // this thread's ring, opened before timing
    let record_ns = best_ns(&dir, |i| {
        probe.record(P::Rx, i);
    });
    let span = |i: u64| {
        let _g = tracing::info_span!("decode", point = "md.decoded", trace_id = i).entered();
    };
    let noop = tracing_subscriber::registry().with(Noop);
    let span_noop_ns = tracing::subscriber::with_default(noop, || best_ns(&dir, span));
    let layered = tracing_subscriber::registry().with(ProbeLayer::new(probe.clone()));
    let (span_probe_ns, event_probe_ns) = tracing::subscriber::with_default(layered, || {
        let s = best_ns(&dir, span);
        let e = best_ns(&dir, |i| tracing::info!(point = "md.rx", trace_id = i));
        (s, e)
    });
    drop(probe);
    for entry in std::fs::read_dir(&dir).expect("ring dir").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    println!(
        "{{\"record_ns\": {record_ns:.1}, \"span_noop_ns\": {span_noop_ns:.1}, \"span_probe_ns\": {span_probe_ns:.1}, \"event_probe_ns\": {event_probe_ns:.1}}}"
    );
}
