"""A histogram's V2 encoding (an hlog line's payload), byte for byte what ``hdrh``'s ``encode()`` makes,
without its per-encode costs.

hdrh's ``encode()`` is three steps: ZigZag LEB128 varints of the counts up to the bucket of the
maximum (a run of empty buckets is one negative varint), a 40-byte payload header in front,
``zlib.compress`` at the default level, then base64 of an 8-byte cookie and length in front of
the compressed bytes. On a collector rolling ~180 small interval histograms a second the cost was
not the varints but ``zlib.compress`` itself: every call initialises a fresh deflate state of
~256 KB (window, hash chains, pending buffer), which glibc hands back to the kernel at the free
and faults in again at the next call: ~35 µs of the ~40 µs an encode took, whatever the size.

Here the varints are written by one numba pass into a buffer kept between encodes, and the
deflate stream is the same zlib library's (the one Python's ``zlib`` module runs, checked by
version), initialised once with ``zlib.compress``'s exact parameters and ``deflateReset`` before
each payload: reset is what initialisation ends with, so the output is the same bytes
(``tests/collectors/test_hlog_codec.py`` holds it to ``hdrh`` over random histograms). Where that
library cannot be loaded, ``zlib.compress`` is used: slower, same bytes.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import struct
import threading
import weakref
import zlib

import numpy as np
from hdrh.histogram import HdrHistogram
from numba import njit

PAYLOAD_HEADER_SIZE = 40  # hdrh.codec.PayloadHeader: cookie, payload_len, ... conversion_ratio_bits
COMPRESSION_COOKIE = 0x1C849304 | 0x10  # hdrh.codec.get_compression_cookie()
MAX_VARINT_BYTES = 9
_TOO_BIG = -1


@njit("int64(uint64[:], int64, uint8[:], int64)", cache=True, nogil=True)
def _write_varints(counts, n, out, at):  # pragma: no cover - compiled
    """The first ``n`` counts as V2 varints into ``out`` from ``at``; the end offset, or -1 for a
    count of 2**63 or more (hdrh raises OverflowError there: ZigZag holds 63 bits)."""
    i = 0
    while i < n:
        c = counts[i]
        i += 1
        if c == 0:
            zeros = 1
            while i < n and counts[i] == 0:
                zeros += 1
                i += 1
            z = np.uint64(2 * zeros - 1)  # ZigZag of -zeros
        elif c >= np.uint64(1 << 63):
            return _TOO_BIG
        else:
            z = c << np.uint64(1)
        # LEB128, except that the ninth byte carries eight bits (no continuation bit left)
        k = 0
        while k < 8 and (z >> np.uint64(7)) != 0:
            out[at] = np.uint8((z & np.uint64(0x7F)) | np.uint64(0x80))
            z >>= np.uint64(7)
            at += 1
            k += 1
        out[at] = np.uint8(z & np.uint64(0xFF))
        at += 1
    return at


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


Z_OK, Z_STREAM_END, Z_FINISH, Z_DEFLATED, Z_DEFAULT_STRATEGY = 0, 1, 4, 8, 0
DEF_MEM_LEVEL = 8  # what zlib.compress passes (CPython's zlibmodule.c)


def _load_libz():
    """The zlib Python's own ``zlib`` module runs, or None (then ``zlib.compress`` is used)."""
    name = ctypes.util.find_library("z")
    try:
        lib = ctypes.CDLL(name or "libz.so.1")
    except OSError:
        return None
    lib.zlibVersion.restype = ctypes.c_char_p
    if lib.zlibVersion().decode() != zlib.ZLIB_RUNTIME_VERSION:
        return None
    lib.deflateInit2_.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]  # fmt: skip
    lib.deflateReset.argtypes = lib.deflateEnd.argtypes = [ctypes.POINTER(_ZStream)]
    lib.deflate.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int]
    lib.deflateBound.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_ulong]
    lib.deflateBound.restype = ctypes.c_ulong
    return lib


