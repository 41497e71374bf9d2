"""Every offset and size of a tickscope ring file, in one place.

The C header ``probe/include/tickscope_probe.h`` mirrors these constants; ``tests/probe/test_c_probe.py``
compiles a C writer with gcc and reads its ring here, so the two cannot drift apart silently.

A ring file is one single-producer/single-consumer queue: one writer thread, one collector.
All integers are little endian. Counters are monotonically increasing record counts (never
wrapped); a record's slot is ``count & (capacity - 1)``.

Header (8 KiB, then the records)::

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
    +--- DATA_OFFSET: capacity x record_size --------------------------------------+

Producer and consumer counters sit on their own 128-byte lines (two cache lines) so that neither
side's stores invalidate, or get prefetched with, the line the other side writes.

Two record kinds, fixed size within a ring:

``KIND_POINT`` (32 bytes, the C writer and ``PointWriter``)::

    0               8               16      20      24              32
    +---------------+---------------+-------+-------+---------------+
    | ts u64        | trace_id u64  |point  |thread | aux u64       |
    +---------------+---------------+-------+-------+---------------+

``KIND_TICK`` (8 x n_points + 16 bytes, ``TickWriter``): one record per tick holding a stamp for
every declared point; point ids are the positions in the vector, 0 means "not reached"::

    0               8                   8n              8n+8            8n+16
    +---------------+-----   ...   -----+---------------+---------------+
    | ts[0] u64     | ts[1] ...         | trace_id u64  | aux u64       |
    +---------------+-----   ...   -----+---------------+---------------+

The tick kind exists because Python pays ~20 ns to pack one integer and ~60 ns per call: the
writer stamps straight into the free slot it will publish next, and the commit writes only the
trace id and ``head``. The consumer zeroes every slot it has drained before releasing it, so a
writer always starts a tick on a clean slot.
"""

from __future__ import annotations

import struct

MAGIC = int.from_bytes(b"TSCOPE01", "little")
LAYOUT_VERSION = 1

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
DATA_OFFSET = 8192
assert OFF_POINT_TABLE + MAX_POINTS * POINT_ENTRY_SIZE <= DATA_OFFSET

POINT_RECORD = struct.Struct("<QQIIQ")  # ts, trace_id, point_id, thread_id, aux
POINT_RECORD_SIZE = POINT_RECORD.size
TICK_TRAILER_SIZE = 16  # trace_id, aux after the n_points u64 stamps


def tick_record_size(n_points: int) -> int:
    return 8 * n_points + TICK_TRAILER_SIZE


def record_size_for(kind: int, n_points: int) -> int:
    return POINT_RECORD_SIZE if kind == KIND_POINT else tick_record_size(n_points)


def ring_file_size(capacity: int, record_size: int) -> int:
    return DATA_OFFSET + capacity * record_size


def check_capacity(capacity: int) -> None:
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of 2 >= 2: capacity={capacity}")
