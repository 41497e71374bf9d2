"""The collector's hlog encoder (the compiled varint writer) writes hdrh's own ``encode()`` bytes,
for any histogram; the commands that load no numba encode with hdrh's, which is kept from aborting."""

import threading

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickscope.collectors.session import hlog_codec
from tickscope.collectors.session.files import HistogramLogWriter
from tickscope.collectors.session.hdr import new_histogram

EXACT = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
LAYOUTS = [(1, 60 * 10**9, 3), (1, 10**7, 2), (1000, 10**12, 4), (1, 2, 1), (1, 10**15, 5)]
COMPILED = hlog_codec.HlogEncoder(compiled=True)  # one thread: its buffer is reused between encodes
COUNT = st.one_of(st.integers(1, 3), st.integers(1, 2**63 - 1), st.just(2**63 - 1), st.just(2**56))


def with_counts(
    layout, counts: dict[int, int] | tuple[np.ndarray, np.ndarray], low: int | None = None
) -> HdrHistogram:
    """A histogram holding ``counts`` (bucket index -> count, or arrays of indexes and uint64
    counts) as hdrh's encoder reads it: counts, total and the maximum (whose bucket ends the
    encoded range). ``low``: the minimum's bucket as the bookkeeping says (what the encoder skips
    unscanned: the first filled one, or below it, as a histogram whose counts were cut may say);
    None: no minimum kept."""
    if isinstance(counts, dict):
        counts = (np.array(list(counts), np.int64), np.array(list(counts.values()), np.uint64))
    index, count = counts
    h = new_histogram(*layout)
    np.frombuffer(h.counts, dtype=np.uint64)[index] = count
    # the exact total (Python's int): the 32-bit halves summed apart cannot overflow 64 bits
    h.total_count = (int((count >> np.uint64(32)).sum()) << 32) + int((count & np.uint64(0xFFFFFFFF)).sum())
    if index.size:
        h.max_value = h.get_value_from_index(int(index.max()))
        if low is not None:
            h.min_value = h.get_value_from_index(low)
    return h


@st.composite
def histograms(draw):
    layout = draw(st.sampled_from(LAYOUTS))
    n = new_histogram(*layout).counts_len
    shape = draw(st.sampled_from(["empty", "single", "sparse", "runs", "every"]))
    if shape == "empty":
        counts = {}
    elif shape == "single":
        counts = {draw(st.integers(0, n - 1)): draw(COUNT)}
    elif shape == "sparse":
        counts = draw(st.dictionaries(st.integers(0, n - 1), COUNT, min_size=1, max_size=60))
    elif shape == "runs":  # runs of full buckets between runs of empty ones, ending anywhere
        counts, i = {}, draw(st.integers(0, 200))
        while i < n:
            for j in range(i, min(n, i + draw(st.integers(1, 40)))):
                counts[j] = draw(st.integers(1, 2**20))
            i = j + 1 + draw(st.integers(1, 3000))
    else:  # every bucket of the layout (up to 4.5 M: as arrays, each count as the integers give it)
        i = np.arange(n, dtype=np.uint64)
        counts = (i.astype(np.int64), 1 + (i * np.uint64(2654435761)) % (np.uint64(1) << (i % np.uint64(63))))
    first = min(counts, default=0) if isinstance(counts, dict) else 0
    low = draw(st.sampled_from([None, first, first // 2]))  # unknown, exact, wider than the counts
    return with_counts(layout, counts, low)


@EXACT
@given(histograms())
def test_encoding_is_hdrh_encode_byte_for_byte(h):
    assert COMPILED.encode(h) == h.encode()


@EXACT
@given(st.lists(st.integers(0, 60 * 10**9), max_size=300), st.sampled_from(LAYOUTS[:3]))
def test_recorded_and_decoded_histograms_encode_as_hdrh_does(values, layout):
    h = new_histogram(*layout)
    for v in values:
        h.record_value(min(v, h.highest_trackable_value))
    assert COMPILED.encode(h) == h.encode()
    # a decoded histogram keeps the header it was read with
    back = HdrHistogram.decode(h.encode())
    assert COMPILED.encode(back) == back.encode() == h.encode()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "hdrh"])
@pytest.mark.parametrize("where", [0, 10, 3000])
def test_a_count_past_63_bits_is_refused(compiled, where):
    """ZigZag holds 63 bits; hdrh's C encoder means to raise OverflowError there but frees a buffer
    it does not own and aborts the process (this test's worker with it), so hdrh's way checks the
    counts before asking it. Both ways refuse in the same words; below that, both encode."""
    encoder = hlog_codec.HlogEncoder(compiled)
    h = with_counts(LAYOUTS[0], {where: 2**63, where + 5: 1}, low=where)
    with pytest.raises(OverflowError, match="2\\*\\*63 or more"):
        encoder.encode(h)
    fits = with_counts(LAYOUTS[0], {where: 2**63 - 1, where + 5: 1}, low=where)
    assert encoder.encode(fits) == COMPILED.encode(fits)


def test_the_process_encodes_with_the_compiled_writer_once_the_collectors_kernels_are_loaded():
    """``load_kernels`` (the collector's) turns the compiled writer on; until then, a command's
    process encodes with hdrh's and loads no numba (``merge``, ``wire``: test_wire_merge_load_no_numba)."""
    from tickscope.collectors.rings.collector import load_kernels

    load_kernels()
    h = with_counts(LAYOUTS[0], {10: 3, 99: 1})
    assert hlog_codec.encode(h) == h.encode() and hlog_codec._per_thread.encoder.compiled


def test_one_encoder_per_thread_gives_the_same_bytes():
    """The varint buffer is reused between encodes: each thread has its own."""
    hists = [with_counts(LAYOUTS[0], {i: i + 1, 3 * i + 7: 5}) for i in range(1, 400, 7)]
    expected = [h.encode() for h in hists]
    got: dict[int, list[bytes]] = {}

    def encode_all(k):
        got[k] = [hlog_codec.encode(h) for _ in range(5) for h in hists][-len(hists) :]

    threads = [threading.Thread(target=encode_all, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(got[k] == expected for k in range(4))


def test_an_hlog_line_carries_hdrh_encoding(tmp_path):
    h = with_counts(LAYOUTS[0], {5: 1, 9000: 3, 12000: 2**40})
    log = HistogramLogWriter(tmp_path / "l.hlog", 0.0)
    log.write("tick_to_trade", h, 0.0, 1.0)
    log.close()
    last = (tmp_path / "l.hlog").read_text().splitlines()[-1]
    assert last.rsplit(",", 1)[1] == h.encode().decode("ascii")
