"""A histogram's V2 encoding (an hlog line's payload), byte for byte what ``hdrh``'s ``encode()`` makes,
without its per-encode costs.

hdrh's ``encode()`` is three steps: ZigZag LEB128 varints of the counts up to the bucket of the
maximum (a run of empty buckets is one negative varint), a 40-byte payload header in front,
``zlib.compress`` at the default level, then base64 of an 8-byte cookie and length in front of
the compressed bytes. Here the varints are written by one numba pass into a buffer kept between
encodes, and ``zlib.compress`` deflates it in place (``tests/collectors/test_hlog_codec.py`` holds
the bytes to ``hdrh``'s over random histograms).

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
from numba import njit

from tickscope.collectors.session.hdr import held

PAYLOAD_HEADER_SIZE = 40  # hdrh.codec.PayloadHeader: cookie, payload_len, ... conversion_ratio_bits
COMPRESSION_COOKIE = 0x1C849304 | 0x10  # hdrh.codec.get_compression_cookie()
MAX_VARINT_BYTES = 9
_TOO_BIG = -1


@njit("int64(uint64[:], int64, int64, uint8[:], int64)", cache=True, nogil=True)
def _write_varints(counts, lead, n, out, at):  # pragma: no cover - compiled
    """The first ``n`` counts as V2 varints into ``out`` from ``at``; the end offset, or -1 for a
    count of 2**63 or more (hdrh raises OverflowError there: ZigZag holds 63 bits). ``lead``: the
    counts below it are known empty and ``counts[lead]`` is not (0: nothing known): their run is
    written without a scan."""
    i = lead
    while i < n or lead:
        if lead:
            z = np.uint64(2 * lead - 1)  # ZigZag of -lead
            lead = 0
        else:
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


class HlogEncoder:
    """Encodes histograms as ``hdrh``'s ``encode()`` does, keeping its varint buffer between calls.
    One per writing thread (the buffer is reused)."""

    def __init__(self):
        self.buf = np.empty(PAYLOAD_HEADER_SIZE, np.uint8)

    def encode(self, hist: HdrHistogram) -> bytes:
        if hist.word_size != 8:  # the collector's histograms are all 64-bit; others take hdrh's way
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
        end = _write_varints(counts, lead, n, self.buf, PAYLOAD_HEADER_SIZE)
        if end == _TOO_BIG:
            raise OverflowError(
                "an hlog bucket count of 2**63 or more cannot be encoded "
                "(zigzag varints hold 63 bits: record such counts in several histograms)"
            )
        # hdrh's payload header as the histogram's encoder holds it (a decoded histogram keeps the
        # offsets and ratio it was read with), with this payload's length
        self.buf[:PAYLOAD_HEADER_SIZE] = np.frombuffer(bytes(hist.encoder.payload.payload), np.uint8)
        self.buf[4:8] = np.frombuffer(struct.pack(">I", end - PAYLOAD_HEADER_SIZE), np.uint8)
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
