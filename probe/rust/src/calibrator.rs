//! The second calibration pair of every ring, 20 ms after its first, stored by one background
//! thread: two pairs give the collector a TSC rate even for a writer that never heartbeats (and
//! a collector that cannot read the TSC itself), and opening a ring no longer sleeps on the
//! thread that opens it, which may be a runtime worker.

use crate::ring::Shared;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// How far apart the two opening pairs are: long enough that clock-read jitter (~100 ns) is a
/// rate error of a few ppm, short enough that a short run still gets both.
const SECOND_PAIR_AFTER: Duration = Duration::from_millis(20);

struct Queue {
    due: Vec<(Instant, Weak<Shared>)>,
    thread_started: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { due: Vec::new(), thread_started: false });
static WAKE: Condvar = Condvar::new();

/// Schedules `ring`'s second pair. A ring closed or dropped by then is skipped (its close took a
/// pair). If no thread can be spawned the writer still works: the collector pools its own pairs
/// and the closing pair.
pub(crate) fn second_pair(ring: &Arc<Shared>) {
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    q.due.push((Instant::now() + SECOND_PAIR_AFTER, Arc::downgrade(ring)));
    if !q.thread_started {
        q.thread_started = std::thread::Builder::new().name("tickscope-calib".into()).spawn(run).is_ok();
    }
    WAKE.notify_one();
}

fn run() {
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        // Rings are queued in open order with the same delay: the first is the earliest due.
        match q.due.first().map(|(at, _)| *at) {
            None => q = WAKE.wait(q).unwrap_or_else(|e| e.into_inner()),
            Some(at) if at > now => {
                q = WAKE.wait_timeout(q, at - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            Some(_) => {
                let (_, ring) = q.due.remove(0);
                drop(q); // never hold the queue while waiting for a ring's lock
                if let Some(ring) = ring.upgrade() {
                    ring.calibrate_if_open();
                }
                q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}
