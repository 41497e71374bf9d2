//! One mapped ring file: creation, the header, and the header fields the writers share.
//!
//! Every `unsafe` block of the crate that touches the ring lives here or in `writer.rs`; each
//! rests on the invariants of `RingFile` below.

use crate::clock::{self, ClockDomain};
use crate::error::Error;
use crate::layout as L;
use crate::point::Point;
use crate::sys;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A ring file mapped shared and writable.
///
/// Invariants (what the `unsafe` blocks rely on):
/// - `base` is a live `MAP_SHARED` mapping of `size == DATA_OFFSET + capacity * record_size` bytes,
///   page aligned, owned by `shared` (which this value keeps alive) and unmapped only when the
///   last owner of `shared` drops.
/// - The mapping is shared with one consumer process, which writes only its own header line
///   (tail, reader heartbeat, reader pid) and zeroes tick slots *before* releasing them through
///   `tail`. This writer writes everything else; the records in `[tail, head)` are the
///   consumer's to read, the slots in `[head, tail + capacity)` are this writer's to fill.
/// - Header fields written by both sides or read while the other side writes are accessed only
///   through atomics at their naturally aligned offsets.
pub(crate) struct RingFile {
    base: *mut u8,
    shared: Arc<Shared>,
    pub path: PathBuf,
    pub capacity: u64,
    pub record_size: usize,
    pub n_points: u32,
    pub tid: u32,
    pub clock: ClockDomain,
    n_dims: usize,
    n_values: u32,
}

/// The part of a ring other threads may reach: the background calibrator (a second pair after
/// open, so opening never sleeps) and a `Probe` closing the rings of threads whose thread-local
/// destructors never run (the main thread's). Calibration pairs and closing go through `lock`,
/// so two threads never interleave the header's pair protocol; the records stay the owning
/// thread's alone.
pub(crate) struct Shared {
    mapping: Mapping,
    path: PathBuf,
    tsc: bool,
    lock: Mutex<()>,
    closed: AtomicBool,
}

/// `base`/`size`: one live `MAP_SHARED` mapping, unmapped when the last owner drops.
struct Mapping {
    base: *mut u8,
    size: usize,
}

// SAFETY: the mapping is plain shared memory; every access to it from a thread other than the
// ring's owner goes through atomics or under `Shared::lock` (see `Shared`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` are this value's own mapping and every borrow of it ended: the
        // owners (RingFile, Shared) are gone, and they lend only borrows tied to themselves.
        unsafe { sys::unmap(self.base, self.size) };
    }
}

fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if s.is_empty() {
        "ring".into()
    } else {
        s
    }
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

