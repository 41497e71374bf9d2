"""``tickscope compare``: the statistics (false alarms, detection), the outputs and the bad input.

Sessions are synthesised with known properties (tests/support/synth.py): log-normal stage latencies
plus a per-interval multiplicative jitter, the way a noisy neighbour or a GC pause moves a whole
second of ticks together.
"""

import json
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from hdrh.log import HistogramLogWriter

from support.cli import CLI, run_cli
from support.synth import STAGES, synth_session
from tickscope.collectors.session import Session
from tickscope.collectors.session.hdr import new_histogram, percentile_rank
from tickscope.reports.analysis.compare import (
    IMPROVEMENT,
    NOISE,
    REGRESSION,
    WHY_INTERVALS,
    WHY_VALUES,
    CompareError,
    _percentiles,
    compare_sessions,
    parse_thresholds,
)


def compare_paths(baselines, candidates, thresholds=None):
    """Load as ``tickscope compare`` loads, then compare (the analysis takes loaded sessions)."""
    load = Session.load
    return compare_sessions([load(p) for p in baselines], [load(p) for p in candidates], thresholds)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    same = [synth_session(d / f"run{i}", intervals=30, per_interval=400, seed=100 + i) for i in range(40)]
    slow = synth_session(d / "slow", intervals=30, per_interval=400, seed=7, slowdown={"risk": 0.20})
    fast = synth_session(d / "fast", intervals=30, per_interval=400, seed=8, slowdown={"encode": -0.30})
    return {"same": same, "slow": slow, "fast": fast, "dir": d}


@pytest.mark.slow  # 20 comparisons, ~30 s
def test_same_build_pairs_raise_no_regression_in_at_least_19_of_20(sessions):
    runs = sessions["same"]
    regressions = [compare_paths([a], [b]).regressions for a, b in zip(runs[0::2], runs[1::2], strict=True)]
    clean = sum(1 for r in regressions if not r)
    assert clean >= 19, [[(x.tag, x.percentile, round(x.ci_low, 3)) for x in r] for r in regressions if r]


def test_a_20_percent_slowdown_in_one_stage_is_that_stage_only(sessions):
    c = compare_paths([sessions["same"][0]], [sessions["slow"]])
    flagged = {r.tag for r in c.regressions}
    assert flagged == {"risk"}, [(r.tag, r.percentile, r.change) for r in c.regressions]
    risk = {r.percentile: r for r in c.rows if r.tag == "risk"}
    assert risk["p50"].verdict == REGRESSION and 0.15 < risk["p50"].change < 0.25
    assert risk["p50"].ci_low > 0.05, "the whole interval lies beyond the threshold"


def test_an_improvement_is_reported_as_such_and_exits_0(sessions, tmp_path):
    c = compare_paths([sessions["same"][0]], [sessions["fast"]])
    assert not c.regressions and {
        r.verdict for r in c.rows if r.tag == "encode" and r.percentile == "p50"
    } == {IMPROVEMENT}
    out = run_cli("compare", str(sessions["same"][0]), str(sessions["fast"]))
    assert out.returncode == 0 and "improvement" in out.stdout


def test_repeated_runs_per_side_resample_runs_then_their_intervals(sessions):
    runs = sessions["same"]
    c = compare_paths(runs[:6], runs[6:12])
    assert all(r.units.startswith("runs 6/6, intervals 180/180") for r in c.rows) and not c.regressions
    assert all(r.ci_low is not None for r in c.rows)


