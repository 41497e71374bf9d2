//! The `off` feature: the same API, every method an empty inline function, `open` creates no file.
//! Arguments are still validated (a bad capacity or point list is a bug whether probes are on or not).

use crate::clock::{native_clock, ClockDomain};
use crate::error::Error;
use crate::point::{to_points, validate_capacity, Point};
use std::marker::PhantomData;
use std::path::Path;

macro_rules! off_writer {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $name {
            // Zero-sized, and !Send like the real writer, so code that builds `off` builds on.
            _one_thread: PhantomData<*const ()>,
        }

        impl $name {
            pub fn open<'a, P: Clone + Into<Point<'a>>>(
                _name: &str,
                points: &[P],
                capacity: u64,
            ) -> Result<Self, Error> {
                validate_capacity(capacity)?;
                to_points(points)?;
                Ok($name { _one_thread: PhantomData })
            }

            pub fn open_in<'a, P: Clone + Into<Point<'a>>>(
                _dir: impl AsRef<Path>,
                name: &str,
                points: &[P],
                capacity: u64,
            ) -> Result<Self, Error> {
                Self::open(name, points, capacity)
            }

            #[inline(always)]
            pub fn now(&self) -> u64 {
                0
            }

            pub fn clock(&self) -> ClockDomain {
                native_clock()
            }

            #[inline(always)]
            pub fn heartbeat(&mut self) {}

            #[inline(always)]
            pub fn collector_alive(&self, _max_age_ns: u64) -> bool {
                false
            }

            #[inline(always)]
            pub fn dropped(&self) -> u64 {
                0
            }

            #[inline(always)]
            pub fn written(&self) -> u64 {
                0
            }

            /// No ring file exists with the `off` feature: an empty path.
            pub fn path(&self) -> &Path {
                Path::new("")
            }

            #[inline(always)]
            pub fn close(self) {}
        }
    };
}

off_writer!(PointWriter, "Compiled out (`off` feature): every call is a no-op.");
off_writer!(TickWriter, "Compiled out (`off` feature): every call is a no-op.");

impl PointWriter {
    /// Compiled out: records nothing, loses nothing.
    #[inline(always)]
    pub fn record(&mut self, _point: u32, _trace_id: u64, _aux: u64) -> bool {
        true
    }

    #[inline(always)]
    pub fn record_ts(&mut self, _point: u32, _trace_id: u64, _ts: u64, _aux: u64) -> bool {
        true
    }
}

impl TickWriter {
    #[inline(always)]
    pub fn stamp(&mut self, _i: u32) {}

    #[inline(always)]
    pub fn stamp_ts(&mut self, _i: u32, _ts: u64) {}

    #[inline(always)]
    pub fn commit(&mut self, _trace_id: u64, _aux: u64) -> bool {
        true
    }
}
