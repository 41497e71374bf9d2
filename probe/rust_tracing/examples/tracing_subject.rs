//! A service instrumented with `tracing` only, under `ProbeLayer`, for tickscope's tests:
//!
//!     tracing_subject TRACES
//!
//! Per trace: `receive` (an `#[instrument]`ed fn whose span begins at md.rx and ends at
//! md.decoded, trace id from its argument), `decide` (a span ending at signal, its trace id
//! inherited from the enclosing `tick` span), then the trace hops to an order thread whose event
//! stamps order.tx. Each stage spins a fixed amount of work. Last line on stdout:
//! "traces=N unmatched=U".

use std::sync::mpsc;
use tickscope_probe::{points, Error, Point, Probe};
use tickscope_probe_tracing::ProbeLayer;
use tracing_subscriber::layer::SubscriberExt;

points! {
    enum Tick {
        Rx = "md.rx",
        Decoded = Point::new("md.decoded").stage("feed"),
        Signal = Point::new("signal").stage("strategy"),
        Sent = Point::new("order.tx").stage("send").trade(),
    }
}

fn work(n: u64) -> u64 {
    let mut sink = 0u64;
    for k in 0..n {
        // SAFETY: a volatile store to a local: only keeps the loop from being optimised away.
        unsafe { std::ptr::write_volatile(&mut sink, sink.wrapping_add(k)) };
    }
    sink
}

#[tracing::instrument(level = "info", fields(begin = "md.rx", point = "md.decoded"))]
fn receive(trace_id: u64) {
    work(2000);
}

fn decide() {
    let _span = tracing::info_span!("decide", point = "signal").entered();
    work(1000);
}

fn main() -> Result<(), Error> {
    let traces: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let probe = Probe::<Tick>::new("rust-tracing")?;
    let layer = ProbeLayer::new(probe.clone());
    let unmatched = layer.unmatched();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .expect("no other subscriber");
    let (tx, rx) = mpsc::channel::<u64>();
    let orders = std::thread::spawn(move || {
        for trace_id in rx {
            work(500);
            tracing::info!(point = "order.tx", trace_id);
        }
    });
    for trace_id in 1..=traces {
        let _tick = tracing::info_span!("tick", trace_id).entered();
        receive(trace_id);
        decide();
        tx.send(trace_id).expect("order thread");
    }
    drop(tx);
    orders.join().expect("order thread");
    println!("traces={traces} unmatched={}", unmatched.get());
    Ok(())
}