def test_run_to_run_noise_widens_the_interval_that_one_run_per_side_cannot_see(tmp_path):
    """Same build, but every run draws its own speed (placement, neighbours): +-8% per run. One
    run per side calls that a regression; three runs per side see the run-to-run spread."""
    import numpy as np

    rng = np.random.default_rng(11)

    def runs(prefix, n):
        return [synth_session(tmp_path / f"{prefix}{i}", intervals=20, per_interval=300, seed=int(rng.integers(1e9)),
                              jitter=0.01, slowdown={s: f for s in STAGES for f in [rng.normal(0, 0.08)]})
                for i in range(n)]  # fmt: skip

    base, cand = runs("b", 3), runs("c", 3)
    single = [compare_paths([b], [c]) for b in base for c in cand]
    assert sum(bool(x.regressions) for x in single) >= 3, "one run per side: false alarms"
    pooled = compare_paths(base, cand)
    assert not pooled.regressions
    p50 = next(r for r in pooled.rows if r.tag == "feed" and r.percentile == "p50")
    one = next(r for r in single[0].rows if r.tag == "feed" and r.percentile == "p50")
    assert (p50.ci_high - p50.ci_low) > 2 * (one.ci_high - one.ci_low)


def test_tail_percentiles_need_values_beyond_them(tmp_path):
    a = synth_session(tmp_path / "a", intervals=10, per_interval=200, seed=1)  # 2,000 values
    b = synth_session(tmp_path / "b", intervals=10, per_interval=200, seed=2, slowdown={"risk": 1.0})
    c = compare_paths([a], [b])
    risk = {r.percentile: r for r in c.rows if r.tag == "risk"}
    assert risk["p50"].verdict == REGRESSION and risk["p99.9"].verdict == "inconclusive"
    assert "too few values for p99.9" in risk["p99.9"].units and any("risk p99.9" in w for w in c.warnings)


def test_cli_exit_codes_and_every_output(sessions, tmp_path):
    base, slow = str(sessions["same"][0]), str(sessions["slow"])
    md, xml, js, html = (tmp_path / f"out.{e}" for e in ("md", "xml", "json", "html"))
    out = run_cli(
        "compare",
        base,
        slow,
        "--markdown",
        str(md),
        "--junit",
        str(xml),
        "--json",
        str(js),
        "--html",
        str(html),
    )
    assert out.returncode == 1, out.stderr
    assert "regression" in out.stdout and "risk" in out.stdout
    text = md.read_text()
    assert text.startswith("### tickscope compare: **regression**") and "| risk | p50 |" in text
    suite = ET.parse(xml).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == (len(STAGES) + 1) * 4
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert (
        failed
        and all(name.startswith("risk ") for name in failed)
        and suite.get("failures") == str(len(failed))
    )
    doc = json.loads(js.read_text())
    assert (
        doc["verdict"] == "regression" and doc["thresholds"]["p99"] == 0.10 and len(doc["rows"]) == len(cases)
    )
    assert "data-chart" in html.read_text()
    same = run_cli("compare", base, str(sessions["same"][1]))
    assert same.returncode == 0, same.stdout + same.stderr
    several = run_cli("compare", *map(str, sessions["same"][:3]), "--vs", *map(str, sessions["same"][3:6]))
    assert several.returncode == 0, several.stdout + several.stderr


def test_p99_99_is_judged_when_given_a_threshold_and_says_when_it_has_too_few_values(tmp_path):
    a = synth_session(tmp_path / "a", intervals=10, per_interval=200, seed=1)  # 2,000 values
    b = synth_session(tmp_path / "b", intervals=10, per_interval=200, seed=2)
    assert "p99.99" not in {r.percentile for r in compare_paths([a], [b]).rows}, "opt-in: not by default"
    c = compare_paths([a], [b], "p99.99=30%")
    tail = [r for r in c.rows if r.percentile == "p99.99"]
    assert tail and all(r.verdict == "inconclusive" and r.threshold == 0.30 for r in tail)
    assert all("too few values for p99.99" in r.units for r in tail)
    with pytest.raises(CompareError, match="max and mean are not estimates"):
        parse_thresholds("max=10%")


def test_thresholds_are_configurable(sessions):
    assert parse_thresholds("p50=10%, p99.9=30") == {"p50": 0.10, "p90": 0.05, "p99": 0.10, "p99.9": 0.30}
    c = compare_paths([sessions["same"][0]], [sessions["slow"]], "p50=50%,p90=50%,p99=50%,p99.9=50%")
    assert not c.regressions and {r.verdict for r in c.rows if r.tag == "risk" and r.percentile == "p50"} == {
        NOISE
    }


