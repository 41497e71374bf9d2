"""Bulk, bit-exact ingestion of values into ``hdrh`` histograms.

``HdrHistogram.record_value`` is pure Python (about a microsecond a value). Here one compiled
kernel (numba, compiled once and cached on disk) computes every value's counts index exactly as
``hdrh`` computes it and adds into the histogram's own counts array in the same pass; a grouped
variant files the values of many histograms (one per dimension value and stage) in one pass too.
The histogram ends up in the same state as after recording the values one by one
(``tests/collectors/test_hdr.py`` checks ``encode()`` equality with hypothesis).

Index arithmetic (hdrh's ``_counts_index_for``), for v >= 0::

    bucket   = bit_length(v | sub_bucket_mask) - unit_magnitude - (sub_bucket_half_count_magnitude + 1)
    sub      = v >> (bucket + unit_magnitude)
    index    = ((bucket + 1) << half_mag) + sub - half_count  ==  (bucket << half_mag) + sub
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import functools
import math
import struct
import sys
import weakref
import zlib
from typing import NamedTuple

import numpy as np
from hdrh.codec import V2_COMPRESSION_COOKIE_BASE, V2_ENCODING_COOKIE_BASE, get_cookie_base
from hdrh.histogram import HdrHistogram, get_bucket_count
from pyhdrh import decode as _decode_varints

LOWEST_NS = 1
HIGHEST_NS = 60 * 1_000_000_000
SIGNIFICANT_DIGITS = 3
CHUNK = 1 << 14  # values per pass where a caller keeps its own working buffers bounded


def new_histogram(
    lowest: int = LOWEST_NS, highest: int = HIGHEST_NS, digits: int = SIGNIFICANT_DIGITS
) -> HdrHistogram:
    return _acyclic(HdrHistogram(lowest, highest, digits))


def _acyclic(hist: HdrHistogram) -> HdrHistogram:
    """``hist`` freed as soon as it is dropped. hdrh's histogram and its encoder refer to each other,
    a cycle only the cyclic garbage collector frees, and it runs by object counts, not bytes: a
    merge of ten 5-digit tags (16 MB of counts each) held 1.2 GB of dropped histograms waiting for
    it. The encoder's way back to its histogram becomes a weak reference."""
    hist.encoder.histogram = weakref.proxy(hist)
    return hist


# Decoding histograms written by anyone. An encoded HdrHistogram carries its own layout
# (lowest, highest trackable value, significant digits) and is decoded into that layout, so a
# 100 s value in another tool's 1 h log is kept, not refused. What a layout would cost is worked
# out from its header alone and refused BEFORE anything is allocated: 56 bytes of base64 can
# declare 5 digits over 1..2**62, 6 M counts (48 MB) per interval.
MAX_COUNTS_LEN = 1 << 21
"""Largest layout decoded: 2,097,152 counts (16 MB per histogram). Every layout of 1-4 significant
digits fits (4 digits over the whole 64-bit range is 819,200); 5 digits fit while highest / lowest
stays below 2**32 (1 ns .. 4.2 s, 1 us .. 71 min). tickscope's own layout (1 ns .. 60 s, 3 digits)
is 27,648."""

_EXT_HEADER = struct.Struct(">II")  # cookie, length of the zlib payload that follows
# cookie, payload_len, normalizing index offset, digits, lowest, highest, int-to-double ratio
_PAYLOAD_HEADER = struct.Struct(">IIIIqqd")
_MAX_VARINT_BYTES = 9  # one count (LEB128-64b9B zig-zag) takes at most 9 bytes


class HistogramDecodeError(ValueError):
    """An encoded histogram that cannot be decoded; the message says why, in one line."""


class LayoutLimitError(HistogramDecodeError):
    """A layout beyond MAX_COUNTS_LEN: refused whole, never mistaken for a truncated line."""


