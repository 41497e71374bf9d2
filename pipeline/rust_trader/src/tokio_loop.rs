//! `--loop tokio`: the same trader (points, stages, dimensions, FIX sessions, recovery) driven by
//! a tokio runtime instead of a busy-poll: the task sleeps in epoll until a socket is readable or
//! the millisecond timer fires, so an idle trader costs no CPU and every tick pays a wake-up.
//!
//! A multi-thread runtime, the one a tokio service runs on: the trader is one task over shared
//! state (book, OMS, risk, sessions), `tokio::spawn`ed, and may resume on either worker after a
//! wake-up. Its probe writers follow it: a ring per worker, dimension ids the same in every ring
//! (probes.rs), stamps joined by trace id.

use crate::error::Error;
use crate::trader::{FixRead, Timers, Trader};
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// Workers of the runtime: this host's two cores. One task does the work; the second worker is
/// where it may move.
const WORKERS: usize = 2;

/// Runs `trader` until `stop` or the feed's end of session; gives it back for the end of the
/// session (answers awaited, Logout), which runs as for the busy loop, off the runtime.
pub fn run(trader: Trader, stop: &'static AtomicBool) -> Result<Trader, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| Error::Socket { what: "tokio runtime", source })?;
    rt.block_on(async move {
        match tokio::spawn(drive(trader, stop)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    })
}

async fn drive(mut t: Trader, stop: &'static AtomicBool) -> Result<Trader, Error> {
    let watch = |fd: RawFd, what: &'static str| {
        AsyncFd::with_interest(fd, Interest::READABLE).map_err(|source| Error::Socket { what, source })
    };
    let md = watch(t.md_fd(), "market data")?;
    let fix = t.fix_fds().into_iter().map(|fd| watch(fd, "FIX")).collect::<Result<Vec<_>, _>>()?;
    let mut timers = Timers::default();
    // The busy loop's cadence for session timers, heartbeats and the stop flag; a late tick is
    // skipped, not caught up in a burst.
    let mut clock = tokio::time::interval(Duration::from_millis(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        // Market data first, then orders' answers, then the clock: the order the busy loop polls.
        tokio::select! {
            biased;
            ready = md.readable() => {
                let mut ready = ready.map_err(|source| Error::Socket { what: "market data", source })?;
                t.on_market_data(); // reads until the socket would block
                ready.clear_ready();
            }
            (g, ready) = fix_readable(&fix, &t) => {
                // Read until it would block before clearing readiness: epoll is edge-triggered.
                let mut ready = ready.map_err(|source| Error::Socket { what: "FIX", source })?;
                loop {
                    match t.read_fix(g) {
                        FixRead::More => continue,
                        FixRead::Drained => ready.clear_ready(),
                        FixRead::Over => t.end_venue(g),
                    }
                    break;
                }
            }
            _ = clock.tick() => {}
        }
        // After every wake-up, not only the timer's: a feed that keeps its socket readable would
        // otherwise starve the session timers (the biased select never reaches the clock).
        if t.periodic(&mut timers) {
            break;
        }
    }
    Ok(t)
}

/// The first readable order-entry socket of a session still read: (venue, its readiness).
async fn fix_readable<'a>(
    fix: &'a [AsyncFd<RawFd>],
    t: &Trader,
) -> (usize, std::io::Result<AsyncFdReadyGuard<'a, RawFd>>) {
    let primary = fix.first().filter(|_| t.venue_alive(0));
    let hedge = fix.get(1).filter(|_| t.venue_alive(1));
    tokio::select! {
        biased;
        ready = readable(primary) => (0, ready),
        ready = readable(hedge) => (1, ready),
    }
}

async fn readable(fd: Option<&AsyncFd<RawFd>>) -> std::io::Result<AsyncFdReadyGuard<'_, RawFd>> {
    match fd {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}
