"""Property tests (bounded, derandomized) of everything a report reads from disk: hlog lines and
headers, encoded histograms, meta.json / summary.json / slowest.json. Whatever the bytes, the
only exception is the documented one (SessionError / HistogramDecodeError, one line), and what
loads is well-typed enough for every renderer. Longer campaigns: fuzz/fuzz_hlog.py (atheris)."""

import base64
import json
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from tickscope.collectors.session import Session, SessionError, check_meta, parse_hlog
from tickscope.collectors.session.hdr import (
    BulkRecorder,
    HistogramDecodeError,
    counts_view,
    decode_histogram,
    decode_sparse,
    layout_of,
    new_histogram,
    summarize,
)
from tickscope.reports import console, html, perfetto

BOUNDED = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
LOG = Path("fuzz.hlog")


def payload(values, lowest=1, highest=60 * 10**9, digits=3) -> str:
    h = HdrHistogram(lowest, highest, digits)
    for v in values:
        h.record_value(v)
    return h.encode().decode()


GOOD = payload([900, 1_500, 70_000, 3_000_000])
OTHER = payload([100 * 10**9, 5_000], 1000, 3_600 * 10**9, 2)


def assert_clean(e: Exception) -> None:
    assert str(e) and "\n" not in str(e), repr(e)


def load_everything(text: str) -> None:
    """What ``tickscope report`` does with a log: parse, decode every interval, total, summarise."""
    try:
        intervals, warnings = parse_hlog(text, LOG)
        s = Session(LOG, {"name": "p"}, intervals, {}, None, [], warnings)
        for tag in s.tags:
            summarize(s.total(tag))
            for iv in s.intervals[tag]:
                assert iv.hist.total_count >= 0
        Console(file=open("/dev/null", "w"), width=100).print(console.render(s))  # noqa: SIM115
    except SessionError as e:
        assert_clean(e)


header_line = st.sampled_from(
    ["#[StartTime: ", "#[BaseTime: ", "#[Histogram log format version ", "#"]
).flatmap(lambda head: st.text(max_size=30).map(lambda rest: head + rest))
number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str), st.text(max_size=8)
)
data_line = st.tuples(
    st.one_of(st.none(), st.text(max_size=10)), number, number, number,
    st.one_of(st.sampled_from([GOOD, OTHER, "HIST", GOOD[:50], GOOD[:-4] + "AAAA"]), st.text(max_size=80)),
).map(lambda t: (f"Tag={t[0]}," if t[0] is not None else "") + ",".join(t[1:]))  # fmt: skip
hlog_text = st.lists(st.one_of(header_line, data_line, st.text(max_size=40)), max_size=12).map("\n".join)


@BOUNDED
@given(st.text(max_size=400))
def test_any_text_as_an_hlog_is_parsed_or_one_line_error(text):
    load_everything(text)


@BOUNDED
@given(hlog_text, st.booleans())
def test_hlog_shaped_lines_with_bad_fields_never_escape(text, newline):
    load_everything(text + ("\n" if newline else ""))


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


@BOUNDED
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.one_of(st.none(), st.integers(0, 200)), st.sampled_from([GOOD, OTHER]), st.booleans())  # fmt: skip
def test_a_mutated_histogram_decodes_or_is_a_decode_error(flips, cut, good, inside_zlib):
    raw = base64.b64decode(good)
    if inside_zlib:  # damage the inflated payload (header, varints) and re-wrap it consistently
        body = mutate(zlib.decompress(raw[8:]), flips, cut)
        z = zlib.compress(body)
        raw = raw[:4] + len(z).to_bytes(4, "big") + z
    else:
        raw = mutate(raw, flips, cut)
    text = base64.b64encode(raw).decode()
    try:
        sparse = decode_sparse(text)
    except HistogramDecodeError as e:
        sparse = e
    try:
        h = decode_histogram(text)
    except HistogramDecodeError as e:
        assert_clean(e)
        assert isinstance(sparse, HistogramDecodeError) and str(sparse) == str(e), "the same refusal"
        return
    summarize(h)
    assert (counts_view(h) >= 0).all() and h.total_count == int(counts_view(h).sum())
    assert_same_counts(sparse, h)


