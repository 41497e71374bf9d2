//! `Probe`: one handle for every thread and task of a program. It is `Send + Sync + Clone`; the
//! first record on a thread opens that thread's ring (a `PointWriter`, single producer as every
//! ring is) and later records on it go straight to it. A trace may hop threads between points:
//! the collector joins stamps by trace id across rings, and with a TSC the host trusts, stamps of
//! two rings are one clock.

use crate::clock::{self, ClockDomain};
use crate::error::Error;
use crate::layout;
use crate::point::{validate, validate_capacity, validate_dims, Point};
use crate::typed::Points;
use crate::writer::PointWriter;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Records typed points from any thread or task; see the [crate docs](crate) for a worked example.
///
/// ```
/// use tickscope_probe::{points, Probe};
///
/// points! { enum P { Rx = "md.rx", Tx = tickscope_probe::Point::new("order.tx").stage("send") } }
/// # let dir = std::env::temp_dir().join(format!("tsp-doc-probe-{}", std::process::id()));
/// let probe = Probe::<P>::builder("trader").dir(&dir).build()?;
/// probe.record(P::Rx, 7);
/// let other = probe.clone();
/// std::thread::spawn(move || other.record(P::Tx, 7)).join().unwrap(); // trace 7 hops threads
/// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), tickscope_probe::Error>(())
/// ```
pub struct Probe<S: Points> {
    inner: Arc<Inner>,
    _points: PhantomData<fn() -> S>,
}

impl<S: Points> std::fmt::Debug for Probe<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("name", &self.inner.name).field("dir", &self.inner.dir).finish()
    }
}

impl<S: Points> Clone for Probe<S> {
    fn clone(&self) -> Self {
        Probe { inner: self.inner.clone(), _points: PhantomData }
    }
}

struct Inner {
    id: u64,
    name: String,
    dir: PathBuf,
    points: Vec<Point<'static>>,
    dims: Vec<String>,
    capacity: u64,
    clock: ClockDomain,
    /// Dimension values by id - 1, as `(dim, value)`: every thread's ring interns them in this
    /// order, so an id means the same value in every ring.
    values: Mutex<Vec<(String, String)>>,
    n_values: AtomicUsize,
    #[cfg(feature = "enable")]
    rings: Mutex<Vec<Arc<crate::ring::Shared>>>,
    lost: AtomicU64,
    open_error: Mutex<Option<String>>,
}

static NEXT_PROBE_ID: AtomicU64 = AtomicU64::new(1);

/// This thread's ring of each probe that recorded on it.
struct ThreadRing {
    probe: u64,
    writer: Option<PointWriter>, // None: opening failed; records count as lost
    values_synced: usize,
}

/// This thread's rings, boxed so that `LAST` may point at one while the vector grows.
#[allow(clippy::vec_box)] // the box is the point: a stable address
struct ThreadRings(Vec<Box<ThreadRing>>);

impl Drop for ThreadRings {
    fn drop(&mut self) {
        // The rings are about to go: a record from a later thread-local destructor must not
        // find them through the cache.
        let _ = LAST.try_with(|last| last.set((0, std::ptr::null_mut())));
    }
}

thread_local! {
    static RINGS: RefCell<ThreadRings> = const { RefCell::new(ThreadRings(Vec::new())) };
    /// The ring of the probe this thread recorded with last: (probe id, its `ThreadRing`), or
    /// (0, null). The hot path: one thread-local load and a compare, no `RefCell`, no search.
    /// Without a destructor, so readable at any point of the thread's exit.
    static LAST: Cell<(u64, *mut ThreadRing)> = const { Cell::new((0, std::ptr::null_mut())) };
}

