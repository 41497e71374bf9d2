//! The two writers: `PointWriter` (one 32-byte record per point) and `TickWriter` (one record per
//! tick holding a stamp for every declared point). Both publish with a release store of `head`,
//! drop the newest record when the ring is full and count it in `dropped_full`.
//!
//! Without the `enable` feature the writers keep every method, with an empty body, and no fields
//! but a marker: `open` still checks its arguments (a bad capacity or point list is a bug whether
//! probes are compiled in or not) and then creates nothing.

use crate::clock::{self, ClockDomain};
use crate::error::Error;
use crate::point::{to_points, validate_capacity, validate_dims, Point};
use std::marker::PhantomData;
use std::path::Path;
#[cfg(feature = "enable")]
use {
    crate::layout::{self as L, PointRecord},
    crate::ring::RingFile,
    std::sync::atomic::Ordering,
};

/// Keeps a writer `!Send` and `!Sync` in both builds (with `enable`, its raw pointers would do it
/// alone), so code that builds without probes builds with them.
type OneThread = PhantomData<*const ()>;

#[cfg(feature = "enable")]
#[cold]
#[inline(never)]
fn undeclared(point: u32, n_points: u32) -> ! {
    panic!("point id {point} not declared: this ring has {n_points} points")
}

/// Producer-side bookkeeping common to both writers: `head` is kept locally (never re-read from
/// shared memory) and `tail` is re-read only when `head` reaches `limit`, once per lap at most
/// while the collector keeps up.
#[cfg(feature = "enable")]
struct Cursor {
    head: u64,
    limit: u64,
}

