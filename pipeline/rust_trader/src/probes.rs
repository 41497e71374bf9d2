//! The trader's two probe writers behind handles: `Ticks` (the tick ring) and `Orders` (the
//! orders ring), with the writers' own method names.
//!
//! Busy-poll build: a handle owns its writer. Tokio build (`tokio-loop`, tokio/Cargo.toml): a
//! writer is not `Send` (it owns a raw pointer into its ring), so a trader holding one could not
//! be a tokio task; the handle is then an empty `Send` token and each runtime thread keeps its own
//! writer in a `thread_local!`, opened on that thread's first use from the declaration stored at
//! `open`, and dimension values are interned once for every thread, as the probe crate's `Probe`
//! does (docs/instrumenting.md "Rust on tokio").
//!
//! Why not `Probe` itself: it writes a record per point, and the tick ring is one record per tick
//! (a stamp vector committed once, with dims known only at the commit); a `Probe::record` costs
//! 12.0 ns here against 7.8 ns for a tick `stamp` (`tickscope bench`), so six points and five
//! more records per tick would be the busy-poll hot path's price for a handle it does not need.

pub use imp::{Orders, Ticks};

#[cfg(not(feature = "tokio-loop"))]
mod imp {
    use tickscope_probe::{Error, Point, PointWriter, TickWriter};

    pub struct Ticks(TickWriter);

    impl Ticks {
        pub fn open_dims(
            name: &'static str,
            points: &[Point<'static>],
            dims: &'static [&'static str],
            capacity: u64,
        ) -> Result<Ticks, Error> {
            TickWriter::open_dims(name, points, dims, capacity).map(Ticks)
        }

        #[inline(always)]
        pub fn stamp(&mut self, i: u32) {
            self.0.stamp(i)
        }

        #[inline(always)]
        pub fn stamp_ts(&mut self, i: u32, ts: u64) {
            self.0.stamp_ts(i, ts)
        }

        #[inline(always)]
        pub fn commit(&mut self, trace_id: u64, leg: u16, dims: u64) -> bool {
            self.0.commit(trace_id, leg, dims)
        }

        pub fn intern(&mut self, dim: &str, value: &str) -> u16 {
            self.0.intern(dim, value)
        }

        pub fn heartbeat(&mut self) {
            self.0.heartbeat()
        }
    }

    pub struct Orders(PointWriter);

    impl Orders {
        pub fn open(name: &'static str, points: &[Point<'static>], capacity: u64) -> Result<Orders, Error> {
            PointWriter::open(name, points, capacity).map(Orders)
        }

        #[inline(always)]
        pub fn now(&self) -> u64 {
            self.0.now()
        }

        #[inline(always)]
        pub fn record(&mut self, point: u32, trace_id: u64, leg: u16, dims: u64) -> bool {
            self.0.record(point, trace_id, leg, dims)
        }

        #[inline(always)]
        pub fn record_ts(&mut self, point: u32, trace_id: u64, ts: u64, leg: u16, dims: u64) -> bool {
            self.0.record_ts(point, trace_id, ts, leg, dims)
        }

        pub fn heartbeat(&mut self) {
            self.0.heartbeat()
        }
    }
}

#[cfg(feature = "tokio-loop")]
mod imp {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::thread::LocalKey;
    use tickscope_probe::{Error, Point, PointWriter, TickWriter};