/// Options of a [`Probe`]: ring directory, dimensions, capacity of each thread's ring.
///
/// ```
/// use tickscope_probe::{points, Probe};
///
/// points! { enum P { Tx = "order.tx" } }
/// # let dir = std::env::temp_dir().join(format!("tsp-doc-builder-{}", std::process::id()));
/// let probe = Probe::<P>::builder("orders").dims(&["venue"]).capacity(1 << 12).dir(&dir).build()?;
/// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), tickscope_probe::Error>(())
/// ```
pub struct ProbeBuilder<S: Points> {
    name: String,
    dir: Option<PathBuf>,
    dims: Vec<String>,
    capacity: u64,
    _points: PhantomData<fn() -> S>,
}

impl<S: Points> ProbeBuilder<S> {
    /// Where the rings go (default: [`ring_dir()`](crate::ring_dir)).
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Dimension names (at most 4): slot k of the dims word passed to
    /// [`Probe::record_with`].
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("orders").dims(&["venue", "side"]).dir(&dir).build()?;
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn dims(mut self, dims: &[&str]) -> Self {
        self.dims = dims.iter().map(|d| d.to_string()).collect();
        self
    }

    /// Records per thread's ring, a power of two (default 65536).
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// assert!(Probe::<P>::builder("feed").capacity(1000).dir(&dir).build().is_err(), "not a power of 2");
    /// let probe = Probe::<P>::builder("feed").capacity(1 << 12).dir(&dir).build()?;
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Checks everything a thread's ring will need, creates the ring directory, and opens no
    /// ring yet: each thread opens its own on its first record.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// assert!(!dir.exists() || std::fs::read_dir(&dir)?.next().is_none(), "no ring until a record");
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Probe<S>, Error> {
        if self.name.is_empty() || self.name.len() >= layout::WRITER_NAME_SIZE {
            return Err(Error::Points(format!(
                "probe name must be 1..{} bytes: {:?}",
                layout::WRITER_NAME_SIZE - 1,
                self.name
            )));
        }
        validate_capacity(self.capacity)?;
        let dims: Vec<&str> = self.dims.iter().map(String::as_str).collect();
        validate_dims(&dims)?;
        let points = S::declared();
        validate(&points)?;
        let dir = self.dir.unwrap_or_else(crate::ring_dir);
        #[cfg(feature = "enable")]
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| Error::RingDir { dir: dir.clone(), source })?;
            clock::anchor();
        }
        Ok(Probe {
            inner: Arc::new(Inner {
                id: NEXT_PROBE_ID.fetch_add(1, Ordering::Relaxed),
                name: self.name,
                dir,
                points,
                dims: self.dims,
                capacity: self.capacity,
                clock: clock::native_clock(),
                values: Mutex::new(Vec::new()),
                n_values: AtomicUsize::new(0),
                #[cfg(feature = "enable")]
                rings: Mutex::new(Vec::new()),
                lost: AtomicU64::new(0),
                open_error: Mutex::new(None),
            }),
            _points: PhantomData,
        })
    }
}

impl<S: Points> Probe<S> {
    /// A probe named `name` (the rings' writer name) with the default options.
    ///
    /// ```
    /// use tickscope_probe::{points, Error, Probe};
    ///
    /// points! { enum P { Rx = "md.rx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-new-{}", std::process::id()));
    /// # std::env::set_var("TICKSCOPE_RING_DIR", &dir);
    /// let probe = Probe::<P>::new("feed")?;
    /// assert!(matches!(Probe::<P>::new(""), Err(Error::Points(_))));
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(name: &str) -> Result<Self, Error> {
        Self::builder(name).build()
    }

    /// Options before opening: directory, dimensions, capacity.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    ///
    /// points! { enum P { Rx = "md.rx" } }
    /// let err = Probe::<P>::builder("feed").dims(&["a", "b", "c", "d", "e"]).build().err().unwrap();
    /// assert_eq!(err.to_string(), r#"probe points: at most 4 dimensions per ring: got 5 (["a", "b", "c", "d", "e"])"#);
    /// ```
    pub fn builder(name: &str) -> ProbeBuilder<S> {
        ProbeBuilder {
            name: name.to_string(),
            dir: None,
            dims: Vec::new(),
            capacity: 1 << 16,
            _points: PhantomData,
        }
    }