class Layout(NamedTuple):
    """What an encoded histogram declares: its counts array follows from these three numbers."""

    lowest: int
    highest: int
    digits: int

    @property
    def counts_len(self) -> int:
        """hdrh's counts_len for this layout, computed without allocating anything."""
        return _counts_len(self)

    @property
    def magnitudes(self) -> tuple[int, int]:
        """(unit_magnitude, sub_bucket_half_count_magnitude), computed as hdrh computes them."""
        unit_magnitude = int(math.floor(math.log(self.lowest) / math.log(2)))
        mag = int(math.ceil(math.log(2 * math.pow(10, self.digits)) / math.log(2)))
        return unit_magnitude, (mag - 1 if mag > 1 else 0)

    def check(self) -> None:
        """The layout is one hdrh can hold and within MAX_COUNTS_LEN, or HistogramDecodeError."""
        lo, hi, digits = self
        if not 1 <= digits <= 5:
            raise HistogramDecodeError(f"declares {digits} significant digits (HdrHistogram allows 1..5)")
        if lo < 1 or hi < 2 * lo:
            raise HistogramDecodeError(
                f"declares an impossible range {lo}..{hi} (needs 1 <= lowest, 2 x lowest <= highest)"
            )
        unit_magnitude, half_mag = self.magnitudes
        if unit_magnitude + half_mag > 61:
            raise HistogramDecodeError(f"declares lowest {lo} with {digits} digits: beyond 64-bit values")
        n = self.counts_len
        if n > MAX_COUNTS_LEN:
            raise LayoutLimitError(
                f"declares a layout of {n:,} counts ({lo}..{hi}, {digits} digits, {n * 8 / 1e6:,.0f} MB), "
                f"more than the {MAX_COUNTS_LEN:,} tickscope decodes (re-record with fewer significant digits "
                "or a narrower range)"
            )


