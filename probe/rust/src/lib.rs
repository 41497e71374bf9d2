//! tickscope probe writer for Rust: the same ring files as the Python and C probes, read by
//! `tickscope profile` / `tickscope live`. Std only, no dependencies.
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
//! a full ring drops the newest record and counts it in the ring header.
//!
//! Probes are compiled in by the default feature `enable`. Built without it (`default-features =
//! false` on every dependency on this crate), the same types keep the same methods with empty
//! bodies: every probe call compiles to nothing and `open` creates no file. The feature is additive,
//! so one crate of a binary that asks for probes has them, whatever the others say.

// Without `enable` the ring machinery and the method arguments go unused; the default build is the
// one that checks them.
#![cfg_attr(not(feature = "enable"), allow(dead_code, unused_variables))]

mod clock;
mod error;
pub mod layout;
mod point;
#[cfg(feature = "enable")]
mod ring;
mod sys;
mod writer;

pub use clock::{native_clock, rdtsc, rdtscp, tsc_invariant, tsc_trusted, ClockDomain};
pub use error::Error;
pub use point::Point;
pub use writer::{PointWriter, TickWriter};

/// The dims word of dimension value ids by slot (`intern` ids; 0 = no value for that dimension).
#[inline(always)]
pub const fn dims(ids: [u16; 4]) -> u64 {
    ids[0] as u64 | (ids[1] as u64) << 16 | (ids[2] as u64) << 32 | (ids[3] as u64) << 48
}

/// Whether probes are compiled in (the `enable` feature).
pub const ENABLED: bool = cfg!(feature = "enable");

/// Where writers create rings: `$TICKSCOPE_RING_DIR` (set by `tickscope profile`) or
/// `/dev/shm/tickscope`.
pub fn ring_dir() -> std::path::PathBuf {
    match std::env::var_os("TICKSCOPE_RING_DIR") {
        Some(d) if !d.is_empty() => d.into(),
        _ => "/dev/shm/tickscope".into(),
    }
}
