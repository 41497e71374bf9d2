"""Every offset and size of a tickscope ring file, in one place.

The C header ``probe/include/tickscope_probe.h`` mirrors these constants; ``tests/probe/test_c_probe.py``
compiles a C writer with gcc and reads its ring here, so the two cannot drift apart silently.

A ring file is one single-producer/single-consumer queue: one writer thread, one collector.
All integers are little endian. Counters are monotonically increasing record counts (never
wrapped); a record's slot is ``count & (capacity - 1)``.

Header (8 KiB, then the dimension values, then the records)::

    0        8       16      24      32      40      48      56      64     ...   128
    +-------+-------+-------+-------+-------+-------+-------+-------+-------+----+
    | magic |ver|kind|rsz|npt|capacity|dom|pid|tid|flg|created_mono|created_real|
    |  data_offset  |            writer_name (56 bytes, UTF-8, NUL padded)       |
    +--- line 1 (128..255): written by the producer only ------------------------+
    | head | dropped_full | writer_heartbeat_ns | writer_closed |                 |
    +--- line 2 (256..383): written by the consumer only ------------------------+
    | tail | reader_heartbeat_ns | reader_pid |                                   |
    +--- 384..1023: clock calibration, written by the producer ------------------+
    | calib_count u32 | pad u32 | 16 x (tsc, monotonic_raw_ns, monotonic_ns, realtime_ns) |
    +--- 1024..: point table, POINT_ENTRY_SIZE bytes per point ------------------+
    | name (48) | stage (40) | clock_domain u32 | flags u32 |                     |
    +--- 7168..7299: dimension names and the count of interned values ------------+
    +--- 8192..: dimension value table (128 KiB) -----------------------------------+
    +--- DATA_OFFSET (139264): capacity x record_size -----------------------------+

Producer and consumer counters sit on their own 128-byte lines (two cache lines) so that neither
side's stores invalidate, or get prefetched with, the line the other side writes.

Dimensions (``venue``, ``symbol``, ...) are declared per ring, at most ``MAX_DIMS``: their names in
the dimension table, their values interned once each into the value table that follows the header
(an append-only list: entry k is value id k + 1; the producer stores the entry, then the count with
a release store). The hot path writes only value ids::

    7168    7200    7232    7264    7296  7300
    +-------+-------+-------+-------+-----+
    | dim 0 | dim 1 | dim 2 | dim 3 |count|      names, 32 bytes each, NUL padded; count u32
    +-------+-------+-------+-------+-----+
    8192: MAX_DIM_VALUES x (slot u16 | pad u16 | value 28 bytes, UTF-8, NUL padded)

Two record kinds, fixed size within a ring:

``KIND_POINT`` (32 bytes, the C and Rust writers and ``PointWriter``)::

    0               8               16  18  20      24              32
    +---------------+---------------+---+---+-------+---------------+
    | ts u64        | trace_id u64  |pt |leg|thread | dims u64      |
    +---------------+---------------+---+---+-------+---------------+
      point u16: index in the point table; leg u16: which leg of the trace (below)

``KIND_TICK`` (8 x n_points + 24 bytes, ``TickWriter``): one record per tick holding a stamp for
every declared point; point ids are the positions in the vector, 0 means "not reached"::

    0               8                   8n              8n+8            8n+16           8n+24
    +---------------+-----   ...   -----+---------------+---------------+---------------+
    | ts[0] u64     | ts[1] ...         | trace_id u64  | leg u64       | dims u64      |
    +---------------+-----   ...   -----+---------------+---------------+---------------+

``dims`` (both kinds) is four u16 value ids, slot k = bits 16k..16k+15 = the ring's dimension k,
0 = no value attached by this record. A value may ride on any record of the trace (the symbol
after decoding, the venue at the socket): the trace (and each of its legs) gets every value its
records attached.

Legs: one trace (one tick) may fan out into several orders. A point declared with ``POINT_LEG``
is stamped once per leg, as is every point the declarations place after it; the points before it
are shared by the trace. A record names its leg with ``leg`` (0..65535, any numbering unique
within the trace; a tick record's leg word must be below 2^16); on a shared point it is ignored.
Each leg is measured as its own trace (the shared points plus its own) and yields its own
tick-to-trade sample; its acks and fills join it by (trace_id, leg).

The tick kind exists because Python pays ~20 ns to pack one integer and ~60 ns per call: the
writer stamps straight into the free slot it will publish next, and the commit writes only the
trace id and ``head``. The consumer zeroes every slot it has drained before releasing it, so a
writer always starts a tick on a clean slot.

Version 1 (before legs and dimensions) had ``point u32`` and ``aux u64`` in the point record, a
16-byte tick trailer and no dimension tables; a version-1 ring is refused with one line saying so.
"""

from __future__ import annotations

import struct

MAGIC = int.from_bytes(b"TSCOPE01", "little")
LAYOUT_VERSION = 2

KIND_POINT = 1
KIND_TICK = 2
KIND_NAMES = {KIND_POINT: "point", KIND_TICK: "tick"}

