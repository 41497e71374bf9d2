//! Known-delay subjects on a tokio multi-thread runtime, for tickscope's tests and as a worked
//! example of a `Probe` shared by tasks that move between threads:
//!
//!     tokio_subject probe TRACES     each trace is a task: md.rx and md.decoded, a
//!                                    `yield_now` (the task may resume on another worker), a
//!                                    spawned child task stamping signal, then a hand-off to a
//!                                    second runtime's workers (another thread, always) stamping
//!                                    order.tx; stage k of trace i spans `span(i, k)` ticks
//!                                    exactly (`record_ts`, as probe_threads)
//!     tokio_subject tracing TRACES   the same journey through `ProbeLayer`: spans and an event
//!                                    carrying `point`, stamped when they happen; each stage
//!                                    spins at least `span(i, k)` ticks, so its samples are never
//!                                    shorter
//!
//! Rings go to $TICKSCOPE_RING_DIR. Last line on stdout:
//! "traces=N threads=T moved=M unmatched=U": T threads recorded, M traces had a point on another
//! thread than their md.rx.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
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

fn span(i: u64, k: u64) -> u64 {
    1000 * k + (i * 7919 % 1000) * 23 * k
}

/// Traces in flight at once: enough for workers to steal from each other, few enough that no
/// thread's ring fills while the collector drains.
const IN_FLIGHT: usize = 64;

/// Who recorded what: the threads that stamped, and the traces that left md.rx's thread.
#[derive(Default)]
struct Moves {
    threads: HashSet<std::thread::ThreadId>,
    moved: u64,
}

#[derive(Clone)]
struct Seen(Arc<Mutex<Moves>>);

impl Seen {
    fn here(&self) -> std::thread::ThreadId {
        let id = std::thread::current().id();
        self.0.lock().unwrap().threads.insert(id);
        id
    }

    fn moved(&self, from: std::thread::ThreadId) {
        if std::thread::current().id() != from {
            self.0.lock().unwrap().moved += 1;
        }
    }
}

/// A known-delay subject waits for room rather than drop: its counts must be exact.
async fn record_ts(probe: &Probe<Tick>, point: Tick, trace: u64, ts: u64) {
    while !probe.record_ts(point, trace, ts, 0, 0) {
        tokio::task::yield_now().await;
    }
}

/// Spins until `ticks` of the probe's clock passed since `from`: a stage at least that long.
fn spin_from(probe: &Probe<Tick>, from: u64, ticks: u64) {
    while probe.now().wrapping_sub(from) < ticks {
        std::hint::spin_loop();
    }
}

async fn known_delays(probe: Probe<Tick>, orders: tokio::runtime::Handle, i: u64, seen: Seen) {
    let trace = i + 1;
    let rx = probe.now();
    let home = seen.here();
    record_ts(&probe, Tick::Rx, trace, rx).await;
    tokio::task::yield_now().await;
    seen.here();
    let decoded = rx + span(i, 1);
    record_ts(&probe, Tick::Decoded, trace, decoded).await;
    let strategy = {
        let (probe, seen) = (probe.clone(), seen.clone());
        tokio::spawn(async move {
            seen.here();
            let signal = decoded + span(i, 2);
            record_ts(&probe, Tick::Signal, trace, signal).await;
            signal
        })
    };
    let signal = strategy.await.expect("strategy task");
    let send = orders.spawn(async move {
        seen.here();
        seen.moved(home);
        record_ts(&probe, Tick::Sent, trace, signal + span(i, 3)).await;
    });
    send.await.expect("order task");
}

async fn through_tracing(probe: Probe<Tick>, orders: tokio::runtime::Handle, i: u64, seen: Seen) {
    let trace_id = i + 1;
    let home = seen.here();
    {
        let _feed = tracing::info_span!("receive", begin = "md.rx", point = "md.decoded", trace_id).entered();
        spin_from(&probe, probe.now(), span(i, 1)); // md.rx was stamped on entering
    }
    tokio::task::yield_now().await;
    seen.here();
    let strategy = {
        let (probe, seen) = (probe.clone(), seen.clone());
        tokio::spawn(async move {
            seen.here();
            let from = probe.now();
            let _decide = tracing::info_span!("decide", point = "signal", trace_id).entered();
            spin_from(&probe, from, span(i, 2));
        })
    };
    strategy.await.expect("strategy task");
    let send = orders.spawn(async move {
        seen.here();
        seen.moved(home);
        spin_from(&probe, probe.now(), span(i, 3));
        tracing::info!(point = "order.tx", trace_id);
    });
    send.await.expect("order task");
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .build()
        .expect("tokio runtime")
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let traces: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let via_tracing = match args.get(1).map(String::as_str) {
        Some("probe") => false,
        Some("tracing") => true,
        _ => {
            eprintln!("usage: tokio_subject probe|tracing TRACES");
            std::process::exit(2);
        }
    };
    let probe = Probe::<Tick>::new(if via_tracing { "rust-tokio-tracing" } else { "rust-tokio" })?;
    let unmatched = if via_tracing {
        let layer = ProbeLayer::new(probe.clone());
        let unmatched = layer.unmatched();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other subscriber");
        Some(unmatched)
    } else {
        None
    };
    let (feed, orders) = (runtime("feed"), runtime("orders"));
    let seen = Seen(Arc::default());
    let handle = orders.handle().clone();
    feed.block_on(async {
        let mut tasks = std::collections::VecDeque::new();
        for i in 0..traces {
            if tasks.len() == IN_FLIGHT {
                let task: tokio::task::JoinHandle<()> = tasks.pop_front().unwrap();
                task.await.expect("trace task");
            }
            let (probe, handle, seen) = (probe.clone(), handle.clone(), seen.clone());
            tasks.push_back(if via_tracing {
                tokio::spawn(through_tracing(probe, handle, i, seen))
            } else {
                tokio::spawn(known_delays(probe, handle, i, seen))
            });
        }
        for task in tasks {
            task.await.expect("trace task");
        }
    });
    // The workers' threads close their rings as they exit.
    drop(feed);
    drop(orders);
    let moves = seen.0.lock().unwrap();
    println!(
        "traces={traces} threads={} moved={} unmatched={}",
        moves.threads.len(),
        moves.moved,
        unmatched.map_or(0, |u| u.get())
    );
    Ok(())
}