#[cfg(feature = "enable")]
impl Cursor {
    /// Re-reads the consumer's tail; false (and one more drop counted) if the ring is still full.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, ring: &RingFile) -> bool {
        self.limit = ring.u64_at(L::OFF_TAIL).load(Ordering::Acquire) + ring.capacity;
        self.head < self.limit
    }

    #[cold]
    #[inline(never)]
    fn count_drop(ring: &RingFile) {
        let dropped = ring.u64_at(L::OFF_DROPPED_FULL);
        // Only this writer stores it, so load + store is an increment; Relaxed: it orders nothing.
        dropped.store(dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// The four ways to open a writer, all through `create` once the arguments are checked (the
/// same rules with probes compiled in or not: a bad capacity or point list is a bug either way).
macro_rules! open_methods {
    ($t:ident) => {
        /// Creates a ring in [`ring_dir()`](crate::ring_dir) for `points` (ids are their positions).
        ///
        /// ```
        #[doc = concat!("use tickscope_probe::", stringify!($t), ";")]
        /// # let dir = std::env::temp_dir().join(format!("tsp-doc-{}", std::process::id()));
        /// # std::env::set_var("TICKSCOPE_RING_DIR", &dir);
        #[doc = concat!("let w = ", stringify!($t), "::open(\"trader\", &[\"md.rx\", \"order.tx\"], 1 << 10)?;")]
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn open<'a, P: Clone + Into<Point<'a>>>(name: &str, points: &[P], capacity: u64) -> Result<Self, Error> {
            Self::open_in_dims(crate::ring_dir(), name, points, &[], capacity)
        }

        /// As `open`, in `dir`.
        ///
        /// ```
        #[doc = concat!("use tickscope_probe::", stringify!($t), ";")]
        /// let dir = std::env::temp_dir().join(format!("tsp-doc-in-{}", std::process::id()));
        #[doc = concat!("let w = ", stringify!($t), "::open_in(&dir, \"trader\", &[\"md.rx\"], 1 << 10)?;")]
        /// assert!(w.path().starts_with(&dir) || !tickscope_probe::ENABLED);
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn open_in<'a, P: Clone + Into<Point<'a>>>(
            dir: impl AsRef<Path>,
            name: &str,
            points: &[P],
            capacity: u64,
        ) -> Result<Self, Error> {
            Self::open_in_dims(dir, name, points, &[], capacity)
        }

        /// As `open`, declaring dimensions too (at most 4): `dims[k]` is slot k of the dims word.
        ///
        /// ```
        #[doc = concat!("use tickscope_probe::", stringify!($t), ";")]
        /// # let dir = std::env::temp_dir().join(format!("tsp-doc-dims-{}", std::process::id()));
        /// # std::env::set_var("TICKSCOPE_RING_DIR", &dir);
        #[doc = concat!("let w = ", stringify!($t), "::open_dims(\"orders\", &[\"order.tx\"], &[\"venue\"], 1 << 10)?;")]
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn open_dims<'a, P: Clone + Into<Point<'a>>>(
            name: &str,
            points: &[P],
            dims: &[&str],
            capacity: u64,
        ) -> Result<Self, Error> {
            Self::open_in_dims(crate::ring_dir(), name, points, dims, capacity)
        }

        /// As `open_dims`, in `dir`.
        ///
        /// ```
        #[doc = concat!("use tickscope_probe::", stringify!($t), ";")]
        /// let dir = std::env::temp_dir().join(format!("tsp-doc-in-dims-{}", std::process::id()));
        #[doc = concat!("let w = ", stringify!($t), "::open_in_dims(&dir, \"orders\", &[\"order.tx\"], &[\"venue\"], 1 << 10)?;")]
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn open_in_dims<'a, P: Clone + Into<Point<'a>>>(
            dir: impl AsRef<Path>,
            name: &str,
            points: &[P],
            dims: &[&str],
            capacity: u64,
        ) -> Result<Self, Error> {
            validate_capacity(capacity)?;
            validate_dims(dims)?;
            let points = to_points(points)?;
            Self::create(dir.as_ref(), name, &points, dims, capacity)
        }
    };
}

macro_rules! common_methods {
    ($t:ident) => {
        /// The writer's clock now (TSC ticks, or CLOCK_MONOTONIC ns where the TSC is not trusted):
        /// the stamp `record`/`stamp` would take, for `record_ts`/`stamp_ts` later.
        /// Without `enable`: 0.
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// let t0 = w.now();
        /// assert!(w.now() >= t0);
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        #[inline(always)]
        pub fn now(&self) -> u64 {
            #[cfg(feature = "enable")]
            {
                clock::read(self.ring.clock)
            }
            #[cfg(not(feature = "enable"))]
            {
                0
            }
        }

        /// The clock domain of `now()` and of every point declared without its own clock.
        /// Without `enable`: the clock a writer would stamp with.
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// assert_eq!(w.clock(), tickscope_probe::native_clock());
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn clock(&self) -> ClockDomain {
            #[cfg(feature = "enable")]
            {
                self.ring.clock
            }
            #[cfg(not(feature = "enable"))]
            {
                clock::native_clock()
            }
        }

        /// From an idle path: tells the collector this writer is alive though quiet, and stores a
        /// fresh calibration pair (call it every few hundred ms; it reads four clocks).
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// w.heartbeat(); // e.g. from an idle path every few hundred ms
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        #[inline(always)]
        pub fn heartbeat(&mut self) {
            #[cfg(feature = "enable")]
            self.ring.heartbeat();
        }

        /// Whether a collector drained this ring within `max_age_ns` (else records pile up and drop).
        /// Without `enable`: false.
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// assert!(!w.collector_alive(2_000_000_000), "no collector drains this ring");
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        #[inline(always)]
        pub fn collector_alive(&self, max_age_ns: u64) -> bool {
            #[cfg(feature = "enable")]
            {
                self.ring.collector_alive(max_age_ns)
            }
            #[cfg(not(feature = "enable"))]
            {
                false
            }
        }

        /// Records dropped because the ring was full (without `enable`: 0).
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// assert_eq!(w.dropped(), 0);
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        #[inline(always)]
        pub fn dropped(&self) -> u64 {
            #[cfg(feature = "enable")]
            {
                self.ring.u64_at(L::OFF_DROPPED_FULL).load(Ordering::Relaxed)
            }
            #[cfg(not(feature = "enable"))]
            {
                0
            }
        }

        /// Records published so far (without `enable`: 0).
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// assert_eq!(w.written(), 0);
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        #[inline(always)]
        pub fn written(&self) -> u64 {
            #[cfg(feature = "enable")]
            {
                self.cursor.head
            }
            #[cfg(not(feature = "enable"))]
            {
                0
            }
        }

        /// The ring file (the collector removes it after draining a closed ring). Without
        /// `enable` no file exists: an empty path.
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// assert!(w.path().starts_with(&dir) || !tickscope_probe::ENABLED);
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn path(&self) -> &Path {
            #[cfg(feature = "enable")]
            {
                &self.ring.path
            }
            #[cfg(not(feature = "enable"))]
            {
                Path::new("")
            }
        }

        /// The id of `value` of dimension `dim` (declared at open), interned into the ring the
        /// first time: call it off the hot path and keep the id for `dims`. 0 (no value) when
        /// `dim` is not declared, `value` is empty or longer than 28 bytes, or the ring's table of
        /// 4096 values is full. Without `enable`: 0.
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// assert_eq!(w.intern("venue", "XNAS"), 0, "no dimension venue declared");
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        pub fn intern(&mut self, dim: &str, value: &str) -> u16 {
            #[cfg(feature = "enable")]
            {
                match self.dims.iter().position(|d| d == dim) {
                    Some(slot) => self.ring.intern(slot, value),
                    None => 0,
                }
            }
            #[cfg(not(feature = "enable"))]
            {
                0
            }
        }

        /// Marks the ring cleanly closed and unmaps it (dropping the writer does the same).
        ///
        /// ```
        #[doc = concat!("# let dir = std::env::temp_dir().join(format!(\"tsp-doc-{}-{}\", \"", stringify!($t), "\", std::process::id()));")]
        #[doc = concat!("let mut w = tickscope_probe::", stringify!($t), "::open_in(&dir, \"doc\", &[\"md.rx\"], 4)?;")]
        /// w.close();
        /// # let w = ();
        /// # drop(w); let _ = std::fs::remove_dir_all(&dir);
        /// # Ok::<(), tickscope_probe::Error>(())
        /// ```
        #[inline(always)]
        pub fn close(self) {}
    };
}

/// One 32-byte record per probe point: `record(point_id, trace_id, leg, dims)`.
///
/// ```
/// use tickscope_probe::PointWriter;
/// # let dir = std::env::temp_dir().join(format!("tsp-doc-w-{}", std::process::id()));
/// let mut w = PointWriter::open_in(&dir, "feed", &["md.rx", "md.decoded"], 1 << 10)?;
/// w.record(0, 42, 0, 0); // md.rx of trace 42
/// w.record(1, 42, 0, 0); // md.decoded of trace 42
/// # drop(w);
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), tickscope_probe::Error>(())
/// ```
pub struct PointWriter {
    #[cfg(feature = "enable")]
    ring: RingFile,
    #[cfg(feature = "enable")]
    dims: Vec<String>,
    #[cfg(feature = "enable")]
    records: *mut PointRecord,
    #[cfg(feature = "enable")]
    mask: u64,
    #[cfg(feature = "enable")]
    cursor: Cursor,
    _one_thread: OneThread,
}

impl PointWriter {
    open_methods!(PointWriter);

    fn create(
        dir: &Path,
        name: &str,
        points: &[Point<'_>],
        dims: &[&str],
        capacity: u64,
    ) -> Result<Self, Error> {
        #[cfg(feature = "enable")]
        {
            let ring = RingFile::create(dir, name, points, dims, L::KIND_POINT, capacity)?;
            let records = ring.data() as *mut PointRecord;
            Ok(PointWriter {
                ring,
                dims: dims.iter().map(|d| d.to_string()).collect(),
                records,
                mask: capacity - 1,
                cursor: Cursor { head: 0, limit: capacity },
                _one_thread: PhantomData,
            })
        }
        #[cfg(not(feature = "enable"))]
        {
            Ok(PointWriter { _one_thread: PhantomData })
        }
    }

    /// Stamps `point` of `trace_id` now. `leg` names the leg (order) of the trace a per-leg point
    /// belongs to (0 for a trace of one order; ignored on shared points); `dims` attaches
    /// dimension values (`tickscope_probe::dims` of `intern` ids, 0 = none). Returns false if the
    /// ring was full (the record is dropped and counted). Panics if `point` was not declared.
    /// Without `enable`: records nothing, loses nothing (true).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-rec-{}", std::process::id()));
    /// let mut w = tickscope_probe::PointWriter::open_in(&dir, "feed", &["md.rx"], 2)?;
    /// assert!(w.record(0, 1, 0, 0) && w.record(0, 2, 0, 0));
    /// assert!(!w.record(0, 3, 0, 0) || !tickscope_probe::ENABLED, "full: dropped and counted");
    /// # drop(w);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn record(&mut self, point: u32, trace_id: u64, leg: u16, dims: u64) -> bool {
        let ts = self.now();
        self.record_ts(point, trace_id, ts, leg, dims)
    }

    /// As `record`, with a stamp taken earlier (`now()`) or from another clock the point declared.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-rts-{}", std::process::id()));
    /// let mut w = tickscope_probe::PointWriter::open_in(&dir, "feed", &["md.rx", "md.decoded"], 1 << 10)?;
    /// let rx = w.now();
    /// // ... decode ...
    /// w.record_ts(0, 42, rx, 0, 0);
    /// w.record(1, 42, 0, 0);
    /// # drop(w);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn record_ts(&mut self, point: u32, trace_id: u64, ts: u64, leg: u16, dims: u64) -> bool {
        #[cfg(feature = "enable")]
        {
            if point >= self.ring.n_points {
                undeclared(point, self.ring.n_points);
            }
            let h = self.cursor.head;
            if h >= self.cursor.limit && !self.cursor.make_room(&self.ring) {
                Cursor::count_drop(&self.ring);
                return false;
            }
            // point < n_points <= MAX_POINTS (checked above): it fits the record's u16.
            let record =
                PointRecord { ts, trace_id, point_id: point as u16, leg, thread_id: self.ring.tid, dims };
            // SAFETY: `h & mask < capacity`, so the slot lies in the records area of the live mapping
            // (32-byte aligned: DATA_OFFSET and the record size are multiples of 32). `h < tail +
            // capacity` (checked above against `limit`), so the consumer has released this slot and
            // reads it only after the release store of `head` below.
            unsafe { self.records.add((h & self.mask) as usize).write(record) };
            self.cursor.head = h + 1;
            self.ring.u64_at(L::OFF_HEAD).store(h + 1, Ordering::Release);
            true
        }
        #[cfg(not(feature = "enable"))]
        {
            true
        }
    }

    common_methods!(PointWriter);
}

