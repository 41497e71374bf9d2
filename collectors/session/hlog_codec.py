"""A histogram's V2 encoding (an hlog line's payload), byte for byte what ``hdrh``'s ``encode()`` makes,
without its per-encode costs.

hdrh's ``encode()`` is three steps: ZigZag LEB128 varints of the counts up to the bucket of the
maximum (a run of empty buckets is one negative varint), a 40-byte payload header in front,
``zlib.compress`` at the default level, then base64 of an 8-byte cookie and length in front of
the compressed bytes. In a process that runs numba's kernels anyway (the collector) the varints
are written by one compiled pass (``hdr_kernels.write_varints``) into a buffer kept between
encodes, and ``zlib.compress`` deflates it in place (``tests/collectors/test_hlog_codec.py`` holds
the bytes to ``hdrh``'s over random histograms); elsewhere ``hdrh``'s ``encode()`` does it, after
a check that keeps its C encoder from aborting the process (``_check_counts``).

Deflate is most of an encode (~54 µs of ~80 on the bundled pipeline's lines, this 2-vCPU host).
A deflate state kept between encodes through ctypes (``deflateReset``) was ~10 % slower than
``zlib.compress`` once the collector keeps freed memory (``keep_freed_memory``: the fresh state no
longer faults in at each call), so it went. A lower level (1: ~half the time) would give other
bytes than ``hdrh``'s, which every reader opens alike but no test could then hold to ``hdrh``.
"""

from __future__ import annotations

import base64
import struct
import threading
import zlib

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.session.hdr import compiled_kernels, counts_view, held

PAYLOAD_HEADER_SIZE = 40  # hdrh.codec.PayloadHeader: cookie, payload_len, ... conversion_ratio_bits
COMPRESSION_COOKIE = 0x1C849304 | 0x10  # hdrh.codec.get_compression_cookie()
MAX_VARINT_BYTES = 9
TOO_BIG_MESSAGE = ("an hlog bucket count of 2**63 or more cannot be encoded "
                   "(zigzag varints hold 63 bits: record such counts in several histograms)")  # fmt: skip


class HlogEncoder:
    """Encodes histograms as ``hdrh``'s ``encode()`` does. ``compiled``: the varints by the compiled
    writer into a buffer kept between calls (one encoder per writing thread); otherwise by
    ``hdrh``'s own ``encode()``, whose counts are checked first (``_check_counts``)."""

    def __init__(self, compiled: bool):
        self.compiled = compiled
        self.buf = np.empty(PAYLOAD_HEADER_SIZE, np.uint8)

    def encode(self, hist: HdrHistogram) -> bytes:
        if not self.compiled or hist.word_size != 8:  # the collector's are all 64-bit: others take hdrh's way
            _check_counts(hist)
            return hist.encode()
        n = hist.get_counts_array_index(hist.max_value) + 1 if hist.total_count else 0
        need = PAYLOAD_HEADER_SIZE + MAX_VARINT_BYTES * n
        if self.buf.size < need:
            self.buf = np.empty(max(need, 2 * self.buf.size), np.uint8)
        counts = np.frombuffer(hist.counts, dtype=np.uint64)
        # the empty buckets below the minimum's (hdrh's own bookkeeping: held) as one run, unscanned
        lead = held(hist).start if n else 0
        if lead and counts[lead] == 0:  # bookkeeping wider than the counts: scan it all
            lead = 0
        kernels = compiled_kernels()
        end = kernels.write_varints(counts, lead, n, self.buf, PAYLOAD_HEADER_SIZE)
        if end == kernels.TOO_BIG:
            raise OverflowError(TOO_BIG_MESSAGE)
        # hdrh's payload header as the histogram's encoder holds it (a decoded histogram keeps the
        # offsets and ratio it was read with), with this payload's length
        self.buf[:PAYLOAD_HEADER_SIZE] = np.frombuffer(bytes(hist.encoder.payload.payload), np.uint8)
        self.buf[4:8] = np.frombuffer(struct.pack(">I", end - PAYLOAD_HEADER_SIZE), np.uint8)
        compressed = zlib.compress(self.buf[:end])
        return base64.b64encode(struct.pack(">II", COMPRESSION_COOKIE, len(compressed)) + compressed)


def _check_counts(hist: HdrHistogram) -> None:
    """hdrh's C encoder means to raise OverflowError for a count ZigZag cannot hold (2**63 or
    more) but frees a buffer it does not own and aborts the process: such a count is refused here
    first, in the same words as the compiled writer."""
    if hist.word_size == 8 and hist.total_count:  # the counts hdrh encodes: up to the maximum's bucket
        counts = counts_view(hist)[: hist.get_counts_array_index(hist.max_value) + 1]
        if counts.size and counts.view(np.uint64).max() >= np.uint64(1 << 63):
            raise OverflowError(TOO_BIG_MESSAGE)


class _PerThread(threading.local):
    encoder: HlogEncoder | None = None


_per_thread = _PerThread()
_compiled = False  # use_compiled_writer() turns it on, for the whole process


def use_compiled_writer() -> None:
    """Encode with the compiled varint writer from now on, in every thread: for a process that
    loads numba's kernels anyway (the collector's ``load_kernels``). It saves 12-35 us of an
    encode of 50-370 us (10-25 %); a command that would load numba only for it (``merge``,
    ``wire``, ``sweep``: ~0.7 s of CPU and start-up) encodes with hdrh's own ``encode()``."""
    global _compiled
    compiled_kernels()
    _compiled = True


def encode(hist: HdrHistogram) -> bytes:
    """``hist.encode()``, the same bytes, with this thread's encoder."""
    encoder = _per_thread.encoder
    if encoder is None or encoder.compiled != _compiled:
        encoder = _per_thread.encoder = HlogEncoder(_compiled)
    return encoder.encode(hist)
