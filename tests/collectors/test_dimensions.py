"""Slicing by dimension against a subject labelling known values with known stage lengths
(tests/programs/dims_subject.py): counts exact per value and per leg, percentiles within HDR
precision of the exact values, tags HdrHistogram's own reader opens, the cap's ``other``."""

import json
import sys

import numpy as np
import pytest
from hdrh.log import HistogramLogReader

from support import PROGRAMS, QUIET
from support.cli import run_cli
from tickscope.collectors.session import Session
from tickscope.collectors.session.dimensions import OTHER, dimension_tag, parse_tag
from tickscope.collectors.session.hdr import BulkRecorder, counts_view, new_histogram, percentile_values

SUBJECT = [sys.executable, str(PROGRAMS / "dims_subject.py")]
TICKS = 1200


def profile(d, *options, symbols=3, ticks=TICKS, extra=()):
    out = run_cli("profile", "--out", str(d / "s"), *QUIET, *options, "--", *SUBJECT, str(ticks),
                  "--symbols", str(symbols), "--truth", str(d / "truth.txt"), "--tick-truth", str(d / "ticks.txt"),
                  *extra)  # fmt: skip
    assert out.returncode == 0, out.stderr
    truth = np.loadtxt(d / "truth.txt", dtype=np.int64)  # trace, leg, md.rx, signal, order.tx, symbol, venue
    return d / "s", truth


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return profile(tmp_path_factory.mktemp("dims"))


def tick_truth(path):
    """Every tick of a ``profile`` run, traded or not: trace, md.rx, signal, symbol index."""
    return np.loadtxt(path.parent / "ticks.txt", dtype=np.int64)


def exact_hdr(values, pcts=(50, 90, 99, 99.9)):
    h = new_histogram()
    BulkRecorder(h).record(h, np.asarray(values, np.int64))
    return percentile_values(h, pcts)


