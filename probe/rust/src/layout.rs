//! Every offset and size of a tickscope ring file: the Rust mirror of `probe/layout.py`, which
//! owns the diagrams and is the source of truth. `tests/probe/test_rust_probe.py` compares these
//! constants with the Python module (the `layout` example prints them), so they cannot drift.
//!
//! ```text
//! 0 .. 127      static description (magic last, released)   | written once by the producer
//! 128 .. 255    head, dropped_full, writer_heartbeat_ns, writer_closed | producer only
//! 256 .. 383    tail, reader_heartbeat_ns, reader_pid        | consumer only
//! 384 .. 1023   calib_count u32, pad, 16 x (tsc, monotonic_raw, monotonic, realtime)
//! 1024 ..       point table: 64 x (name 48, stage 40, clock_domain u32, flags u32)
//! 7168 ..       4 dimension names x 32 bytes, then the count of interned values (u32)
//! 8192 ..       4096 interned values x (slot u16, pad u16, value 28 bytes)
//! 139264 ..     capacity x record_size
//! ```
//!
//! `KIND_POINT` record (32 bytes): `ts u64 | trace_id u64 | point u16 | leg u16 | thread u32 | dims u64`.
//! `KIND_TICK` record (8 n + 24 bytes): `ts[0..n] u64 | trace_id u64 | leg u64 | dims u64`, 0 = not reached.
//! `dims`: four u16 value ids, slot k in bits 16k..16k+15 (0 = none); see `dims`.
//!
//! ```
//! use tickscope_probe::layout as L;
//! assert_eq!(L::OFF_TAIL - L::OFF_HEAD, L::CACHE_LINE_PAIR); // producer and consumer lines apart
//! ```

/// `b"TSCOPE01"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TSCOPE01");
/// Version of this layout, checked by the reader.
pub const LAYOUT_VERSION: u32 = 2;

/// Ring kind: one 32-byte record per point (`PointWriter`).
pub const KIND_POINT: u32 = 1;
/// Ring kind: one record per tick, a stamp per declared point (`TickWriter`).
pub const KIND_TICK: u32 = 2;

/// Clock domain: raw TSC ticks.
pub const CLOCK_TSC: u32 = 1;
/// Clock domain: CLOCK_MONOTONIC ns.
pub const CLOCK_MONOTONIC: u32 = 2;
/// Clock domain: CLOCK_REALTIME ns.
pub const CLOCK_REALTIME: u32 = 3;

/// Point flag: tick-to-trade ends at this point (default: the last declared point).
pub const POINT_TRADE: u32 = 1;
/// Point flag: the fan-out; this point and every point after it are stamped once per leg.
pub const POINT_LEG: u32 = 2;

/// Two cache lines: the distance between fields the two sides write, so neither prefetches the other's.
pub const CACHE_LINE_PAIR: usize = 128;

// Line 0: static description.
/// Byte offset of `magic` in the ring file.
pub const OFF_MAGIC: usize = 0;
/// Byte offset of `version` in the ring file.
pub const OFF_VERSION: usize = 8;
/// Byte offset of `kind` in the ring file.
pub const OFF_KIND: usize = 12;
/// Byte offset of `record_size` in the ring file.
pub const OFF_RECORD_SIZE: usize = 16;
/// Byte offset of `n_points` in the ring file.
pub const OFF_N_POINTS: usize = 20;
/// Byte offset of `capacity` in the ring file.
pub const OFF_CAPACITY: usize = 24;
/// Byte offset of `clock_domain` in the ring file.
pub const OFF_CLOCK_DOMAIN: usize = 32;
/// Byte offset of `writer_pid` in the ring file.
pub const OFF_WRITER_PID: usize = 36;
/// Byte offset of `writer_tid` in the ring file.
pub const OFF_WRITER_TID: usize = 40;
/// Byte offset of `flags` in the ring file.
pub const OFF_FLAGS: usize = 44;
/// Byte offset of `created_mono_ns` in the ring file.
pub const OFF_CREATED_MONO_NS: usize = 48;
/// Byte offset of `created_real_ns` in the ring file.
pub const OFF_CREATED_REAL_NS: usize = 56;
/// Byte offset of `data_offset` in the ring file.
pub const OFF_DATA_OFFSET: usize = 64;
/// Byte offset of `writer_name` in the ring file.
pub const OFF_WRITER_NAME: usize = 72;
/// Bytes of the writer name (NUL-padded).
pub const WRITER_NAME_SIZE: usize = 56;

// Line 1: producer-owned.
/// Byte offset of `head` in the ring file.
pub const OFF_HEAD: usize = CACHE_LINE_PAIR;
/// Byte offset of `dropped_full` in the ring file.
pub const OFF_DROPPED_FULL: usize = OFF_HEAD + 8;
/// Byte offset of `writer_heartbeat_ns` in the ring file.
pub const OFF_WRITER_HEARTBEAT_NS: usize = OFF_HEAD + 16;
/// Byte offset of `writer_closed` in the ring file.
pub const OFF_WRITER_CLOSED: usize = OFF_HEAD + 24;