impl RingFile {
    /// Creates `<dir>/<name>.<pid>.<tid>[.n].ring` exclusively with mode 0600 (as Python and C
    /// do), sizes it, maps it and publishes the header, magic last.
    pub fn create(
        dir: &Path,
        name: &str,
        points: &[Point<'_>],
        dims: &[&str],
        kind: u32,
        capacity: u64,
    ) -> Result<RingFile, Error> {
        let n_points = points.len();
        let record_size = L::record_size_for(kind, n_points);
        let size = (capacity as usize)
            .checked_mul(record_size)
            .and_then(|b| b.checked_add(L::DATA_OFFSET))
            .ok_or(Error::Capacity(capacity))?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| Error::RingDir { dir: dir.to_path_buf(), source })?;
        let pid = std::process::id();
        let tid = sys::thread_id();
        let (path, file) = Self::create_exclusive(dir, &safe_name(name), pid, tid)?;
        let fail = |path: &Path, source: io::Error| {
            let _ = std::fs::remove_file(path);
            Error::RingFile { path: path.to_path_buf(), source }
        };
        if let Err(e) = file.set_len(size as u64) {
            return Err(fail(&path, e));
        }
        let base = match sys::map_shared(file.as_raw_fd(), size) {
            Ok(b) => b,
            Err(e) => return Err(fail(&path, e)),
        };
        drop(file); // the mapping keeps the file's pages; the descriptor is not needed
        let clock = clock::native_clock();
        let shared = Arc::new(Shared {
            mapping: Mapping { base, size },
            path: path.clone(),
            tsc: clock == ClockDomain::Tsc,
            lock: Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        let mut ring = RingFile {
            base,
            shared,
            path,
            capacity,
            record_size,
            n_points: n_points as u32,
            tid,
            clock,
            n_dims: dims.len(),
            n_values: 0,
        };
        ring.write_header(name, points, dims, kind, pid);
        if clock == ClockDomain::Tsc {
            crate::calibrator::second_pair(&ring.shared);
        }
        Ok(ring)
    }

    fn create_exclusive(dir: &Path, safe: &str, pid: u32, tid: u32) -> Result<(PathBuf, File), Error> {
        for n in 0..1000 {
            let suffix = if n == 0 { String::new() } else { format!(".{n}") };
            let path = dir.join(format!("{safe}.{pid}.{tid}{suffix}.ring"));
            match OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::RingDir { dir: dir.to_path_buf(), source }),
            }
        }
        Err(Error::RingDir {
            dir: dir.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("1000 ring files named {safe}.{pid}.{tid}.* exist"),
            ),
        })
    }

    /// The static header bytes (line 0 and the point table). Nobody reads them before the magic.
    fn header_mut(&mut self) -> &mut [u8] {
        // SAFETY: [0, DATA_OFFSET) is inside the mapping (invariant); before the magic is
        // published no reader interprets it, and afterwards this is never called again.
        unsafe { std::slice::from_raw_parts_mut(self.base, L::DATA_OFFSET) }
    }

    fn write_header(&mut self, name: &str, points: &[Point<'_>], dims: &[&str], kind: u32, pid: u32) {
        let (clock, capacity, record_size, n_points, tid) =
            (self.clock, self.capacity, self.record_size, self.n_points, self.tid);
        let h = self.header_mut();
        for (i, p) in points.iter().enumerate() {
            let e = L::OFF_POINT_TABLE + i * L::POINT_ENTRY_SIZE;
            put(h, e, p.name.as_bytes());
            put(h, e + L::POINT_NAME_SIZE, p.stage.as_bytes());
            let domain = p.clock.unwrap_or(clock) as u32;
            put(h, e + L::POINT_NAME_SIZE + L::POINT_STAGE_SIZE, &domain.to_le_bytes());
            put(h, e + L::POINT_NAME_SIZE + L::POINT_STAGE_SIZE + 4, &p.flags().to_le_bytes());
        }
        for (k, d) in dims.iter().enumerate() {
            put(h, L::OFF_DIM_NAMES + k * L::DIM_NAME_SIZE, d.as_bytes());
        }
        put(h, L::OFF_VERSION, &L::LAYOUT_VERSION.to_le_bytes());
        put(h, L::OFF_KIND, &kind.to_le_bytes());
        put(h, L::OFF_RECORD_SIZE, &(record_size as u32).to_le_bytes());
        put(h, L::OFF_N_POINTS, &n_points.to_le_bytes());
        put(h, L::OFF_CAPACITY, &capacity.to_le_bytes());
        put(h, L::OFF_CLOCK_DOMAIN, &(clock as u32).to_le_bytes());
        put(h, L::OFF_WRITER_PID, &pid.to_le_bytes());
        put(h, L::OFF_WRITER_TID, &tid.to_le_bytes());
        put(h, L::OFF_CREATED_MONO_NS, &sys::clock_ns(sys::CLOCK_MONOTONIC).to_le_bytes());
        put(h, L::OFF_CREATED_REAL_NS, &sys::clock_ns(sys::CLOCK_REALTIME).to_le_bytes());
        put(h, L::OFF_DATA_OFFSET, &(L::DATA_OFFSET as u64).to_le_bytes());
        let name = name.as_bytes();
        put(h, L::OFF_WRITER_NAME, &name[..name.len().min(L::WRITER_NAME_SIZE - 1)]);
        // One pair now; the calibrator thread stores a second one 20 ms later (`create`), which
        // gives the collector a TSC rate even for a run that never heartbeats without the
        // opening thread waiting for it.
        self.calibrate();
        self.u64_at(L::OFF_WRITER_HEARTBEAT_NS).store(sys::clock_ns(sys::CLOCK_MONOTONIC), Ordering::Release);
        // The magic last, released: a reader that sees it sees the whole header.
        self.u64_at(L::OFF_MAGIC).store(L::MAGIC, Ordering::Release);
    }

    /// The id of `value` in dimension slot `dim`, appended to the value table the first time
    /// (a linear search of this writer's values: off the hot path). 0: not declared, empty, longer
    /// than DIM_VALUE_SIZE bytes, or the table is full.
    pub fn intern(&mut self, dim: usize, value: &str) -> u16 {
        let v = value.as_bytes();
        if dim >= self.n_dims || v.is_empty() || v.len() > L::DIM_VALUE_SIZE {
            return 0;
        }
        for i in 0..self.n_values as usize {
            let e = L::OFF_DIM_VALUES + i * L::DIM_ENTRY_SIZE;
            // SAFETY: the entry lies inside [OFF_DIM_VALUES, DATA_OFFSET) of the live mapping and only
            // this writer stores it; the collector only reads it.
            let entry = unsafe { std::slice::from_raw_parts(self.base.add(e), L::DIM_ENTRY_SIZE) };
            let name = &entry[4..4 + L::DIM_VALUE_SIZE];
            let len = name.iter().position(|&b| b == 0).unwrap_or(L::DIM_VALUE_SIZE);
            if u16::from_le_bytes([entry[0], entry[1]]) as usize == dim && &name[..len] == v {
                return (i + 1) as u16;
            }
        }
        if self.n_values as usize >= L::MAX_DIM_VALUES {
            return 0;
        }
        let e = L::OFF_DIM_VALUES + self.n_values as usize * L::DIM_ENTRY_SIZE;
        // SAFETY: as above; the entry is not yet counted, so the collector does not read it.
        let entry = unsafe { std::slice::from_raw_parts_mut(self.base.add(e), L::DIM_ENTRY_SIZE) };
        entry[..2].copy_from_slice(&(dim as u16).to_le_bytes());
        entry[4..4 + v.len()].copy_from_slice(v);
        self.n_values += 1;
        // SAFETY: OFF_DIM_COUNT is 4-aligned inside the mapping; only this writer stores it.
        let count = unsafe { &*(self.base.add(L::OFF_DIM_COUNT) as *const AtomicU32) };
        count.store(self.n_values, Ordering::Release); // released: the entry before the count
        self.n_values as u16
    }

    /// A header u64 shared with the consumer.
    #[inline(always)]
    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off < L::DATA_OFFSET);
        // SAFETY: `off` is one of the layout's 8-aligned header offsets inside the live mapping
        // (AtomicU64 has u64's size and, on 64-bit targets, its alignment), both sides access it
        // only atomically (invariant), and the borrow is tied to `&self`, so it ends before Drop.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    /// Start of the records area.
    #[inline(always)]
    pub fn data(&self) -> *mut u8 {
        // SAFETY: DATA_OFFSET < size (invariant), so the result stays inside the mapping.
        unsafe { self.base.add(L::DATA_OFFSET) }
    }

    /// Stores one calibration pair (see `Shared::calibrate`).
    pub fn calibrate(&mut self) {
        self.shared.calibrate();
    }

    /// The half other threads may reach.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Liveness for the collector, and a fresh calibration pair.
    pub fn heartbeat(&mut self) {
        self.calibrate();
        self.u64_at(L::OFF_WRITER_HEARTBEAT_NS).store(sys::clock_ns(sys::CLOCK_MONOTONIC), Ordering::Release);
    }

    /// Whether a collector drained this ring within `max_age_ns`.
    pub fn collector_alive(&self, max_age_ns: u64) -> bool {
        let beat = self.u64_at(L::OFF_READER_HEARTBEAT_NS).load(Ordering::Acquire);
        beat != 0 && sys::clock_ns(sys::CLOCK_MONOTONIC).saturating_sub(beat) < max_age_ns
    }

    /// Marks the ring cleanly closed (see `Shared::close`).
    pub fn close(&mut self) {
        self.shared.close();
    }
}