@pytest.mark.parametrize(
    "args, needle",
    [
        (["{d}/missing", "{base}"], "missing"),
        (["{base}", "{base}", "--threshold", "p99=abc"], "p99=abc"),
        (["{base}", "{base}", "--threshold", "p42=5%"], "p42=5%"),
        (["{base}"], "BASELINE CANDIDATE"),
        (["--vs", "{base}"], "at least one baseline"),
        (["{base}", "--vs", "{base}", "--vs", "{base}"], "give it once"),
        (["{base}", "{empty}"], "latency.hlog"),
        (["{base}", "{damaged}"], "latency.hlog"),
        (["{base}", "{base}", "--markdown", "{d}/no/such/dir/x.md"], "cannot write"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sessions, tmp_path, args, needle):
    base = sessions["same"][0]
    empty, damaged = tmp_path / "empty", tmp_path / "damaged"
    for d in (empty, damaged):
        d.mkdir()
        (d / "meta.json").write_text((base / "meta.json").read_text())
    (empty / "latency.hlog").write_text("")
    lines = (base / "latency.hlog").read_text().splitlines()
    lines[len(lines) // 2] = lines[len(lines) // 2][:-60]  # a line cut in the middle of the log
    (damaged / "latency.hlog").write_text("\n".join(lines) + "\n")
    fmt = {"d": tmp_path, "base": base, "empty": empty, "damaged": damaged}
    out = run_cli("compare", *[a.format(**fmt) for a in args])
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert needle in out.stderr, out.stderr


def test_a_log_cut_off_at_the_end_is_compared_with_a_warning(sessions, tmp_path):
    """A killed writer leaves a half-written last line: the complete intervals still count."""
    base = sessions["same"][0]
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "meta.json").write_text((base / "meta.json").read_text())
    (cut / "latency.hlog").write_text((base / "latency.hlog").read_text()[:-80])
    out = run_cli("compare", str(base), str(cut))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "last line truncated" in out.stdout


def test_different_stage_sets_and_hosts_warn_and_compare_the_common_stages(tmp_path):
    a = synth_session(tmp_path / "a", intervals=10, per_interval=200, stages=["feed", "book", "risk"])
    b = synth_session(tmp_path / "b", intervals=10, per_interval=200, seed=2, stages=["feed", "book", "encode"],
                      hostname="other-host")  # fmt: skip
    c = compare_paths([a], [b])
    assert {r.tag for r in c.rows} == {"feed", "book", "tick_to_trade"}
    text = " ".join(c.warnings)
    assert "stage sets differ" in text and "'risk'" in text and "'encode'" in text
    assert "other-host" in text and "compared anyway" in text
    out = run_cli("compare", str(a), str(b))
    assert out.returncode in (0, 1) and "warning: stage sets differ" in out.stdout


def test_bare_hlogs_of_other_tools_compare_by_tag(tmp_path):
    """An interval log as HdrHistogram's Java HistogramLogWriter or wrk2 writes it (absolute
    start timestamps, untagged intervals, ms units) compares like our sessions."""
    import numpy as np

    def write(path, scale, seed):
        rng = np.random.default_rng(seed)
        with open(path, "w") as f:
            w = HistogramLogWriter(f)
            w.output_comment("written by a test, as the Java tools do")
            w.output_log_format_version()
            # hdrh's output_start_time is broken (fromtimestamp of ms): the Java tools' line, by hand.
            f.write("#[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]\n")
            w.output_legend()
            for i in range(20):
                h = new_histogram()
                h.set_start_time_stamp(1_700_000_000_000 + i * 1000)
                h.set_end_time_stamp(1_700_000_000_000 + (i + 1) * 1000)
                for v in rng.lognormal(np.log(2000 * scale), 0.3, 500).astype(int):
                    h.record_value(int(v))
                w.output_interval_histogram(h)
        return path

    base = write(tmp_path / "base.hlog", 1.0, 1)
    same = write(tmp_path / "same.hlog", 1.0, 2)
    slow = write(tmp_path / "slow.hlog", 1.3, 3)
    assert not compare_paths([base], [same]).regressions
    c = compare_paths([base], [slow])
    assert c.regressions and c.rows[0].units.startswith("intervals 20/20")
    out = run_cli("compare", str(base), str(slow), "--junit", str(tmp_path / "j.xml"))
    assert out.returncode == 1 and (tmp_path / "j.xml").exists()


def test_the_headline_counts_decided_and_inconclusive_rows_and_says_why(tmp_path):
    """2,000 values per side: p99.9 has 2 values beyond it on each side, so every p99.9 row is
    inconclusive for too few values, and the headline says so next to the verdict."""
    a = synth_session(tmp_path / "a", intervals=10, per_interval=200, seed=1)
    b = synth_session(tmp_path / "b", intervals=10, per_interval=200, seed=2)
    c = compare_paths([a], [b])
    tags = len(STAGES) + 1
    assert c.inconclusive_reasons.get(WHY_VALUES) == tags
    assert c.decided + len(c.inconclusive) == len(c.rows) == tags * 4
    assert c.headline.startswith(f"no regression: {c.decided} of {tags * 4} comparisons decided, ")
    assert f"{tags} {WHY_VALUES}" in c.headline
    doc = c.as_dict()
    assert doc["decided"] == c.decided and doc["inconclusive"] == len(c.inconclusive)
    assert doc["inconclusive_reasons"][WHY_VALUES] == tags


def test_nothing_decided_is_inconclusive_and_max_inconclusive_fails_ci(tmp_path):
    """Three 1 s intervals per side: no confidence interval anywhere. The verdict is
    'inconclusive', never 'no regression'; --max-inconclusive 50% turns it into exit 3."""
    a = synth_session(tmp_path / "a", intervals=3, per_interval=2000, seed=1)
    b = synth_session(tmp_path / "b", intervals=3, per_interval=2000, seed=2)
    c = compare_paths([a], [b])
    assert c.decided == 0 and c.verdict == "inconclusive" and WHY_INTERVALS in c.inconclusive_reasons
    md, js, xml = tmp_path / "c.md", tmp_path / "c.json", tmp_path / "c.xml"
    plain = run_cli("compare", str(a), str(b), "--markdown", str(md), "--json", str(js), "--junit", str(xml))
    assert plain.returncode == 0, plain.stderr
    assert "inconclusive: 0 of" in plain.stdout and WHY_INTERVALS in plain.stdout
    assert (
        md.read_text().startswith("### tickscope compare: **inconclusive**")
        and WHY_INTERVALS in md.read_text()
    )
    assert json.loads(js.read_text())["decided"] == 0
    props = {p.get("name"): p.get("value") for p in ET.parse(xml).getroot().iter("property")}
    assert props["decided"] == "0" and props["verdict"] == "inconclusive"
    gated = run_cli("compare", str(a), str(b), "--max-inconclusive", "50%")
    assert gated.returncode == 3 and "more than --max-inconclusive 50%" in gated.stdout
    allowed = run_cli("compare", str(a), str(b), "--max-inconclusive", "100%")
    assert allowed.returncode == 0
    bad = run_cli("compare", str(a), str(b), "--max-inconclusive", "lots")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--max-inconclusive" in bad.stderr


def _constant_session(path, tag: str, value_ns: int, intervals: int = 30, per_interval: int = 400):
    from tickscope.collectors.session import SessionWriter

    w = SessionWriter(path, {"name": path.name, "points": [], "stages": []})
    for i in range(intervals):
        h = new_histogram()
        h.record_value(value_ns, per_interval)
        w.write_interval({tag: h}, float(i), float(i + 1), warmup=False)
    w.close()
    return path


def test_a_percentile_of_zero_is_no_change_against_zero_and_a_regression_against_more(tmp_path):
    """A residual that is 0 ns on both sides (md.rx-wire.md on loopback: one skb stamp) is the same,
    not a -100 % improvement; 0 ns going to 5 us is a regression."""
    zero = _constant_session(tmp_path / "zero", "md.rx-wire.md", 0)
    again = _constant_session(tmp_path / "again", "md.rx-wire.md", 0)
    more = _constant_session(tmp_path / "more", "md.rx-wire.md", 5_000)
    same = compare_paths([zero], [again])
    assert {(r.verdict, r.change) for r in same.rows} == {(NOISE, 0.0)}
    worse = compare_paths([zero], [more])
    p50 = worse.rows[0]
    assert {r.verdict for r in worse.rows} == {REGRESSION} and p50.change == p50.candidate_ns - 1


def test_a_reader_that_goes_away_does_not_turn_the_verdict_into_a_regression(sessions):
    """`tickscope compare A B | head -1` exited 1 (regression) for two runs of one build: Rich
    exits 1 when stdout's pipe breaks. The verdict's own code must come through."""
    import os
    import subprocess

    base, same = str(sessions["same"][0]), str(sessions["same"][1])
    whole = run_cli("compare", base, same)
    assert whole.returncode in (0, 3), whole.stdout
    r, w = os.pipe()
    proc = subprocess.Popen([*CLI, "compare", base, same], stdout=w,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(w)
    os.close(r)  # the reader is gone before the first line (head -1 after its line, a dead tee)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == whole.returncode and "Traceback" not in err, err


def test_compare_takes_each_percentile_at_rank_ceil_q_n_like_every_other_output(tmp_path):
    """199 values, each its own HDR bucket: p90 and p99 of 199 are ranks 180 and 198 (hdrh's
    rounding, which compare used, took 179 and 197), in the point estimate and so the bootstrap."""
    import math
    from fractions import Fraction

    from tickscope.collectors.session import SessionWriter
    from tickscope.collectors.session.hdr import BulkRecorder

    values = [round(1000 * 1.01**j) for j in range(1, 200)]
    w = SessionWriter(tmp_path / "s", {"name": "s", "points": [], "stages": []})
    for i in range(10):
        h = new_histogram()
        BulkRecorder(h).record(h, np.array(values[i::10], dtype=np.int64))
        w.write_interval({"t2t": h}, float(i), float(i + 1), warmup=False)
    w.close()
    h = new_histogram()
    c = compare_paths([tmp_path / "s"], [tmp_path / "s"])
    for r in c.rows:
        rank = math.ceil(Fraction(r.percentile[1:]) * len(values) / 100)
        assert r.baseline_ns == r.candidate_ns == h.get_highest_equivalent_value(values[rank - 1]), r


@pytest.mark.parametrize("seed", range(8))
def test_bootstrap_percentiles_are_those_of_each_rows_cumulative_counts(seed):
    """The binary searches read each resample's percentiles as the definition does: the first bucket
    whose cumulative count in ``weights @ matrix`` reaches percentile_rank of its total (resamples
    that drew nothing, intervals of zeros, ties at a rank, one bucket, percentiles in any order)."""
    rng = np.random.default_rng(seed)
    resamples, intervals, width = (
        int(rng.integers(1, 300)),
        int(rng.integers(1, 40)),
        int(rng.integers(1, 400)),
    )
    matrix = rng.poisson(rng.choice([0.05, 0.5, 5.0]), (intervals, width)).astype(np.float64)
    matrix[rng.random(intervals) < 0.2] = 0  # an interval with nothing in this stage
    weights = rng.multinomial(intervals, np.full(intervals, 1 / intervals), size=resamples).astype(np.float64)
    weights[rng.random(resamples) < 0.1] = 0  # resamples that drew nothing
    values = np.sort(rng.integers(1, 10**9, width)).astype(np.float64)
    pcts = [99.9, 50.0, 99.99, 90.0, 99.0, 100.0, 0.0][: int(rng.integers(1, 8))]
    cum = np.cumsum(weights @ matrix, axis=1)
    want = np.stack(
        [
            values[np.minimum((cum < percentile_rank(p, cum[:, -1])[:, None]).sum(axis=1), width - 1)]
            for p in pcts
        ],
        axis=1,
    )
    assert np.array_equal(_percentiles(weights, matrix, values, pcts), want)