// Line 2: consumer-owned.
/// Byte offset of `tail` in the ring file.
pub const OFF_TAIL: usize = 2 * CACHE_LINE_PAIR;
/// Byte offset of `reader_heartbeat_ns` in the ring file.
pub const OFF_READER_HEARTBEAT_NS: usize = OFF_TAIL + 8;
/// Byte offset of `reader_pid` in the ring file.
pub const OFF_READER_PID: usize = OFF_TAIL + 16;

// Calibration pairs.
/// Byte offset of `calib_count` in the ring file.
pub const OFF_CALIB_COUNT: usize = 3 * CACHE_LINE_PAIR;
/// Byte offset of `calib_entries` in the ring file.
pub const OFF_CALIB_ENTRIES: usize = OFF_CALIB_COUNT + 8;
/// Calibration pairs kept (a ring buffer indexed by the count).
pub const CALIB_SLOTS: usize = 16;
/// Bytes of one calibration pair: (tsc, monotonic_raw, monotonic, realtime) u64.
pub const CALIB_ENTRY_SIZE: usize = 32;

// Point table.
/// Byte offset of `point_table` in the ring file.
pub const OFF_POINT_TABLE: usize = 1024;
/// Bytes of a point name.
pub const POINT_NAME_SIZE: usize = 48;
/// Bytes of a stage name.
pub const POINT_STAGE_SIZE: usize = 40;
/// Bytes of one point table entry: name, stage, clock domain u32, flags u32.
pub const POINT_ENTRY_SIZE: usize = POINT_NAME_SIZE + POINT_STAGE_SIZE + 8;
/// Points a ring can declare.
pub const MAX_POINTS: usize = 64;

// Dimensions: names and the count of interned values, then the value table.
/// Byte offset of `dim_names` in the ring file.
pub const OFF_DIM_NAMES: usize = 7168;
/// Bytes of a dimension name.
pub const DIM_NAME_SIZE: usize = 32;
/// Dimensions a ring can declare (the slots of the dims word).
pub const MAX_DIMS: usize = 4;
/// Byte offset of `dim_count` in the ring file.
pub const OFF_DIM_COUNT: usize = OFF_DIM_NAMES + MAX_DIMS * DIM_NAME_SIZE;
/// Byte offset of `dim_values` in the ring file.
pub const OFF_DIM_VALUES: usize = 8192;
/// Bytes of an interned dimension value.
pub const DIM_VALUE_SIZE: usize = 28;
/// Bytes of one interned value entry: slot u16, pad u16, value.
pub const DIM_ENTRY_SIZE: usize = 32;
/// Interned values a ring can hold.
pub const MAX_DIM_VALUES: usize = 4096;
/// Bits of one slot of the dims word.
pub const DIM_SLOT_BITS: usize = 16;
/// Where the records start.
pub const DATA_OFFSET: usize = OFF_DIM_VALUES + MAX_DIM_VALUES * DIM_ENTRY_SIZE;
/// The largest leg number.
pub const MAX_LEG: u64 = 0xFFFF;

/// Bytes of a `KIND_POINT` record.
pub const POINT_RECORD_SIZE: usize = 32;
/// Bytes after a tick record's stamps: trace id, leg, dims.
pub const TICK_TRAILER_SIZE: usize = 24;

// Checked at compile time. Debian bookworm's clippy (1.63) takes these for run-time asserts that
// always hold (assertions_on_constants); later clippy knows a const assert is the point.
#[allow(clippy::assertions_on_constants)]
const _: () = {
    assert!(OFF_WRITER_NAME + WRITER_NAME_SIZE == CACHE_LINE_PAIR);
    assert!(OFF_CALIB_ENTRIES + CALIB_SLOTS * CALIB_ENTRY_SIZE <= OFF_POINT_TABLE);
    assert!(OFF_POINT_TABLE + MAX_POINTS * POINT_ENTRY_SIZE <= OFF_DIM_NAMES);
    assert!(OFF_DIM_COUNT + 4 <= OFF_DIM_VALUES);
    assert!(core::mem::size_of::<PointRecord>() == POINT_RECORD_SIZE);
};

/// One `KIND_POINT` record as it lies in the ring (little endian on every supported target).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PointRecord {
    /// The stamp, in the point's clock domain.
    pub ts: u64,
    /// The trace (tick) it belongs to.
    pub trace_id: u64,
    /// The point's position in the point table.
    pub point_id: u16,
    /// The leg of a fanned-out trace (0 for shared points).
    pub leg: u16,
    /// The writer thread's kernel id.
    pub thread_id: u32,
    /// Dimension value ids, slot k in bits 16k..16k+15.
    pub dims: u64,
}