impl Drop for RingFile {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off < L::DATA_OFFSET);
        // SAFETY: as `RingFile::u64_at`: an 8-aligned header offset inside the live mapping,
        // accessed only atomically by both sides, borrowed no longer than `self`.
        unsafe { &*(self.mapping.base.add(off) as *const AtomicU64) }
    }

    /// Stores one calibration pair the way the C header does: the entry into slot
    /// `count % CALIB_SLOTS` first, then a release store of `count + 1`. Under `lock`: the
    /// owning thread (heartbeat) and the calibrator may both call it.
    pub fn calibrate(&self) {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.calibrate_locked();
    }

    fn calibrate_locked(&self) {
        let base = self.mapping.base;
        let pair = clock::calibration_pair(self.tsc);
        // SAFETY: OFF_CALIB_COUNT is 4-aligned inside the mapping; it is stored only under `lock`.
        let count_at = unsafe { &*(base.add(L::OFF_CALIB_COUNT) as *const AtomicU32) };
        let count = count_at.load(Ordering::Relaxed);
        let slot = L::OFF_CALIB_ENTRIES + (count as usize % L::CALIB_SLOTS) * L::CALIB_ENTRY_SIZE;
        for (i, v) in pair.iter().enumerate() {
            // SAFETY: the slot is 8-aligned and inside [OFF_CALIB_ENTRIES, OFF_POINT_TABLE), written
            // only under `lock`; the collector reads entries only up to the count released below.
            unsafe { (base.add(slot + 8 * i) as *mut u64).write(*v) };
        }
        count_at.store(count.wrapping_add(1), Ordering::Release);
    }

    /// Whether the ring was closed (by its writer, or by the `Probe` that owns it).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// As `calibrate`, unless the ring was closed (its closing pair is its last).
    pub fn calibrate_if_open(&self) {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.closed.load(Ordering::Acquire) {
            self.calibrate_locked();
        }
    }

    /// Marks the ring cleanly closed, once. The file stays for a collector that attached or was
    /// announced ($TICKSCOPE_COLLECTOR_PID) to drain and remove; without one, nobody ever will:
    /// the writer removes it and says once on stderr what it dropped.
    pub fn close(&self) {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.calibrate_locked();
        self.u64_at(L::OFF_WRITER_HEARTBEAT_NS).store(sys::clock_ns(sys::CLOCK_MONOTONIC), Ordering::Release);
        self.u64_at(L::OFF_WRITER_CLOSED).store(1, Ordering::Release);
        // SAFETY: OFF_READER_PID is 4-aligned inside the mapping; the collector stores it.
        let reader_pid = unsafe { &*(self.mapping.base.add(L::OFF_READER_PID) as *const AtomicU32) };
        if collector_will_drain(reader_pid.load(Ordering::Acquire)) {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        let dropped = self.u64_at(L::OFF_DROPPED_FULL).load(Ordering::Relaxed);
        if dropped > 0 {
            let written = self.u64_at(L::OFF_HEAD).load(Ordering::Relaxed);
            eprintln!(
                "tickscope-probe: {} of {} records dropped: no collector attached (run under \
                 `tickscope profile -- CMD` or attach `tickscope live` to keep them)",
                dropped,
                dropped + written
            );
        }
    }
}

/// Whether a live collector attached to the ring (its pid in the header) or was announced to
/// this process (`TICKSCOPE_COLLECTOR_PID`, set by `tickscope profile`): the same rule as
/// Python's writer.
fn collector_will_drain(reader_pid: u32) -> bool {
    let announced = std::env::var("TICKSCOPE_COLLECTOR_PID").ok().and_then(|v| v.parse::<u32>().ok());
    [Some(reader_pid), announced].iter().flatten().any(|&pid| pid > 0 && sys::process_exists(pid))
}
