//! tickscope probe writer for Rust: the same ring files as the Python and C probes, read by
//! `tickscope profile` / `tickscope live`. Std only, no dependencies by default.
//!
//! Declare the points once as an enum ([`points!`]), build one [`Probe`] and record from any
//! thread: each thread gets its own ring on its first record, and a trace may hop threads.
//!
//! ```
//! use tickscope_probe::{points, Point, Probe};
//!
//! points! {
//!     /// One tick's journey through the trader.
//!     pub enum Tick {
//!         Rx = "md.rx",
//!         Decoded = Point::new("md.decoded").stage("feed"),
//!         Signal = Point::new("signal").stage("strategy"),
//!         Sent = Point::new("order.tx").stage("send").trade(),
//!     }
//! }
//!
//! fn main() -> Result<(), tickscope_probe::Error> {
//! #   let dir = std::env::temp_dir().join(format!("tsp-doc-crate-{}", std::process::id()));
//! #   std::env::set_var("TICKSCOPE_RING_DIR", &dir);
//!     let probe = Probe::<Tick>::new("trader")?; // checks the points; opens no ring yet
//!     let (tx, rx) = std::sync::mpsc::channel();
//!     let orders = {
//!         let probe = probe.clone();
//!         std::thread::spawn(move || {
//!             for trace in rx {
//!                 probe.record(Tick::Sent, trace); // this thread's ring, opened here
//!             }
//!         })
//!     };
//!     for trace in 1..=100u64 {
//!         {
//!             let _feed = probe.stage(Tick::Rx, Tick::Decoded, trace); // md.rx stamped now
//!             // ... decode ...
//!         } // md.decoded stamped here
//!         probe.record(Tick::Signal, trace);
//!         tx.send(trace).unwrap(); // the trace continues on the order thread
//!     }
//!     drop(tx);
//!     orders.join().unwrap();
//! #   drop(probe); let _ = std::fs::remove_dir_all(&dir);
//!     Ok(())
//! }
//! ```
//!
//! Run it under `tickscope profile -- ./trader`: the collector joins each trace's stamps across
//! the two threads' rings. Run alone, a ring nobody drained is removed when its writer closes,
//! and what it dropped is said once on stderr.
//!
//! The single-thread writers below it, [`PointWriter`] (one 32-byte record per point) and
//! [`TickWriter`] (one record per tick), are what a `Probe` uses per thread; use them directly
//! on a thread you own for the last nanosecond:
//!
//! ```no_run
//! use tickscope_probe::{dims, Point, PointWriter, TickWriter};
//!
//! let points = [Point::new("md.rx"), Point::new("md.decoded").stage("feed"),
//!               Point::new("order.tx").stage("send").trade()];
//! let mut probe = PointWriter::open("trader", &points, 1 << 16)?;
//! probe.record(0, 42, 0, 0);       // point 0 of trace 42 (leg 0, no dimension value), now:
//!                                  // rdtsc + one 32-byte store + head
//! let mut tick = TickWriter::open("trader-ticks", &points, 1 << 14)?;
//! tick.stamp(0);                   // rdtsc into the tick in progress
//! tick.stamp(1);
//! tick.commit(42, 0, 0);           // one record per tick
//! let mut legs = PointWriter::open_dims("orders", &[Point::new("order.tx").trade().leg()],
//!                                       &["venue", "side"], 1 << 14)?;
//! let buy = dims([legs.intern("venue", "XNAS"), legs.intern("side", "buy"), 0, 0]); // once
//! legs.record(0, 42, 1, buy);      // leg 1 of trace 42: one tick, several orders
//! probe.heartbeat();               // from an idle path: liveness + a calibration pair
//! # Ok::<(), tickscope_probe::Error>(())
//! ```
//!
//! A writer belongs to one thread (single producer; it is neither `Send` nor `Sync`, so open it on
//! the thread that stamps: the ring records that thread's id) and never blocks nor allocates after `open`:
//! a full ring drops the newest record and counts it in the ring header. Opening never sleeps:
//! the second calibration pair of a ring is stored 20 ms later by a background thread.
//!
//! Probes are compiled in by the default feature `enable`. Built without it (`default-features =
//! false` on every dependency on this crate), the same types keep the same methods with empty
//! bodies: every probe call compiles to nothing and `open` creates no file. The feature is additive,
//! so one crate of a binary that asks for probes has them, whatever the others say.
//!
//! A service already instrumented with `tracing` gets the same records from spans and events
//! through the companion crate `tickscope-probe-tracing` (probe/rust/tracing), a
//! `tracing-subscriber` layer; it is a crate of its own so that this one keeps building offline
//! with no registry at all.

#![deny(missing_docs)]
// Without `enable` the ring machinery and the method arguments go unused; the default build is the
// one that checks them.
#![cfg_attr(not(feature = "enable"), allow(dead_code, unused_variables))]

#[cfg(feature = "enable")]
mod calibrator;
mod clock;
mod error;
pub mod layout;
mod point;
mod probe;
#[cfg(feature = "enable")]
mod ring;
mod sys;
mod typed;
mod writer;

pub use clock::{native_clock, rdtsc, rdtscp, tsc_invariant, tsc_trusted, ClockDomain};
pub use error::Error;
pub use point::Point;
pub use probe::{Probe, ProbeBuilder, StageGuard};
pub use typed::Points;
pub use writer::{PointWriter, TickWriter};

/// Where rings go unless `$TICKSCOPE_RING_DIR` says otherwise.
///
/// ```
/// assert_eq!(tickscope_probe::DEFAULT_RING_DIR, "/dev/shm/tickscope");
/// ```
pub const DEFAULT_RING_DIR: &str = "/dev/shm/tickscope";

/// The dims word of dimension value ids by slot (`intern` ids; 0 = no value for that dimension).
///
/// ```
/// assert_eq!(tickscope_probe::dims([1, 2, 0, 0]), 1 | 2 << 16);
/// ```
#[inline(always)]
pub const fn dims(ids: [u16; 4]) -> u64 {
    ids[0] as u64 | (ids[1] as u64) << 16 | (ids[2] as u64) << 32 | (ids[3] as u64) << 48
}

/// Whether probes are compiled in (the `enable` feature).
///
/// ```
/// if !tickscope_probe::ENABLED {
///     eprintln!("built without probes: every probe call is a no-op");
/// }
/// ```
pub const ENABLED: bool = cfg!(feature = "enable");

/// Where writers create rings: `$TICKSCOPE_RING_DIR` (set by `tickscope profile`) or
/// [`DEFAULT_RING_DIR`].
///
/// ```
/// std::env::set_var("TICKSCOPE_RING_DIR", "/tmp/rings");
/// assert_eq!(tickscope_probe::ring_dir(), std::path::Path::new("/tmp/rings"));
/// ```
pub fn ring_dir() -> std::path::PathBuf {
    match std::env::var_os("TICKSCOPE_RING_DIR") {
        Some(d) if !d.is_empty() => d.into(),
        _ => DEFAULT_RING_DIR.into(),
    }
}