/// One record per tick: `stamp(i)` for each point reached, then `commit(trace_id, leg, dims)`.
///
/// Stamps go straight into the free slot the commit will publish (the collector zeroes slots it
/// has drained), so a stamp is one `rdtsc` and one store, and a commit three stores. A tick that
/// begins on a full ring stamps into a scratch vector and is dropped at commit if no room appeared.
///
/// ```
/// use tickscope_probe::TickWriter;
/// # let dir = std::env::temp_dir().join(format!("tsp-doc-w-{}", std::process::id()));
/// let mut t = TickWriter::open_in(&dir, "ticks", &["md.rx", "order.tx"], 1 << 10)?;
/// t.stamp(0);
/// t.stamp(1);
/// t.commit(42, 0, 0); // one record: both stamps of trace 42
/// # drop(t);
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), tickscope_probe::Error>(())
/// ```
pub struct TickWriter {
    #[cfg(feature = "enable")]
    ring: RingFile,
    #[cfg(feature = "enable")]
    dims: Vec<String>,
    #[cfg(feature = "enable")]
    n: usize,
    #[cfg(feature = "enable")]
    current: *mut u64,
    #[cfg(feature = "enable")]
    scratch: Vec<u64>, // a Vec, not a Box: `current` may point into it while it is not borrowed
    #[cfg(feature = "enable")]
    on_scratch: bool,
    #[cfg(feature = "enable")]
    cursor: Cursor,
    _one_thread: OneThread,
}