/// Every constant above by its Python name, for the cross-language check (`layout` example).
pub const CONSTANTS: &[(&str, u64)] = &[
    ("MAGIC", MAGIC),
    ("LAYOUT_VERSION", LAYOUT_VERSION as u64),
    ("KIND_POINT", KIND_POINT as u64),
    ("KIND_TICK", KIND_TICK as u64),
    ("CLOCK_TSC", CLOCK_TSC as u64),
    ("CLOCK_MONOTONIC", CLOCK_MONOTONIC as u64),
    ("CLOCK_REALTIME", CLOCK_REALTIME as u64),
    ("POINT_TRADE", POINT_TRADE as u64),
    ("POINT_LEG", POINT_LEG as u64),
    ("CACHE_LINE_PAIR", CACHE_LINE_PAIR as u64),
    ("OFF_MAGIC", OFF_MAGIC as u64),
    ("OFF_VERSION", OFF_VERSION as u64),
    ("OFF_KIND", OFF_KIND as u64),
    ("OFF_RECORD_SIZE", OFF_RECORD_SIZE as u64),
    ("OFF_N_POINTS", OFF_N_POINTS as u64),
    ("OFF_CAPACITY", OFF_CAPACITY as u64),
    ("OFF_CLOCK_DOMAIN", OFF_CLOCK_DOMAIN as u64),
    ("OFF_WRITER_PID", OFF_WRITER_PID as u64),
    ("OFF_WRITER_TID", OFF_WRITER_TID as u64),
    ("OFF_FLAGS", OFF_FLAGS as u64),
    ("OFF_CREATED_MONO_NS", OFF_CREATED_MONO_NS as u64),
    ("OFF_CREATED_REAL_NS", OFF_CREATED_REAL_NS as u64),
    ("OFF_DATA_OFFSET", OFF_DATA_OFFSET as u64),
    ("OFF_WRITER_NAME", OFF_WRITER_NAME as u64),
    ("WRITER_NAME_SIZE", WRITER_NAME_SIZE as u64),
    ("OFF_HEAD", OFF_HEAD as u64),
    ("OFF_DROPPED_FULL", OFF_DROPPED_FULL as u64),
    ("OFF_WRITER_HEARTBEAT_NS", OFF_WRITER_HEARTBEAT_NS as u64),
    ("OFF_WRITER_CLOSED", OFF_WRITER_CLOSED as u64),
    ("OFF_TAIL", OFF_TAIL as u64),
    ("OFF_READER_HEARTBEAT_NS", OFF_READER_HEARTBEAT_NS as u64),
    ("OFF_READER_PID", OFF_READER_PID as u64),
    ("OFF_CALIB_COUNT", OFF_CALIB_COUNT as u64),
    ("OFF_CALIB_ENTRIES", OFF_CALIB_ENTRIES as u64),
    ("CALIB_SLOTS", CALIB_SLOTS as u64),
    ("CALIB_ENTRY_SIZE", CALIB_ENTRY_SIZE as u64),
    ("OFF_POINT_TABLE", OFF_POINT_TABLE as u64),
    ("POINT_NAME_SIZE", POINT_NAME_SIZE as u64),
    ("POINT_STAGE_SIZE", POINT_STAGE_SIZE as u64),
    ("POINT_ENTRY_SIZE", POINT_ENTRY_SIZE as u64),
    ("MAX_POINTS", MAX_POINTS as u64),
    ("OFF_DIM_NAMES", OFF_DIM_NAMES as u64),
    ("DIM_NAME_SIZE", DIM_NAME_SIZE as u64),
    ("MAX_DIMS", MAX_DIMS as u64),
    ("OFF_DIM_COUNT", OFF_DIM_COUNT as u64),
    ("OFF_DIM_VALUES", OFF_DIM_VALUES as u64),
    ("DIM_VALUE_SIZE", DIM_VALUE_SIZE as u64),
    ("MAX_DIM_VALUES", MAX_DIM_VALUES as u64),
    ("DIM_SLOT_BITS", DIM_SLOT_BITS as u64),
    ("MAX_LEG", MAX_LEG),
    ("DATA_OFFSET", DATA_OFFSET as u64),
    ("POINT_RECORD_SIZE", POINT_RECORD_SIZE as u64),
    ("TICK_TRAILER_SIZE", TICK_TRAILER_SIZE as u64),
];

/// Bytes of a `KIND_TICK` record with `n_points` stamps.
///
/// ```
/// assert_eq!(tickscope_probe::layout::tick_record_size(4), 56);
/// ```
pub const fn tick_record_size(n_points: usize) -> usize {
    8 * n_points + TICK_TRAILER_SIZE
}

/// Bytes of a record of `kind` for `n_points` points.
///
/// ```
/// use tickscope_probe::layout::{record_size_for, KIND_POINT};
/// assert_eq!(record_size_for(KIND_POINT, 4), 32);
/// ```
pub const fn record_size_for(kind: u32, n_points: usize) -> usize {
    if kind == KIND_POINT {
        POINT_RECORD_SIZE
    } else {
        tick_record_size(n_points)
    }
}

/// Bytes of a ring file of `capacity` records of `record_size` bytes.
///
/// ```
/// use tickscope_probe::layout::{ring_file_size, DATA_OFFSET};
/// assert_eq!(ring_file_size(2, 32), DATA_OFFSET + 64);
/// ```
pub const fn ring_file_size(capacity: usize, record_size: usize) -> usize {
    DATA_OFFSET + capacity * record_size
}

#[cfg(not(target_endian = "little"))]
compile_error!("tickscope rings are little endian; this crate stores native integers");