def test_a_sparse_decode_refused_part_way_leaves_nothing_for_the_next():
    """``decode_sparse`` reuses one counts array per layout: a payload refused after some of its
    counts were written (a zero run past the layout's end) must not leave them to the next."""
    good = new_histogram()
    good.record_value(0)
    good.record_value(1000)
    raw = base64.b64decode(good.encode())
    body = zlib.decompress(raw[8:])
    # 500 empty buckets, a count of 7 (bucket 500: between the good one's two, which never writes
    # it), a run of empty buckets far past the layout and a count there: refused at that count
    bad = body[:40] + bytes([0xE7, 0x07, 14]) + bytes([0xFF, 0xFF, 0xFF, 0x7F]) + bytes([2])
    bad = bad[:4] + (len(bad) - 40).to_bytes(4, "big") + bad[8:]
    z = zlib.compress(bad)
    with pytest.raises(HistogramDecodeError):
        decode_sparse(base64.b64encode(raw[:4] + len(z).to_bytes(4, "big") + z))
    assert_same_counts(decode_sparse(good.encode()), good)


def assert_same_counts(sparse, h) -> None:
    """``decode_sparse`` holds what ``decode_histogram`` holds: its layout, every bucket with a count."""
    assert not isinstance(sparse, Exception), sparse
    layout, idx, counts = sparse
    dense = counts_view(h)
    assert layout == layout_of(h)
    assert (idx == np.flatnonzero(dense)).all() and (counts == dense[idx]).all()


@BOUNDED
@given(st.lists(st.integers(0, 60 * 10**9), min_size=1, max_size=50))
def test_a_valid_histogram_decodes_exactly_as_hdrh_decodes_it(values):
    h = new_histogram()
    BulkRecorder(h).record(h, np.array(values, dtype=np.int64))
    enc = h.encode()
    ours, theirs = decode_histogram(enc), HdrHistogram.decode(enc)
    assert_same_counts(decode_sparse(enc), theirs)
    assert (counts_view(ours) == counts_view(theirs)).all()
    assert (ours.total_count, ours.min_value, ours.max_value) == (
        theirs.total_count,
        theirs.min_value,
        theirs.max_value,
    )
    assert ours.encode() == enc


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
meta_keys = st.sampled_from(["name", "status", "command", "host", "points", "stages", "trade_point", "counters",
                             "start_epoch_s", "end_epoch_s", "doctor", "side_warnings"])  # fmt: skip
meta_like = st.dictionaries(meta_keys, json_value, max_size=8)
stamp = st.fixed_dictionaries({"point": st.text(max_size=5), "ts_ns": st.integers(), "t_rel_ns": st.integers()},
                              optional={"pid": json_value, "tid": st.integers(), "writer": json_value})  # fmt: skip
trace = st.fixed_dictionaries({"trace_id": json_value, "stamps": st.lists(stamp, max_size=4)},
                              optional={"tick_to_trade_ns": json_value})  # fmt: skip
SESSION_LOG = "\n".join(
    f"Tag={t},{i}.000,1.000,1.0,{GOOD}" for i in range(3) for t in ("feed", "tick_to_trade")
)


def as_file(value, raw: bytes | None) -> bytes:
    return raw if raw is not None else json.dumps(value).encode()


@settings(BOUNDED, max_examples=25)
@given(st.one_of(meta_like, json_value), st.one_of(st.dictionaries(st.text(max_size=6), json_value), json_value),
       st.one_of(st.lists(trace, max_size=3), json_value), st.one_of(st.none(), st.binary(max_size=40)))  # fmt: skip
def test_any_json_files_load_with_warnings_and_every_renderer_copes(meta, summary, slowest, garbage):
    with tempfile.TemporaryDirectory(prefix="tickscope-prop-") as tmp:
        d = Path(tmp)
        (d / "latency.hlog").write_text(SESSION_LOG + "\n")
        (d / "meta.json").write_bytes(as_file(meta, None))
        (d / "summary.json").write_bytes(as_file(summary, garbage))
        (d / "slowest.json").write_bytes(as_file(slowest, None))
        try:
            s = Session.load(d)
        except SessionError as e:
            assert_clean(e)
            return
        Console(file=open("/dev/null", "w"), width=100).print(console.render(s))  # noqa: SIM115
        json.dumps(perfetto.trace_events(s), allow_nan=False)
        html.render(s)


@BOUNDED
@given(json_value)
def test_check_meta_gives_renderers_the_types_they_rely_on(raw):
    meta = check_meta(raw, warnings := [])
    assert all(isinstance(s["name"], str) for s in meta["stages"])
    assert all(isinstance(p, str) for p in meta["points"])
    assert all(isinstance(v, int) and v >= 0 for v in meta["counters"].values())
    assert isinstance(meta["host"], dict) and all("\n" not in w for w in warnings)