@functools.lru_cache(maxsize=64)
def _counts_len(layout: Layout) -> int:
    unit_magnitude, half_mag = layout.magnitudes
    sub_bucket_count = 1 << (half_mag + 1)
    return (get_bucket_count(layout.highest, sub_bucket_count, unit_magnitude) + 1) * (sub_bucket_count // 2)


def _payload_bytes(payload: str | bytes) -> bytes:
    text = payload.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HistogramDecodeError("not base64") from None
    if len(raw) < _EXT_HEADER.size:
        raise HistogramDecodeError("shorter than the 8-byte header")
    cookie, length = _EXT_HEADER.unpack_from(raw)
    if get_cookie_base(cookie) != V2_COMPRESSION_COOKIE_BASE:
        raise HistogramDecodeError(f"not a compressed V2 HdrHistogram (cookie {cookie:#x})")
    if length != len(raw) - _EXT_HEADER.size:
        raise HistogramDecodeError(f"header says {length} bytes follow, {len(raw) - _EXT_HEADER.size} do")
    return raw[_EXT_HEADER.size :]


def _layout_of(head: bytes) -> Layout:
    cookie, _len, _offset, digits, lowest, highest, _ratio = _PAYLOAD_HEADER.unpack_from(head)
    if get_cookie_base(cookie) != V2_ENCODING_COOKIE_BASE:
        raise HistogramDecodeError(f"not a V2 HdrHistogram payload (cookie {cookie:#x})")
    layout = Layout(lowest, highest, digits)
    layout.check()
    return layout


def decode_histogram(payload: str | bytes) -> HdrHistogram:
    """``HdrHistogram.decode`` that never raises anything but HistogramDecodeError, refuses a layout
    beyond MAX_COUNTS_LEN before allocating it, and never inflates more than the layout can hold."""
    layout, data = _inflate(payload)
    hist = _acyclic(HdrHistogram(*layout))
    found = _varints_into(data, ctypes.addressof(hist.counts), hist.counts_len)
    if found["total"] < 0 or int(counts_view(hist).min()) < 0:  # a count past 2**63 reads negative
        raise HistogramDecodeError("holds negative counts")
    if found["total"]:
        hist.set_internal_tacking_values(
            found["min_nonzero_index"], found["max_nonzero_index"], found["total"]
        )
    return hist


@functools.lru_cache(maxsize=8)
def _scratch(counts_len: int) -> np.ndarray:
    """A zeroed counts array per layout size, reused by ``decode_sparse`` (which zeroes what it used)."""
    return np.zeros(counts_len, np.int64)


def decode_sparse(payload: str | bytes) -> tuple[Layout, np.ndarray, np.ndarray]:
    """``decode_histogram``'s checks and counts without a histogram: the layout, the indexes of
    the buckets that hold counts and those counts (int64). For readers of many intervals that need
    only the counts (``compare``): no 221 KB histogram allocated and zeroed per interval."""
    layout, data = _inflate(payload)
    scratch = _scratch(layout.counts_len)
    try:
        found = _varints_into(data, scratch.ctypes.data, scratch.size)
    except HistogramDecodeError:
        scratch[:] = 0  # refused part way: the counts written before the bad varint go too
        raise
    if not found["total"]:
        return layout, np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = found["min_nonzero_index"], found["max_nonzero_index"] + 1
    held_counts = scratch[lo:hi]
    idx = filled_buckets(held_counts)
    counts = held_counts[idx]
    held_counts[:] = 0
    if found["total"] < 0 or counts.min() < 0:
        raise HistogramDecodeError("holds negative counts")  # a count past 2**63 reads negative
    return layout, idx + lo, counts


def _varints_into(data: bytes, address: int, counts_len: int) -> dict:
    try:
        return _decode_varints(data, _PAYLOAD_HEADER.size, address, counts_len, 8)
    except (IndexError, ValueError, OverflowError) as e:  # a count beyond its own layout, a bad varint
        raise HistogramDecodeError(f"holds counts its layout cannot ({e})") from None


def _inflate(payload: str | bytes) -> tuple[Layout, bytes]:
    """A payload's layout and its inflated bytes (header and varints), checked as
    ``decode_histogram`` says."""
    d = zlib.decompressobj()
    try:
        head = d.decompress(_payload_bytes(payload), _PAYLOAD_HEADER.size)  # the layout, nothing more
        if len(head) < _PAYLOAD_HEADER.size:
            raise HistogramDecodeError("ends inside its header")
        layout = _layout_of(head)
        limit = layout.counts_len * _MAX_VARINT_BYTES
        body = d.decompress(d.unconsumed_tail, limit + 1)
    except zlib.error as e:
        raise HistogramDecodeError(f"damaged zlib data ({e})") from None
    if len(body) > limit:
        raise HistogramDecodeError(f"inflates past the {limit:,} bytes its layout can hold")
    if not d.eof:
        raise HistogramDecodeError("truncated zlib data")
    return layout, head + body


def layout_of(hist: HdrHistogram) -> Layout:
    return Layout(hist.lowest_trackable_value, hist.highest_trackable_value, hist.significant_figures)


def max_recordable(hist: HdrHistogram) -> int:
    """The largest value ``hist`` can count (the top of its last bucket)."""
    return hist.get_highest_equivalent_value(hist.get_value_from_index(hist.counts_len - 1))


def holding(dst: HdrHistogram, src: HdrHistogram) -> HdrHistogram:
    """``dst``, or when some value of ``src`` lies beyond it, a copy of ``dst`` in a layout that holds
    both: the wider range, at the finer precision that stays within MAX_COUNTS_LEN (fewer digits
    rather than a refusal). For totals over intervals of other tools' logs, whose layouts differ."""
    if src.total_count == 0 or src.get_max_value() <= max_recordable(dst):
        return dst
    a, b = layout_of(dst), layout_of(src)
    lowest, highest = (
        min(a.lowest, b.lowest),
        min(max(a.highest, b.highest, 2 * src.get_max_value()), 1 << 62),
    )
    for digits in range(max(a.digits, b.digits), 0, -1):
        if Layout(lowest, highest, digits).counts_len <= MAX_COUNTS_LEN:
            break
    grown = _acyclic(HdrHistogram(lowest, highest, digits))
    add_any(grown, dst)
    return grown


def add_any(dst: HdrHistogram, src: HdrHistogram) -> None:
    """``dst.add(src)`` for any two layouts: numpy for the same layout, else each non-empty bucket
    of ``src`` (a few hundred, not its whole counts array) re-recorded at its value in ``dst``.
    A value beyond ``dst`` lands in its last bucket: ``holding`` first makes that not happen."""
    if (dst.counts_len, dst.unit_magnitude, dst.sub_bucket_half_count_magnitude) == (
        src.counts_len,
        src.unit_magnitude,
        src.sub_bucket_half_count_magnitude,
    ):
        add_into(dst, src)
        return
    if src.total_count == 0:
        return
    src_counts, dst_counts = counts_view(src), counts_view(dst)
    for index in filled_of(src).tolist():
        value = src.get_value_from_index(index)
        dst_counts[min(dst._counts_index_for(value), dst.counts_len - 1)] += src_counts[index]
    dst.total_count += src.total_count
    dst.min_value = min(dst.min_value, src.min_value)
    dst.max_value = max(dst.max_value, src.max_value)


def counts_view(hist: HdrHistogram) -> np.ndarray:
    """The histogram's counts as a writable int64 numpy array (no copy)."""
    return np.ctypeslib.as_array(hist.counts).view(np.int64)


@contextlib.contextmanager
def loading_kernels():
    """Around the import of a compiled-kernel module (imported on first use: commands that never
    bucket a value, --help or a report of a saved session, do not load LLVM): an address-space
    limit too small for LLVM's library is the out-of-memory it is, not a traceback."""
    try:
        yield
    except OSError as e:
        # llvmlite's dlopen under a limit: "failed to map segment", or its own wrapper's words
        said = f"{e} {e.__context__}"
        if "failed to map segment" in said or "libllvmlite" in said:
            raise MemoryError(
                "cannot load numba's LLVM library, which runs the compiled kernels, under this "
                "address-space limit (raise the limit, ulimit -v, by about 150 MB)"
            ) from e
        raise


def compiled_kernels():
    """hdr_kernels.py, numba's compiled kernels, loaded on first use."""
    with loading_kernels():
        from tickscope.collectors.session import hdr_kernels
    return hdr_kernels


_POWERS_OF_TWO = np.left_shift(1, np.arange(63, dtype=np.int64))  # bit_length(x) = how many are <= x


def counts_indexes(values: np.ndarray, mask: int, unit_magnitude: int, half_mag: int) -> np.ndarray:
    """The module doc's index arithmetic as numpy array operations, for 0 <= v: the compiled
    kernel's indexes, without loading LLVM (exact for every int64: the bit length is a search
    over powers of two, not a float logarithm)."""
    bucket = np.searchsorted(_POWERS_OF_TWO, values | mask, side="right") - unit_magnitude - (half_mag + 1)
    return (bucket << half_mag) + (values >> (bucket + unit_magnitude))


class BulkRecorder:
    """Records numpy arrays of values into one hdrh histogram layout; reusable across histograms.

    ``compiled=False`` records with numpy's array operations instead of the compiled kernel: for a
    caller that records a few hundred values at a time and must start fast (the hiccup meter), the
    ~0.8 s of CPU and start-up that loading numba and its kernels takes is more than a run of array
    passes costs. Both leave the histogram as ``record_value`` would (tests/collectors/test_ingest_exact.py)."""

    def __init__(self, template: HdrHistogram, compiled: bool = True):
        self.unit_magnitude = template.unit_magnitude
        self.half_mag = template.sub_bucket_half_count_magnitude
        self.sub_bucket_mask = template.sub_bucket_mask
        self.counts_len = template.counts_len
        self.highest = template.highest_trackable_value
        # Values above this land beyond counts_len; record_value would refuse them.
        self.max_recordable = template.get_highest_equivalent_value(
            template.get_value_from_index(self.counts_len - 1)
        )
        self.compiled = compiled
        if compiled:
            compiled_kernels()  # loaded now, not at the first batch (hdr_kernels._warm)

    def indexes(self, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Counts indexes of ``values`` (each 0 <= v <= max_recordable), into ``out`` (same length)."""
        if not self.compiled:
            out[:] = counts_indexes(np.asarray(values, np.int64), self.sub_bucket_mask, self.unit_magnitude,
                                    self.half_mag)  # fmt: skip
            return out
        compiled_kernels().indexes(
            np.asarray(values, np.int64), out, self.sub_bucket_mask, self.unit_magnitude, self.half_mag
        )
        return out

    def record(self, hist: HdrHistogram, values: np.ndarray) -> int:
        """Record int64 ``values`` (ns) into ``hist``; returns how many were out of range (not recorded)."""
        values = np.asarray(values, dtype=np.int64)
        if values.size == 0:
            return 0
        if not self.compiled:
            return self._record_numpy(hist, values)
        n, lo, hi = compiled_kernels().record(values, counts_view(hist), self.sub_bucket_mask, self.unit_magnitude,
                            self.half_mag, self.max_recordable)  # fmt: skip
        if n:
            hist.total_count += int(n)
            hist.min_value = min(hist.min_value, int(lo))
            hist.max_value = max(hist.max_value, int(hi))
        return int(values.size - n)

    def _record_numpy(self, hist: HdrHistogram, values: np.ndarray) -> int:
        taken = values[(values >= 0) & (values <= self.max_recordable)]
        if taken.size:
            where = counts_indexes(taken, self.sub_bucket_mask, self.unit_magnitude, self.half_mag)
            np.add.at(counts_view(hist), where, 1)
            hist.total_count += int(taken.size)
            hist.min_value = min(hist.min_value, int(taken.min()))
            hist.max_value = max(hist.max_value, int(taken.max()))
        return int(values.size - taken.size)

    def record_groups(self, values: np.ndarray, label: np.ndarray, column_group: np.ndarray, stride: int,
                      n_groups: int, hist_of, absent: tuple[int, int] = (1, 0)) -> int:  # fmt: skip
        """Record a table of samples into many histograms in two compiled passes: cell (i, c) of
        ``values`` (rows x columns) into histogram ``hist_of(label[i, s] * stride + column_group[c])``
        for each s with ``label[i, s] >= 0`` (rows x any: a row in one histogram per slicing),
        unless the cell is within ``absent`` (lo, hi: no sample, not out of range). Between the
        passes, one Python step per histogram that gets samples (its totals), none per sample.
        Returns how many samples were out of range. Each histogram ends up as ``record`` of its
        samples would leave it."""
        if values.size == 0 or label.size == 0:
            return 0
        values = np.ascontiguousarray(values, np.int64).reshape(values.shape[0], -1)
        label = np.ascontiguousarray(label, np.int64).reshape(values.shape[0], -1)
        column_group = np.ascontiguousarray(column_group, np.int64)
        kernels = compiled_kernels()
        recorded, lo, hi, rejected = kernels.group_bounds(
            values, label, column_group, stride, n_groups, absent[0], absent[1], self.max_recordable
        )
        address = np.zeros(n_groups, np.int64)
        held = []  # every histogram written to, alive until the kernel returns (hdr_kernels._add_at)
        for g, n, low, high in zip(*(a.tolist() for a in _at_filled(recorded, lo, hi)), strict=True):
            hist = hist_of(g)
            if hist.counts_len != self.counts_len or hist.word_size != 8:
                raise ValueError(f"histogram {g} is not of the recorder's layout")
            held.append(hist)
            address[g] = ctypes.addressof(hist.counts)
            hist.total_count += n
            hist.min_value = min(hist.min_value, low)
            hist.max_value = max(hist.max_value, high)
        if held:
            kernels.record_groups(values, label, column_group, stride, absent[0], absent[1], self.sub_bucket_mask,
                                  self.unit_magnitude, self.half_mag, self.max_recordable, address)  # fmt: skip
        return int(rejected)


def _at_filled(recorded: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """The groups that got samples: their numbers, sample counts, min and max."""
    g = np.flatnonzero(recorded)
    return g, recorded[g], lo[g], hi[g]


def corrected_values(values: np.ndarray, expected_interval: int) -> np.ndarray:
    """Coordinated-omission correction, as ``record_corrected_value`` does it, for a whole array.

    A value v longer than the expected interval between samples stands for the samples that a
    stalled load generator never sent: v - i, v - 2i, ... down to (but excluding) <= 0.
    """
    values = np.asarray(values, dtype=np.int64)
    if expected_interval <= 0 or values.size == 0:
        return values
    extra = np.where(values > expected_interval, (values - 1) // expected_interval, 0)
    if not extra.any():
        return values
    reps = extra + 1
    base = np.repeat(values, reps)
    starts = np.cumsum(reps) - reps
    step = np.arange(base.size) - np.repeat(starts, reps)
    return base - step * expected_interval


CORRECTION_EXPAND_LIMIT = 4096  # past this many corrected values, a bucket's are counted per bucket


def corrected_histogram(hist: HdrHistogram, expected_interval: int) -> HdrHistogram:
    """A coordinated-omission-corrected copy of ``hist``, as HdrHistogram's
    ``copyCorrectedForCoordinatedOmission`` makes it: each bucket's count taken at the bucket's
    highest equivalent value v and corrected as ``record_corrected_value`` corrects one value
    (v, v - i, v - 2i, ... while above 0). Bucket for bucket equal to calling
    ``record_corrected_value(v, expected_interval, count)`` for every bucket, so the correction can
    be applied after the fact, with an interval known once the interval's counts are. Work and
    memory stay bounded by the layout: a long value over a short interval is counted per
    destination bucket (the progression's members in each), never expanded."""
    out = new_histogram(*layout_of(hist))
    counts = counts_view(hist)
    nz = filled_of(hist)
    if nz.size == 0:
        return out
    i = max(int(expected_interval), 1) if expected_interval > 0 else 0
    values, c = highest_equivalent_values(hist)[nz], counts[nz]
    extra = np.where(values > i, (values - 1) // i, 0) if i else np.zeros_like(values)
    dst = counts_view(out)
    small = extra < CORRECTION_EXPAND_LIMIT
    expanded = corrected_values(values[small], i)
    weights = np.repeat(c[small], extra[small] + 1)
    recorder = BulkRecorder(out)
    idx = np.empty(CHUNK, dtype=np.int64)
    for start in range(0, expanded.size, CHUNK):
        chunk = expanded[start : start + CHUNK]
        ix = recorder.indexes(chunk, idx[: chunk.size])
        dst += np.bincount(ix, weights[start : start + CHUNK], minlength=out.counts_len).astype(np.int64)
    lows = [int(expanded.min())] if expanded.size else []
    lowest, size = bucket_values(out)
    for v, n, k in zip(values[~small], c[~small], extra[~small], strict=True):
        # members of v - k*i (k = 0..K) in each bucket [lo, hi] within [1, v]
        top = int(np.searchsorted(lowest, v, side="right"))
        lo = np.maximum(lowest[:top], 1)
        hi = np.minimum(lowest[:top] + size[:top] - 1, v)
        members = np.where(hi >= lo, (v - lo) // i - (v - hi + i - 1) // i + 1, 0)
        dst[:top] += members * n
        lows.append(int(v - k * i))
    out.total_count = int((c * (extra + 1)).sum())
    out.min_value, out.max_value = min(lows), int(values.max())
    return out


def held(hist: HdrHistogram) -> slice:
    """The counts that can be non-zero: the buckets of the raw minimum to the raw maximum recorded
    (hdrh's ``record_value`` and every recorder here keep both). A roll folds and clears ~100
    interval histograms a second; their whole counts (27,648 buckets, 221 KB each) were ~1 % of a
    core in memory traffic alone, their values a few thousand buckets wide."""
    if hist.total_count == 0:
        return slice(0, 0)
    if hist.min_value > hist.max_value:  # counts without the bookkeeping: all of them
        return slice(0, hist.counts_len)
    return slice(hist.get_counts_array_index(hist.min_value), hist.get_counts_array_index(hist.max_value) + 1)


def add_into(dst: HdrHistogram, src: HdrHistogram) -> None:
    """``dst.add(src)`` for same-layout histograms with numpy, keeping hdrh's raw min/max bookkeeping."""
    if src.total_count == 0:
        return
    at = held(src)
    counts_view(dst)[at] += counts_view(src)[at]
    dst.total_count += src.total_count
    dst.min_value = min(dst.min_value, src.min_value)
    dst.max_value = max(dst.max_value, src.max_value)


def reset(hist: HdrHistogram) -> None:
    """hdrh's reset, without its Python loop over every bucket (it dominated the 1 s interval roll)."""
    counts_view(hist)[held(hist)] = 0
    hist.total_count = 0
    hist.min_value = sys.maxsize
    hist.max_value = 0
    hist.start_time_stamp_msec = sys.maxsize
    hist.end_time_stamp_msec = 0


PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
PERCENTILE_KEYS = ("p50", "p90", "p99", "p99_9", "p99_99")


def percentile_rank(pcts, total) -> np.ndarray:
    """The rank (1-based) of the value every tickscope output reports at percentile ``pcts`` of
    ``total`` values: ceil(p/100 * N), at least 1, so at least p % of the values are <= the answer
    (values 1..7: p90 is 7, p50 is 4). HdrHistogram's Java and JavaScript ``getValueAtPercentile``
    and Prometheus's ``histogram_quantile`` rank the same way; hdrh (Python) rounds p/100 * N
    instead, which can name a value below the fraction asked (p99.9 of 8,929 values: rank 8,920,
    99.899 %).

    The product is computed as hdr-histogram-js computes it, less one ulp before rounding up, so
    that 99.9 % of 1,000 (999.0000000000001 in floating point) is rank 999, not 1,000. Vectorised
    over ``pcts`` and ``total`` (compare's bootstrap ranks thousands of resampled totals at once);
    p is clamped to 0..100. With N = 0 the rank is 1 and callers report 0."""
    q = np.clip(np.asarray(pcts, dtype=np.float64), 0.0, 100.0) / 100.0
    fp = q * np.asarray(total, dtype=np.float64)
    return np.maximum(np.ceil(fp - np.spacing(fp)), 1).astype(np.int64)


def filled_buckets(counts: np.ndarray) -> np.ndarray:
    """The indexes of the non-zero counts (numpy's nonzero on int64 is ~10x slower than on a mask)."""
    return np.flatnonzero(counts != 0)


def filled_of(hist: HdrHistogram) -> np.ndarray:
    """The indexes of the histogram's non-zero counts, scanning only those ``held`` can hold."""
    at = held(hist)
    return filled_buckets(counts_view(hist)[at]) + at.start


def percentile_values(hist: HdrHistogram, pcts, filled: np.ndarray | None = None) -> np.ndarray:
    """Values (ns) at many percentiles at once, at ``percentile_rank``: the highest equivalent
    value of the bucket holding that rank; at p = 0 the lowest equivalent value of the minimum's
    bucket, as HdrHistogram's tools report it. All zeros for an empty histogram. ``filled``: the
    histogram's ``filled_of``, when the caller has it."""
    pcts = np.asarray(pcts, dtype=np.float64)
    if hist.total_count == 0:
        return np.zeros(pcts.shape, dtype=np.int64)
    if filled is None:  # a run fills a few hundred of the ~28k buckets: rank those only
        filled = filled_of(hist)
    at = np.searchsorted(
        np.cumsum(counts_view(hist)[filled]), percentile_rank(pcts, hist.total_count), side="left"
    )
    # beyond the last filled bucket (counts summing short of total_count): the last bucket, as before
    index = np.append(filled, hist.counts_len - 1)[at]
    lowest, size = bucket_values(hist)
    return np.where(pcts > 0, lowest[index] + size[index] - 1, lowest[index])


def percentiles(hist: HdrHistogram, pcts) -> dict[float, int]:
    """``percentile_values`` as {p: value}: the per-percentile figures of summary.json."""
    return {p: int(v) for p, v in zip(pcts, percentile_values(hist, list(pcts)), strict=True)}


def summarize(hist: HdrHistogram) -> dict:
    """count, min, mean, percentiles and max in ns: the per-stage line of summary.json."""
    if hist.total_count == 0:
        return {"count": 0}
    filled = filled_of(hist)  # one scan for the percentiles and the mean
    values = percentile_values(hist, PERCENTILES, filled).tolist()
    out = {
        "count": int(hist.total_count),
        "min": int(hist.get_min_value()),
        "mean": round(mean_of(hist, filled), 1),
    }
    for key, value in zip(PERCENTILE_KEYS, values, strict=True):
        out[key] = value
    out["max"] = int(hist.get_max_value())
    return out


def bucket_values(hist: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Lowest equivalent value and range size of every counts index (cached per layout)."""
    key = (hist.counts_len, hist.unit_magnitude, hist.sub_bucket_half_count_magnitude)
    if key not in _BUCKET_CACHE:
        idx = np.arange(hist.counts_len, dtype=np.int64)
        half_mag, half = hist.sub_bucket_half_count_magnitude, hist.sub_bucket_half_count
        bucket = (idx >> half_mag) - 1
        sub = (idx & (half - 1)) + half
        low_bucket = bucket < 0
        sub = np.where(low_bucket, sub - half, sub)
        bucket = np.where(low_bucket, 0, bucket)
        lowest = sub << (bucket + hist.unit_magnitude)
        size = np.left_shift(1, bucket + hist.unit_magnitude)
        if len(_BUCKET_CACHE) >= 4:  # layouts come from files: bound what they keep alive
            _BUCKET_CACHE.clear()
        _BUCKET_CACHE[key] = (lowest, size)
    return _BUCKET_CACHE[key]


_BUCKET_CACHE: dict = {}


def highest_equivalent_values(hist: HdrHistogram) -> np.ndarray:
    """hdrh's get_highest_equivalent_value of every counts index: what percentiles report."""
    lowest, size = bucket_values(hist)
    return lowest + size - 1


def mean_of(hist: HdrHistogram, filled: np.ndarray | None = None) -> float:
    """hdrh's get_mean_value (each bucket counted at its median equivalent value), vectorised.
    ``filled``: the histogram's ``filled_of``, when the caller has it."""
    if hist.total_count == 0:
        return 0.0
    lowest, size = bucket_values(hist)
    counts = counts_view(hist)
    if filled is None:
        filled = filled_of(hist)
    mid = (lowest[filled] + (size[filled] >> 1)).astype(np.float64)
    return float((mid * counts[filled]).sum() / hist.total_count)