    /// What `open` declared: every thread opens its own ring from it.
    struct Declared {
        name: &'static str,
        points: Vec<Point<'static>>,
        dims: &'static [&'static str],
        capacity: u64,
    }

    enum Slot<W> {
        Unopened,
        Open(W),
        /// Opening failed on this thread (said once), or the handle was dropped: records from
        /// here are dropped, never retried on the hot path.
        Closed,
    }

    static TICKS_DECLARED: Mutex<Option<Declared>> = Mutex::new(None);
    static ORDERS_DECLARED: Mutex<Option<Declared>> = Mutex::new(None);

    /// Dimension values of the tick ring by id - 1, as `(dim, value)`: every thread's tick ring
    /// interns them in this order, so an id the trader keeps means the same value in every ring,
    /// whichever worker the trader's task runs on.
    static TICK_VALUES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    static N_TICK_VALUES: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        static TICKS: RefCell<Slot<TickWriter>> = const { RefCell::new(Slot::Unopened) };
        static ORDERS: RefCell<Slot<PointWriter>> = const { RefCell::new(Slot::Unopened) };
        /// How many of TICK_VALUES this thread's tick ring holds.
        static TICKS_SYNCED: Cell<usize> = const { Cell::new(0) };
    }

    /// Brings this thread's tick ring up to every value interned so far (on any thread).
    #[inline(always)]
    fn sync_values(w: &mut TickWriter) {
        if TICKS_SYNCED.with(Cell::get) < N_TICK_VALUES.load(Ordering::Acquire) {
            sync_values_slow(w);
        }
    }

    #[cold]
    fn sync_values_slow(w: &mut TickWriter) {
        sync_from(w, &TICK_VALUES.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn sync_from(w: &mut TickWriter, values: &[(String, String)]) {
        for (dim, value) in &values[TICKS_SYNCED.with(Cell::get)..] {
            w.intern(dim, value);
        }
        TICKS_SYNCED.with(|s| s.set(values.len()));
    }

    fn open_ticks(d: &Declared) -> Result<TickWriter, Error> {
        TickWriter::open_dims(d.name, &d.points, d.dims, d.capacity)
    }

    fn open_orders(d: &Declared) -> Result<PointWriter, Error> {
        PointWriter::open_dims(d.name, &d.points, d.dims, d.capacity)
    }

    /// Runs `f` on this thread's writer, opening it first if this thread has none yet; None when
    /// it cannot be had (the open failed, or the handle is gone).
    #[inline(always)]
    fn with<W: 'static, R>(
        key: &'static LocalKey<RefCell<Slot<W>>>,
        declared: &'static Mutex<Option<Declared>>,
        open: fn(&Declared) -> Result<W, Error>,
        f: impl FnOnce(&mut W) -> R,
    ) -> Option<R> {
        key.with(|cell| {
            let mut slot = cell.borrow_mut();
            if let Slot::Unopened = *slot {
                *slot = open_here(declared, open);
            }
            match &mut *slot {
                Slot::Open(w) => Some(f(w)),
                _ => None,
            }
        })
    }

    #[cold]
    fn open_here<W>(declared: &Mutex<Option<Declared>>, open: fn(&Declared) -> Result<W, Error>) -> Slot<W> {
        let guard = declared.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref().map(open) {
            Some(Ok(w)) => Slot::Open(w),
            Some(Err(e)) => {
                crate::log(&format!("probe ring on a runtime thread: {} (its records are dropped)", e));
                Slot::Closed
            }
            None => Slot::Closed,
        }
    }

    /// Stores the declaration and opens the ring on the calling thread now, so a start-up error
    /// is the trader's one-line error rather than a line from a worker later.
    fn declare<W: 'static>(
        key: &'static LocalKey<RefCell<Slot<W>>>,
        declared: &'static Mutex<Option<Declared>>,
        open: fn(&Declared) -> Result<W, Error>,
        d: Declared,
    ) -> Result<(), Error> {
        let w = open(&d)?;
        *declared.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
        key.with(|cell| *cell.borrow_mut() = Slot::Open(w));
        Ok(())
    }

    /// The handle's end closes the ring of the thread that drops it (the runtime's, with the
    /// current-thread runtime the trader uses) there and then: std does not promise to destroy
    /// the main thread's thread-locals (glibc does, at exit), and a ring never closed reads as a
    /// writer that died.
    fn close<W: 'static>(key: &'static LocalKey<RefCell<Slot<W>>>) {
        let _ = key.try_with(|cell| *cell.borrow_mut() = Slot::Closed);
    }

    pub struct Ticks(());

    impl Ticks {
        pub fn open_dims(
            name: &'static str,
            points: &[Point<'static>],
            dims: &'static [&'static str],
            capacity: u64,
        ) -> Result<Ticks, Error> {
            let d = Declared { name, points: points.to_vec(), dims, capacity };
            declare(&TICKS, &TICKS_DECLARED, open_ticks, d).map(|_| Ticks(()))
        }

        #[inline(always)]
        pub fn stamp(&mut self, i: u32) {
            with(&TICKS, &TICKS_DECLARED, open_ticks, |w| w.stamp(i));
        }

        #[inline(always)]
        pub fn stamp_ts(&mut self, i: u32, ts: u64) {
            with(&TICKS, &TICKS_DECLARED, open_ticks, |w| w.stamp_ts(i, ts));
        }

        #[inline(always)]
        pub fn commit(&mut self, trace_id: u64, leg: u16, dims: u64) -> bool {
            with(&TICKS, &TICKS_DECLARED, open_ticks, |w| {
                if dims != 0 {
                    sync_values(w);
                }
                w.commit(trace_id, leg, dims)
            })
            .unwrap_or(false)
        }

        /// The id of `value` in every thread's tick ring: interned here after the values before
        /// it, and by each other thread's ring in the same order before it commits with dims.
        pub fn intern(&mut self, dim: &str, value: &str) -> u16 {
            with(&TICKS, &TICKS_DECLARED, open_ticks, |w| {
                let mut values = TICK_VALUES.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = values.iter().position(|(d, v)| d == dim && v == value) {
                    return (i + 1) as u16;
                }
                // Under the same lock: the new value's id is the next in every ring.
                sync_from(w, &values);
                // 0 (not interned: an undeclared dimension, a value too long, a full table)
                // leaves no trace in the ring, so nothing to share.
                let id = w.intern(dim, value);
                if id as usize == values.len() + 1 {
                    values.push((dim.to_string(), value.to_string()));
                    N_TICK_VALUES.store(values.len(), Ordering::Release);
                    TICKS_SYNCED.with(|s| s.set(values.len()));
                }
                id
            })
            .unwrap_or(0)
        }

        pub fn heartbeat(&mut self) {
            with(&TICKS, &TICKS_DECLARED, open_ticks, |w| w.heartbeat());
        }
    }

    impl Drop for Ticks {
        fn drop(&mut self) {
            close(&TICKS);
        }
    }

    pub struct Orders(());

    impl Orders {
        pub fn open(name: &'static str, points: &[Point<'static>], capacity: u64) -> Result<Orders, Error> {
            let d = Declared { name, points: points.to_vec(), dims: &[], capacity };
            declare(&ORDERS, &ORDERS_DECLARED, open_orders, d).map(|_| Orders(()))
        }

        #[inline(always)]
        pub fn now(&self) -> u64 {
            with(&ORDERS, &ORDERS_DECLARED, open_orders, |w| w.now()).unwrap_or(0)
        }

        #[inline(always)]
        pub fn record(&mut self, point: u32, trace_id: u64, leg: u16, dims: u64) -> bool {
            with(&ORDERS, &ORDERS_DECLARED, open_orders, |w| w.record(point, trace_id, leg, dims))
                .unwrap_or(false)
        }

        #[inline(always)]
        pub fn record_ts(&mut self, point: u32, trace_id: u64, ts: u64, leg: u16, dims: u64) -> bool {
            with(&ORDERS, &ORDERS_DECLARED, open_orders, |w| w.record_ts(point, trace_id, ts, leg, dims))
                .unwrap_or(false)
        }

        pub fn heartbeat(&mut self) {
            with(&ORDERS, &ORDERS_DECLARED, open_orders, |w| w.heartbeat());
        }
    }

    impl Drop for Orders {
        fn drop(&mut self) {
            close(&ORDERS);
        }
    }
}