    /// Stamps `point` of `trace_id` now, on this thread's ring (opened on the thread's first
    /// record). False if the record was lost: the ring was full (counted in the ring) or could not
    /// be opened (counted by the probe, said on stderr when the last handle drops).
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// probe.record(P::Rx, 42);
    /// probe.record(P::Tx, 42);
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn record(&self, point: S, trace_id: u64) -> bool {
        self.record_with(point, trace_id, 0, 0)
    }

    /// As [`record`](Self::record), naming the leg of a fanned-out trace and a dims word
    /// ([`dims`](crate::dims) of [`intern`](Self::intern) ids).
    ///
    /// ```
    /// use tickscope_probe::{dims, points, Point, Probe};
    ///
    /// points! { enum P { Tx = Point::new("order.tx").trade().leg() } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-with-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("orders").dims(&["venue"]).dir(&dir).build()?;
    /// let xnas = dims([probe.intern("venue", "XNAS"), 0, 0, 0]);
    /// probe.record_with(P::Tx, 42, 1, xnas); // leg 1 of trace 42, on XNAS
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn record_with(&self, point: S, trace_id: u64, leg: u16, dims: u64) -> bool {
        if !crate::ENABLED {
            return true;
        }
        let ts = self.now();
        self.record_ts(point, trace_id, ts, leg, dims)
    }

    /// As [`record_with`](Self::record_with), with a stamp taken earlier ([`now`](Self::now)) or
    /// from the point's own clock.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// let rx = probe.now();
    /// probe.record_ts(P::Rx, 42, rx, 0, 0);
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn record_ts(&self, point: S, trace_id: u64, ts: u64, leg: u16, dims: u64) -> bool {
        if !crate::ENABLED {
            return true;
        }
        self.on_thread_ring(dims != 0, |w| w.record_ts(point.id(), trace_id, ts, leg, dims))
    }

