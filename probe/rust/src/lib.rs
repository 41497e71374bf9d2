//! tickscope probe writer for Rust: the same ring files as the Python and C probes, read by
//! `tickscope profile` / `tickscope live`. Std only, no dependencies.
//!
//! ```no_run
//! use tickscope_probe::{Point, PointWriter, TickWriter};
//!
//! let points = [Point::new("md.rx"), Point::new("md.decoded").stage("feed"),
//!               Point::new("order.tx").stage("send").trade()];
//! let mut probe = PointWriter::open("trader", &points, 1 << 16)?;
//! probe.record(0, 42, 0);          // point 0 of trace 42, now: rdtsc + one 32-byte store + head
//! let mut tick = TickWriter::open("trader-ticks", &points, 1 << 14)?;
//! tick.stamp(0);                   // rdtsc into the tick in progress
//! tick.stamp(1);
//! tick.commit(42, 0);              // one record per tick
//! probe.heartbeat();               // from an idle path: liveness + a calibration pair
//! # Ok::<(), tickscope_probe::Error>(())
//! ```
//!
//! A writer belongs to one thread (single producer; it is neither `Send` nor `Sync`, so open it on
//! the thread that stamps: the ring records that thread's id) and never blocks nor allocates after `open`:
//! a full ring drops the newest record and counts it in the ring header. With the `off` feature
//! every method compiles to nothing and `open` creates no file.

// With `off`, the ring machinery is unused but still compiled, so both builds check it.
#![cfg_attr(feature = "off", allow(dead_code))]

mod clock;
mod error;
pub mod layout;
mod point;
mod sys;

#[cfg(not(feature = "off"))]
mod ring;
#[cfg(not(feature = "off"))]
mod writer;

#[cfg(feature = "off")]
mod off;

pub use clock::{native_clock, rdtsc, rdtscp, tsc_invariant, ClockDomain};
pub use error::Error;
pub use point::Point;

#[cfg(not(feature = "off"))]
pub use writer::{PointWriter, TickWriter};

#[cfg(feature = "off")]
pub use off::{PointWriter, TickWriter};

/// Whether probes are compiled in (false with the `off` feature).
pub const ENABLED: bool = !cfg!(feature = "off");

/// Where writers create rings: `$TICKSCOPE_RING_DIR` (set by `tickscope profile`) or
/// `/dev/shm/tickscope`.
pub fn ring_dir() -> std::path::PathBuf {
    match std::env::var_os("TICKSCOPE_RING_DIR") {
        Some(d) if !d.is_empty() => d.into(),
        _ => "/dev/shm/tickscope".into(),
    }
}