impl TickWriter {
    open_methods!(TickWriter);

    fn create(
        dir: &Path,
        name: &str,
        points: &[Point<'_>],
        dims: &[&str],
        capacity: u64,
    ) -> Result<Self, Error> {
        #[cfg(feature = "enable")]
        {
            let ring = RingFile::create(dir, name, points, dims, L::KIND_TICK, capacity)?;
            let n = points.len();
            let current = ring.data() as *mut u64;
            Ok(TickWriter {
                ring,
                dims: dims.iter().map(|d| d.to_string()).collect(),
                n,
                current,
                scratch: vec![0u64; n + 3],
                on_scratch: false,
                cursor: Cursor { head: 0, limit: capacity },
                _one_thread: PhantomData,
            })
        }
        #[cfg(not(feature = "enable"))]
        {
            Ok(TickWriter { _one_thread: PhantomData })
        }
    }

    /// Stamps point `i` of the tick in progress now. Panics if `i` was not declared.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-st-{}", std::process::id()));
    /// let mut t = tickscope_probe::TickWriter::open_in(&dir, "ticks", &["md.rx"], 4)?;
    /// t.stamp(0);
    /// t.commit(1, 0, 0);
    /// # drop(t);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn stamp(&mut self, i: u32) {
        let ts = self.now();
        self.stamp_ts(i, ts);
    }