    /// A guard for one stage: records `begin` now and `end` when dropped (at the end of the
    /// scope, on `?` and early returns alike), as `tracing`'s `span.enter()`.
    ///
    /// A guard rather than a closure: the code of the stage stays in its scope, free to borrow,
    /// return and `.await`. The guard is `Send`, so it may cross an `.await` in a task that moves
    /// between threads: `end` is then stamped on the thread that drops it.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    ///
    /// points! { enum P { Decoded = "md.decoded", Book = "book.updated" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-stage-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("book").dir(&dir).build()?;
    /// fn update_book() {}
    /// {
    ///     let _book = probe.stage(P::Decoded, P::Book, 42);
    ///     update_book();
    /// } // book.updated of trace 42 stamped here
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[must_use = "the stage ends when the guard drops: bind it (`let _g = ...`), not `let _ = ...`"]
    pub fn stage(&self, begin: S, end: S, trace_id: u64) -> StageGuard<'_, S> {
        self.record(begin, trace_id);
        StageGuard { probe: self, end, trace_id }
    }

    /// The id of `value` of dimension `dim`, the same in every thread's ring; 0 (no value) when
    /// `dim` was not declared, `value` is empty or longer than 28 bytes, or 4096 values exist.
    /// Call it off the hot path and keep the id.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    ///
    /// points! { enum P { Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-intern-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("orders").dims(&["side"]).dir(&dir).build()?;
    /// let buy = probe.intern("side", "buy");
    /// assert_eq!(probe.intern("side", "buy"), buy);
    /// assert_eq!(buy, if tickscope_probe::ENABLED { 1 } else { 0 });
    /// assert_eq!(probe.intern("venue", "XNAS"), 0, "not declared");
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn intern(&self, dim: &str, value: &str) -> u16 {
        if !crate::ENABLED {
            return 0;
        }
        let mut values = self.inner.values.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = values.iter().position(|(d, v)| d == dim && v == value) {
            return (i + 1) as u16;
        }
        let declared = self.inner.dims.iter().any(|d| d == dim);
        if !declared
            || value.is_empty()
            || value.len() > layout::DIM_VALUE_SIZE
            || values.len() >= layout::MAX_DIM_VALUES
        {
            return 0;
        }
        values.push((dim.to_string(), value.to_string()));
        self.inner.n_values.store(values.len(), Ordering::Release);
        values.len() as u16
    }

    /// The probe's clock now (the stamp `record` would take), for [`record_ts`](Self::record_ts)
    /// or [`delta_ns`](Self::delta_ns).
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    ///
    /// points! { enum P { Rx = "md.rx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-now-{}", std::process::id()));
    /// # std::env::set_var("TICKSCOPE_RING_DIR", &dir);
    /// let probe = Probe::<P>::new("feed")?;
    /// let t0 = probe.now();
    /// let spent_ns = probe.delta_ns(t0, probe.now());
    /// assert!(spent_ns < 1_000_000_000);
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    #[inline(always)]
    pub fn now(&self) -> u64 {
        if crate::ENABLED {
            self.inner.clock.now()
        } else {
            0
        }
    }

    /// ns between two [`now`](Self::now) stamps (see [`ClockDomain::delta_ns`]).
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// let t0 = probe.now();
    /// assert!(probe.delta_ns(t0, probe.now()) < 60_000_000_000);
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn delta_ns(&self, earlier: u64, later: u64) -> u64 {
        self.inner.clock.delta_ns(earlier, later)
    }

    /// The clock the probe stamps with.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// assert_eq!(probe.clock(), tickscope_probe::native_clock());
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn clock(&self) -> ClockDomain {
        self.inner.clock
    }

    /// From an idle path of this thread (a runtime's `on_thread_park`): tells the collector the
    /// thread's writer is alive though quiet and stores a calibration pair. A thread that keeps
    /// recording needs none: the collector judges a writer by its process.
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// probe.heartbeat(); // e.g. from tokio's on_thread_park
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn heartbeat(&self) {
        if crate::ENABLED {
            self.on_thread_ring(false, |w| {
                w.heartbeat();
                true
            });
        }
    }

    /// Records lost because a thread's ring could not be opened (full rings count in the rings).
    ///
    /// ```
    /// use tickscope_probe::{points, Probe};
    /// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
    /// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
    /// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
    /// probe.record(P::Rx, 1);
    /// assert_eq!(probe.lost(), 0);
    /// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
    /// # Ok::<(), tickscope_probe::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// Runs `f` on this thread's writer of this probe, opening it first if needed.
    #[inline(always)]
    fn on_thread_ring(&self, with_dims: bool, f: impl FnOnce(&mut PointWriter) -> bool) -> bool {
        let inner = &*self.inner;
        let (probe, ring) = LAST.with(Cell::get);
        if probe == inner.id {
            // SAFETY: LAST holds a pointer to a boxed ThreadRing of this thread's RINGS with a
            // writer, set by `slow_path`; the box lives until RINGS drops, which resets LAST
            // first. Nothing else borrows it now: the only other access is `slow_path` on this
            // same thread, which does not call back into user code while it holds a borrow.
            let ring = unsafe { &mut *ring };
            if let Some(w) = ring.writer.as_mut() {
                if !with_dims || ring.values_synced == inner.n_values.load(Ordering::Acquire) {
                    return f(w);
                }
            }
        }
        self.slow_path(with_dims, f)
    }

    /// Another probe than last time on this thread, a first record, new dimension values, or a
    /// ring that could not be opened.
    #[cold]
    #[inline(never)]
    fn slow_path(&self, with_dims: bool, f: impl FnOnce(&mut PointWriter) -> bool) -> bool {
        let inner = &*self.inner;
        RINGS
            .try_with(|rings| {
                let mut rings = rings.borrow_mut();
                let i = match rings.0.iter().position(|r| r.probe == inner.id) {
                    Some(i) => i,
                    None => inner.open_here(&mut rings.0),
                };
                let ring = &mut *rings.0[i];
                let ptr: *mut ThreadRing = ring;
                match &mut ring.writer {
                    Some(w) => {
                        LAST.with(|last| last.set((inner.id, ptr)));
                        if with_dims && ring.values_synced < inner.n_values.load(Ordering::Acquire) {
                            ring.values_synced = inner.sync_values(w, ring.values_synced);
                        }
                        f(w)
                    }
                    None => {
                        inner.lost.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                }
            })
            .unwrap_or_else(|_| {
                // A record from another thread-local's destructor, after ours was dropped.
                inner.lost.fetch_add(1, Ordering::Relaxed);
                false
            })
    }
}