_LIBZ = _load_libz()


class _Deflater:
    """One deflate state, reset per payload: ``zlib.compress(data)``'s bytes without its allocation."""

    def __init__(self):
        self.stream = _ZStream()
        rc = _LIBZ.deflateInit2_(ctypes.byref(self.stream), zlib.Z_DEFAULT_COMPRESSION, Z_DEFLATED, zlib.MAX_WBITS,
                                 DEF_MEM_LEVEL, Z_DEFAULT_STRATEGY, _LIBZ.zlibVersion(), ctypes.sizeof(_ZStream))  # fmt: skip
        if rc != Z_OK:
            raise MemoryError(f"zlib deflateInit2 failed ({rc})")
        self.out = np.empty(0, np.uint8)
        weakref.finalize(self, _LIBZ.deflateEnd, ctypes.byref(self.stream))

    def compress(self, data: np.ndarray, n: int) -> bytes:
        s = self.stream
        bound = _LIBZ.deflateBound(ctypes.byref(s), n)
        if self.out.size < bound:
            self.out = np.empty(max(bound, 2 * self.out.size), np.uint8)
        _LIBZ.deflateReset(ctypes.byref(s))
        s.next_in, s.avail_in = data.ctypes.data, n
        s.next_out, s.avail_out = self.out.ctypes.data, self.out.size
        rc = _LIBZ.deflate(ctypes.byref(s), Z_FINISH)
        if rc != Z_STREAM_END:  # deflateBound is an upper bound: never, unless zlib breaks its word
            raise RuntimeError(f"zlib deflate did not finish ({rc})")
        return self.out[: s.total_out].tobytes()


class HlogEncoder:
    """Encodes histograms as ``hdrh``'s ``encode()`` does, keeping its buffers and deflate state
    between calls. One per writing thread (the buffers are reused)."""

    def __init__(self):
        self.buf = np.empty(PAYLOAD_HEADER_SIZE, np.uint8)
        self.deflater = _Deflater() if _LIBZ is not None else None

    def encode(self, hist: HdrHistogram) -> bytes:
        if hist.word_size != 8:  # the collector's histograms are all 64-bit; others take hdrh's way
            return hist.encode()
        n = hist.get_counts_array_index(hist.max_value) + 1 if hist.total_count else 0
        need = PAYLOAD_HEADER_SIZE + MAX_VARINT_BYTES * n
        if self.buf.size < need:
            self.buf = np.empty(max(need, 2 * self.buf.size), np.uint8)
        counts = np.frombuffer(hist.counts, dtype=np.uint64)
        end = _write_varints(counts, n, self.buf, PAYLOAD_HEADER_SIZE)
        if end == _TOO_BIG:
            raise OverflowError(
                "an hlog bucket count of 2**63 or more cannot be encoded "
                "(zigzag varints hold 63 bits: record such counts in several histograms)"
            )
        # hdrh's payload header as the histogram's encoder holds it (a decoded histogram keeps the
        # offsets and ratio it was read with), with this payload's length
        self.buf[:PAYLOAD_HEADER_SIZE] = np.frombuffer(bytes(hist.encoder.payload.payload), np.uint8)
        self.buf[4:8] = np.frombuffer(struct.pack(">I", end - PAYLOAD_HEADER_SIZE), np.uint8)
        if self.deflater is not None:
            compressed = self.deflater.compress(self.buf, end)
        else:
            compressed = zlib.compress(self.buf[:end])
        return base64.b64encode(struct.pack(">II", COMPRESSION_COOKIE, len(compressed)) + compressed)


class _PerThread(threading.local):
    encoder: HlogEncoder | None = None


_per_thread = _PerThread()


def encode(hist: HdrHistogram) -> bytes:
    """``hist.encode()``, the same bytes, with this thread's encoder."""
    encoder = _per_thread.encoder
    if encoder is None:
        encoder = _per_thread.encoder = HlogEncoder()
    return encoder.encode(hist)