def test_every_count_is_exact_per_value_and_per_leg_and_percentiles_are_the_exact_values_in_hdr(run):
    path, truth = run
    s = Session.load(path)
    assert set(s.dimensions) == {"symbol", "venue", "side"}
    t2t = truth[:, 4] - truth[:, 2]
    for venue, leg in (("XNAS", 0), ("BATS", 1)):  # one venue per leg: per venue is per leg
        sel = truth[:, 1] == leg
        v = s.slice("venue", venue).summary()
        assert v["tick_to_trade"]["count"] == v["send"]["count"] == int(sel.sum())
        assert "tick_to_decision" not in v  # venues are known only on orders
        got = [v["tick_to_trade"][k] for k in ("p50", "p90", "p99", "p99_9")]
        assert got == exact_hdr(t2t[sel]).tolist()
        assert v["send"]["max"] == exact_hdr(truth[sel, 4] - truth[sel, 3], [100]).tolist()[0]
    for i in range(3):
        sel = truth[:, 5] == i
        v = s.slice("symbol", f"S{i}").summary()
        assert v["tick_to_trade"]["count"] == int(sel.sum())
        untraded = sum(1 for seq in range(1, TICKS + 1) if seq % 3 == i and seq % 2)
        assert v["tick_to_decision"]["count"] == untraded
        assert [v["tick_to_trade"][k] for k in ("p50", "p99")] == exact_hdr(t2t[sel], (50, 99)).tolist()
    rows = s.dimension_summary["venue"]["values"]
    assert {k: x["rows"] for k, x in rows.items()} == {"XNAS": TICKS // 2, "BATS": TICKS // 4}
    assert not any("ticks" in x for x in rows.values())  # a venue is no tick's own
    assert rows["BATS"]["attribution"]["traces"] == TICKS // 4


def test_a_feed_stage_is_sliced_once_per_tick_over_all_ticks_and_never_under_a_legs_value(run):
    """strategy (md.rx -> signal) comes before the fan-out: per symbol, every tick of that symbol
    is one sample (half of them never trade, a quarter trade twice), exactly its span; under a
    venue or side (attached to orders only) it is not recorded at all."""
    path, truth = run
    ticks = tick_truth(path)
    assert ticks.shape[0] == TICKS
    s = Session.load(path)
    for i in range(3):
        sel = ticks[:, 3] == i
        v = s.slice("symbol", f"S{i}").summary()
        assert v["strategy"]["count"] == int(sel.sum()) == len(range(i or 3, TICKS + 1, 3))
        spans = ticks[sel, 2] - ticks[sel, 1]
        assert [v["strategy"][k] for k in ("p50", "p90", "p99", "p99_9")] == exact_hdr(spans).tolist()
        assert v["strategy"]["max"] == exact_hdr(spans, [100]).tolist()[0]
        # the stage after the fan-out stays per order, with the tick's symbol
        assert v["send"]["count"] == v["tick_to_trade"]["count"] == int((truth[:, 5] == i).sum())
        assert s.dimension_summary["symbol"]["values"][f"S{i}"]["ticks"] == int(sel.sum())
    reader = HistogramLogReader(str(path / "latency.hlog"), new_histogram())
    tags = set()
    while (h := reader.get_next_interval_histogram()) is not None:
        tags.add(h.get_tag())
    assert {t for t in tags if t.startswith("strategy|")} == {f"strategy|symbol=S{i}" for i in range(3)}
    out = run_cli("report", str(path), "--by", "symbol")
    assert out.returncode == 0, out.stderr
    assert f"stages before the fan-out over all {TICKS // 3:,} ticks" in out.stdout


def test_hdrhistogram_own_reader_opens_every_per_dimension_tag(run):
    path, truth = run
    reader = HistogramLogReader(str(path / "latency.hlog"), new_histogram())
    counts = {}
    while (h := reader.get_next_interval_histogram()) is not None:
        counts[h.get_tag()] = counts.get(h.get_tag(), 0) + h.get_total_count()
    assert counts["tick_to_trade|venue=BATS"] == int((truth[:, 1] == 1).sum())
    assert counts["tick_to_trade|symbol=S1"] == int((truth[:, 5] == 1).sum())
    assert counts["tick_to_trade"] == truth.shape[0]


def test_tags_encode_values_hdrhistogram_readers_would_cut():
    tag = dimension_tag("tick_to_trade", {"symbol": "BRK A,B|C=D%"})
    assert " " not in tag and "," not in tag and tag.count("|") == 1 and tag.count("=") == 1
    assert parse_tag(tag) == ("tick_to_trade", {"symbol": "BRK A,B|C=D%"})
    assert parse_tag(dimension_tag("send", {"venue": OTHER})) == ("send", {"venue": OTHER})


def test_report_by_prints_a_stage_table_per_value_and_names_an_unrecorded_slicing(run):
    path, truth = run
    out = run_cli("report", str(path), "--by", "venue")
    assert out.returncode == 0, out.stderr
    assert (
        f"venue = XNAS: {TICKS // 2:,} orders" in out.stdout
        and f"venue = BATS: {TICKS // 4:,} orders" in out.stdout
    )
    bad = run_cli("report", str(path), "--by", "venue,symbol")
    assert bad.returncode == 2 and "record it with --slice venue,symbol" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_cap_keeps_the_rest_under_other_exactly_and_a_combination_is_sliced_on_request(tmp_path):
    path, truth = profile(tmp_path, "--dimension-cap", "2", "--slice", "venue,symbol", symbols=5)
    s = Session.load(path)
    assert len(s.dimensions["symbol"]) == 3 and s.dimensions["symbol"][-1] == OTHER
    other = s.dimension_summary["symbol"]["values"][OTHER]
    kept = [v for v in s.dimensions["symbol"] if v != OTHER]
    folded = {f"S{i}" for i in range(5)} - set(kept)
    assert set(other["values"]) == folded
    sel = np.isin(truth[:, 5], [int(v[1:]) for v in folded])
    assert s.slice("symbol", OTHER).summary()["tick_to_trade"]["count"] == int(sel.sum())
    combo = s.dimensions["venue,symbol"]
    assert len(combo) == 3  # two combinations of their own + other
    total = sum(s.slice("venue,symbol", v).summary()["tick_to_trade"]["count"] for v in combo)
    assert total == truth.shape[0]
    out = run_cli("report", str(path), "--by", "venue,symbol")
    assert out.returncode == 0 and "venue,symbol = other" in out.stdout


def test_compare_by_venue_judges_each_value_and_names_it(tmp_path):
    """One venue's sends made 20 us slower: that venue regresses, the other does not (the
    subject's spans are exact, so BATS's figures are the same on both sides whatever the load)."""
    runs = []
    for name, slow in (("base", ""), ("cand", "XNAS=20")):
        d = tmp_path / name
        d.mkdir()
        path, _ = profile(d, "--interval", "50ms", extra=["--slow", slow, "--gap-us", "300"], ticks=4000)
        runs.append(path)
    out = run_cli("compare", *map(str, runs), "--by", "venue", "--threshold", "p99=50%,p99.9=100%",
                  "--json", str(tmp_path / "c.json"))  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    verdicts = {(r["tag"], r["percentile"]): r["verdict"] for r in rows}
    assert verdicts[("tick_to_trade|venue=XNAS", "p50")] == "regression"
    assert verdicts[("send|venue=XNAS", "p50")] == "regression"
    assert ("tick_to_trade|venue=BATS", "p50") in verdicts
    assert not [k for k, v in verdicts.items() if "BATS" in k[0] and v == "regression"]
    assert "tick_to_trade|venue=XNAS" in out.stdout
    by_symbol = run_cli("compare", *map(str, runs), "--by", "symbol", "--threshold", "p99=50%,p99.9=100%",
                        "--json", str(tmp_path / "s.json"))  # fmt: skip
    assert by_symbol.returncode in (0, 1), by_symbol.stderr
    judged = {r["tag"] for r in json.loads((tmp_path / "s.json").read_text())["rows"]}
    assert {f"strategy|symbol=S{i}" for i in range(3)} <= judged  # the feed stage per tick, per symbol
    assert not [t for t in judged if t.startswith("strategy|venue=")]
    bad = run_cli("compare", *map(str, runs), "--by", "order_type")
    assert bad.returncode == 2 and "--by order_type: no value recorded on both sides" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_merge_keeps_every_per_value_histogram_bucket_for_bucket(run, tmp_path):
    other, _ = profile(tmp_path, symbols=2)
    out = run_cli("merge", str(tmp_path / "m"), f"a={run[0]}", f"b={other}")
    assert out.returncode == 0, out.stderr
    a, b, m = Session.load(run[0]), Session.load(other), Session.load(tmp_path / "m")
    assert set(m.dimensions) == set(a.dimensions) | set(b.dimensions)
    tags = [t for t in set(a.intervals) | set(b.intervals) if parse_tag(t)[1]]
    assert "tick_to_trade|symbol=S2" in tags and "send|venue=BATS" in tags and "strategy|symbol=S2" in tags
    assert not [t for t in m.intervals if t.startswith("strategy|venue=")]
    for tag in tags:
        want = sum(counts_view(s.total(tag)).astype(np.int64)
                   for s in (a, b) if tag in s.intervals)  # fmt: skip
        got = counts_view(m.total(tag)).astype(np.int64)
        assert np.array_equal(got, want), tag
    for venue in ("XNAS", "BATS"):
        merged = m.slice("venue", venue).summary()["tick_to_trade"]["count"]
        assert merged == sum(s.slice("venue", venue).summary()["tick_to_trade"]["count"] for s in (a, b))
    # summary.json as a profiled session has it: plain tags on top, per-value rows under dimensions
    rows = m.dimension_summary["venue"]["values"]
    assert {v: x["rows"] for v, x in rows.items()} == {
        v: a.dimension_summary["venue"]["values"][v]["rows"]
        + b.dimension_summary["venue"]["values"][v]["rows"]
        for v in ("XNAS", "BATS")
    }
    assert rows["BATS"]["tags"]["tick_to_trade"] == m.slice("venue", "BATS").summary()["tick_to_trade"]
    # a symbol's ticks (its feed stages' population) add up too, and its per-tick stage is the merged one
    symbols = m.dimension_summary["symbol"]["values"]
    assert symbols["S1"]["ticks"] == sum(
        s.dimension_summary["symbol"]["values"]["S1"]["ticks"] for s in (a, b)
    )
    assert symbols["S1"]["tags"]["strategy"]["count"] == symbols["S1"]["ticks"] == TICKS // 3 + TICKS // 2
    assert not [t for t in json.loads((tmp_path / "m" / "summary.json").read_text()) if "|" in t]


def test_merge_keeps_each_values_tail_attribution_exact_where_sums_add_and_says_medians_are_not(
    run, tmp_path
):
    """Per value and for the whole session: a merged tail is the union of the inputs' own tails, its
    traces, taken counts and span sums the inputs' added (so its means are exact); a median share
    cannot be merged: null, and the tail says why."""
    other, _ = profile(tmp_path, symbols=2)
    out = run_cli("merge", str(tmp_path / "m"), f"a={run[0]}", f"b={other}")
    assert out.returncode == 0, out.stderr
    a, b, m = Session.load(run[0]), Session.load(other), Session.load(tmp_path / "m")

    def same_sums(merged, parts):
        assert merged["traces"] == sum(p["traces"] for p in parts) and merged["stages"] == parts[0]["stages"]
        assert merged["merged"]["inputs"] == ["a", "b"] and "median" in merged["merged"]["median_share"]
        for key, tail in merged["tails"].items():
            ins = [p["tails"][key] for p in parts]
            n = sum(t["traces"] for t in ins)
            assert tail["traces"] == n and tail["thresholds_ns"] == {
                "a": ins[0]["threshold_ns"],
                "b": ins[1]["threshold_ns"],
            }
            assert tail["median"]["method"] == "not merged"
            for stage, row in tail["stages"].items():
                total = sum(t["stages"][stage]["sum_ns"] for t in ins)
                assert row["sum_ns"] == total and row["mean_ns"] == round(total / n, 1)
                assert row["taken"] == sum(t["stages"][stage]["taken"] for t in ins)
                assert row["median_share"] is None
            assert sum(r["sum_ns"] for r in tail["stages"].values()) == pytest.approx(
                tail["mean_tick_to_trade_ns"] * n, abs=0.05 * n * (1 + 1e-9)
            )  # the mean is rounded to 0.1 ns: off by up to 0.05 ns per trace, that bound included

    same_sums(m.attribution, [a.attribution, b.attribution])
    for venue in ("XNAS", "BATS"):
        parts = [s.dimension_summary["venue"]["values"][venue]["attribution"] for s in (a, b)]
        same_sums(m.dimension_summary["venue"]["values"][venue]["attribution"], parts)
    r = run_cli("report", str(tmp_path / "m"), "--by", "venue")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "not mergeable" in r.stdout, (
        r.stdout + r.stderr
    )