    /// As `stamp`, with a stamp taken earlier or from the point's own clock.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-sts-{}", std::process::id()));
    /// let mut t = tickscope_probe::TickWriter::open_in(&dir, "ticks", &["md.rx", "order.tx"], 4)?;
    /// let rx = t.now();
    /// t.stamp_ts(0, rx);
    /// t.stamp(1);
    /// t.commit(1, 0, 0);
    /// # drop(t);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn stamp_ts(&mut self, i: u32, ts: u64) {
        #[cfg(feature = "enable")]
        {
            if i as usize >= self.n {
                undeclared(i, self.n as u32);
            }
            // SAFETY: `current` is either the scratch vector (n + 3 u64) or the slot at `head`, which
            // `head < limit <= tail + capacity` makes this writer's until it is published; i < n.
            unsafe { self.current.add(i as usize).write(ts) };
        }
    }

    /// Publishes the tick as `trace_id` (leg `leg`, attaching the dims word `dims`); the next
    /// `stamp` starts the next tick. Returns false if the ring was full (the tick is dropped and
    /// counted). Without `enable`: true.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-co-{}", std::process::id()));
    /// let mut t = tickscope_probe::TickWriter::open_in(&dir, "ticks", &["md.rx"], 4)?;
    /// t.stamp(0);
    /// assert!(t.commit(7, 0, 0));
    /// assert_eq!(t.written(), if tickscope_probe::ENABLED { 1 } else { 0 });
    /// # drop(t);
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn commit(&mut self, trace_id: u64, leg: u16, dims: u64) -> bool {
        #[cfg(feature = "enable")]
        {
            if self.on_scratch && !self.land_scratch() {
                return false;
            }
            let v = self.current;
            // SAFETY: `v` is the slot at `head` (see `stamp_ts`); its trailer is the 3 u64 after the
            // n stamps, inside the record.
            unsafe {
                v.add(self.n).write(trace_id);
                v.add(self.n + 1).write(leg as u64);
                v.add(self.n + 2).write(dims);
            }
            let h = self.cursor.head + 1;
            self.cursor.head = h;
            self.ring.u64_at(L::OFF_HEAD).store(h, Ordering::Release);
            if h < self.cursor.limit {
                self.current = self.slot(h);
            } else {
                self.next_vector();
            }
            true
        }
        #[cfg(not(feature = "enable"))]
        {
            true
        }
    }

    common_methods!(TickWriter);
}

#[cfg(feature = "enable")]
impl PointWriter {
    /// The half of the ring a `Probe` keeps, to close it if this thread never drops the writer.
    pub(crate) fn shared(&self) -> &std::sync::Arc<crate::ring::Shared> {
        self.ring.shared()
    }
}

/// The tick writer's slow paths, which exist only with a ring.
#[cfg(feature = "enable")]
impl TickWriter {
    #[inline(always)]
    fn slot(&self, head: u64) -> *mut u64 {
        let offset = (head & (self.ring.capacity - 1)) as usize * self.ring.record_size;
        // SAFETY: offset < capacity * record_size: inside the records area of the live mapping.
        unsafe { self.ring.data().add(offset) as *mut u64 }
    }

    /// The vector for the next tick when `head` reached `limit`: the slot if the collector freed
    /// one, else the zeroed scratch vector.
    #[cold]
    #[inline(never)]
    fn next_vector(&mut self) {
        if self.cursor.make_room(&self.ring) {
            self.current = self.slot(self.cursor.head);
            self.on_scratch = false;
        } else {
            self.scratch.fill(0);
            self.current = self.scratch.as_mut_ptr();
            self.on_scratch = true;
        }
    }

    /// The tick began on a full ring: copy it into a slot if room appeared since, else drop it.
    #[cold]
    #[inline(never)]
    fn land_scratch(&mut self) -> bool {
        if !self.cursor.make_room(&self.ring) {
            Cursor::count_drop(&self.ring);
            self.scratch.fill(0);
            self.current = self.scratch.as_mut_ptr();
            return false;
        }
        let slot = self.slot(self.cursor.head);
        // SAFETY: the slot at `head` is this writer's (just checked against the fresh tail) and
        // holds n + 3 u64; the scratch vector is a separate allocation of n + 3 u64.
        unsafe { std::ptr::copy_nonoverlapping(self.scratch.as_ptr(), slot, self.n) };
        self.current = slot;
        self.on_scratch = false;
        true
    }
}