# Clock domains of timestamps; the collector converts all of them to CLOCK_MONOTONIC ns.
CLOCK_TSC = 1  # raw rdtsc ticks; converted with the calibration pairs
CLOCK_MONOTONIC = 2  # time.perf_counter_ns() / clock_gettime(CLOCK_MONOTONIC)
CLOCK_REALTIME = 3  # kernel SO_TIMESTAMPING software/hardware stamps
CLOCK_NAMES = {CLOCK_TSC: "tsc", CLOCK_MONOTONIC: "monotonic", CLOCK_REALTIME: "realtime"}
CLOCK_BY_NAME = {v: k for k, v in CLOCK_NAMES.items()}

# Point flags.
POINT_TRADE = 1  # tick-to-trade ends at this point (default: the last declared point)
POINT_LEG = 2  # stamped once per leg: the fan-out (this point and every point after it are per leg)

CACHE_LINE_PAIR = 128

# Line 0: static description, written once before the magic is published.
OFF_MAGIC = 0
OFF_VERSION = 8
OFF_KIND = 12
OFF_RECORD_SIZE = 16
OFF_N_POINTS = 20
OFF_CAPACITY = 24
OFF_CLOCK_DOMAIN = 32
OFF_WRITER_PID = 36
OFF_WRITER_TID = 40
OFF_FLAGS = 44
OFF_CREATED_MONO_NS = 48
OFF_CREATED_REAL_NS = 56
OFF_DATA_OFFSET = 64
OFF_WRITER_NAME = 72
WRITER_NAME_SIZE = 56
STATIC_FORMAT = struct.Struct("<QIIIIQIIIIQQQ56s")
assert STATIC_FORMAT.size == CACHE_LINE_PAIR

# Line 1: producer-owned.
OFF_HEAD = 1 * CACHE_LINE_PAIR
OFF_DROPPED_FULL = OFF_HEAD + 8
OFF_WRITER_HEARTBEAT_NS = OFF_HEAD + 16
OFF_WRITER_CLOSED = OFF_HEAD + 24

# Line 2: consumer-owned.
OFF_TAIL = 2 * CACHE_LINE_PAIR
OFF_READER_HEARTBEAT_NS = OFF_TAIL + 8
OFF_READER_PID = OFF_TAIL + 16

# Calibration pairs: the producer samples its clocks side by side so the collector can fit TSC Hz
# (least squares over the pairs) and map REALTIME onto MONOTONIC.
OFF_CALIB_COUNT = 3 * CACHE_LINE_PAIR
OFF_CALIB_ENTRIES = OFF_CALIB_COUNT + 8
CALIB_SLOTS = 16
CALIB_ENTRY = struct.Struct("<QQQQ")  # tsc, monotonic_raw_ns, monotonic_ns, realtime_ns
assert OFF_CALIB_ENTRIES + CALIB_SLOTS * CALIB_ENTRY.size <= 1024

OFF_POINT_TABLE = 1024
POINT_NAME_SIZE = 48
POINT_STAGE_SIZE = 40
POINT_ENTRY = struct.Struct("<48s40sII")
POINT_ENTRY_SIZE = POINT_ENTRY.size
MAX_POINTS = 64
assert OFF_POINT_TABLE + MAX_POINTS * POINT_ENTRY_SIZE <= 7168

# Dimensions: names, then the count of interned values; the values after the header.
OFF_DIM_NAMES = 7168
DIM_NAME_SIZE = 32
MAX_DIMS = 4  # one u16 slot each in a record's dims word
OFF_DIM_COUNT = OFF_DIM_NAMES + MAX_DIMS * DIM_NAME_SIZE
OFF_DIM_VALUES = 8192
DIM_VALUE_ENTRY = struct.Struct("<HH28s")  # slot, pad, value
DIM_VALUE_SIZE = 28
MAX_DIM_VALUES = 4096  # per ring, all dimensions together (ids are u16: below 65536)
DIM_SLOT_BITS = 16
DATA_OFFSET = OFF_DIM_VALUES + MAX_DIM_VALUES * DIM_VALUE_ENTRY.size
assert OFF_DIM_COUNT + 4 <= OFF_DIM_VALUES

MAX_LEG = 0xFFFF
POINT_RECORD = struct.Struct("<QQHHIQ")  # ts, trace_id, point_id, leg, thread_id, dims
POINT_RECORD_SIZE = POINT_RECORD.size
TICK_TRAILER_SIZE = 24  # trace_id, leg, dims after the n_points u64 stamps


def pack_dims(ids) -> int:
    """The dims word of value ids by slot (``ids[k]`` for dimension k, 0 = none)."""
    word = 0
    for k, v in enumerate(ids):
        if not 0 <= v <= 0xFFFF:
            raise ValueError(f"dimension value id must be 0..65535: slot {k} has {v}")
        word |= v << (DIM_SLOT_BITS * k)
    return word


def tick_record_size(n_points: int) -> int:
    return 8 * n_points + TICK_TRAILER_SIZE


def record_size_for(kind: int, n_points: int) -> int:
    return POINT_RECORD_SIZE if kind == KIND_POINT else tick_record_size(n_points)


def ring_file_size(capacity: int, record_size: int) -> int:
    return DATA_OFFSET + capacity * record_size


def check_capacity(capacity: int) -> None:
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of 2 >= 2: capacity={capacity}")