impl Inner {
    /// Opens this thread's ring; on failure keeps the first error for the closing report.
    #[cold]
    #[inline(never)]
    #[allow(clippy::vec_box)] // see ThreadRings
    fn open_here(&self, rings: &mut Vec<Box<ThreadRing>>) -> usize {
        let dims: Vec<&str> = self.dims.iter().map(String::as_str).collect();
        let writer =
            match PointWriter::open_in_dims(&self.dir, &self.name, &self.points, &dims, self.capacity) {
                Ok(w) => {
                    #[cfg(feature = "enable")]
                    {
                        let mut open = self.rings.lock().unwrap_or_else(|e| e.into_inner());
                        open.retain(|r| !r.is_closed()); // threads that exited closed theirs
                        open.push(w.shared().clone());
                    }
                    Some(w)
                }
                Err(e) => {
                    let mut first = self.open_error.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert_with(|| e.to_string());
                    None
                }
            };
        rings.push(Box::new(ThreadRing { probe: self.id, writer, values_synced: 0 }));
        rings.len() - 1
    }

    /// Interns values `from..` into `w`'s ring in the probe's order; returns how many it holds.
    #[cold]
    #[inline(never)]
    fn sync_values(&self, w: &mut PointWriter, from: usize) -> usize {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        for (dim, value) in &values[from..] {
            w.intern(dim, value);
        }
        values.len()
    }
}

impl Drop for Inner {
    /// Closes every thread's ring still open: a thread's own closes when the thread exits, but
    /// the main thread's thread-locals are never dropped.
    fn drop(&mut self) {
        #[cfg(feature = "enable")]
        for ring in self.rings.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            ring.close();
        }
        let lost = *self.lost.get_mut();
        if lost > 0 {
            let why = self.open_error.get_mut().unwrap_or_else(|e| e.into_inner()).take();
            eprintln!(
                "tickscope-probe: probe {}: {lost} records lost: {}",
                self.name,
                why.unwrap_or_else(|| "recorded during thread exit".into())
            );
        }
    }
}

/// Stamps its stage's end point when dropped; made by [`Probe::stage`].
///
/// ```
/// use tickscope_probe::{points, Probe};
/// points! { enum P { Rx = "md.rx", Tx = "order.tx" } }
/// # let dir = std::env::temp_dir().join(format!("tsp-doc-p-{}", std::process::id()));
/// let probe = Probe::<P>::builder("feed").dir(&dir).build()?;
/// let guard = probe.stage(P::Rx, P::Tx, 42); // md.rx now
/// drop(guard); // order.tx now
/// # drop(probe); let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), tickscope_probe::Error>(())
/// ```
pub struct StageGuard<'p, S: Points> {
    probe: &'p Probe<S>,
    end: S,
    trace_id: u64,
}

impl<S: Points> Drop for StageGuard<'_, S> {
    fn drop(&mut self) {
        self.probe.record(self.end, self.trace_id);
    }
}
