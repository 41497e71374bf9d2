"""Damaged sessions and other tools' logs, through the real CLI: one line and exit 2, or a warning
and the rest reported; never a traceback. Every command that reads a session is run on each."""

import base64
import json
import re
import struct
import zlib

import pytest
from hdrh.histogram import HdrHistogram

from support.cli import run_cli
from support.synth import synth_session
from tickscope.collectors.session.hdr import MAX_COUNTS_LEN, Layout

HEADER = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'


def hist_line(tag: str | None, start: float, lowest: int, highest: int, digits: int, values) -> str:
    h = HdrHistogram(lowest, highest, digits)
    for v in values:
        assert h.record_value(v)
    prefix = f"Tag={tag}," if tag else ""
    return f"{prefix}{start:.3f},1.000,{h.get_max_value() / 1e6:.3f},{h.encode().decode()}"


def edit_json(name, change):
    def damage(d):
        p = d / name
        p.write_text(json.dumps(change(json.loads(p.read_text()))))

    return damage


def write(name, text):
    return lambda d: (d / name).write_text(text)


def edit_hlog(change):
    def damage(d):
        p = d / "latency.hlog"
        p.write_text("\n".join(change(p.read_text().split("\n"))))

    return damage


def replace_line(k, line):
    def change(lines):
        data = [i for i, x in enumerate(lines) if x.startswith("Tag=")]
        lines[data[k]] = line
        return lines

    return change


def with_stages(value):
    return edit_json("meta.json", lambda m: {**m, "stages": value})


def with_points(value):
    return edit_json("meta.json", lambda m: {**m, "points": value})


def with_counters(value):
    return edit_json("meta.json", lambda m: {**m, "counters": value})


SLOWEST = [{"trace_id": 7, "tick_to_trade_ns": 5000, "stamps": [
    {"point": "md.rx", "ts_ns": 1000, "t_rel_ns": 0, "writer": "trader", "pid": 10, "tid": 10},
    {"point": "p.feed", "ts_ns": 3000, "t_rel_ns": 2000, "writer": "trader", "pid": 10, "tid": 10},
    {"point": "p.send", "ts_ns": 6000, "t_rel_ns": 5000, "writer": "trader", "pid": 10, "tid": 10}]}]  # fmt: skip

# (damage, what the user is told). A warning: the rest is reported (exit 0, or 1 for compare).
WARNINGS = {
    "start-time-not-a-number": (
        edit_hlog(lambda ls: [("#[StartTime: abc]" if x.startswith("#[StartTime") else x) for x in ls]),
        "StartTime 'abc' is not a number",
    ),  # fmt: skip
    "base-time-empty": (
        edit_hlog(lambda ls: [("#[BaseTime:" if x.startswith("#[BaseTime") else x) for x in ls]),
        "BaseTime '' is not a number",
    ),  # fmt: skip
    # Another tool's histogram (1 ns .. 1 h) holding a 100 s value, in the middle of our log.
    "value-beyond-our-layout": (
        edit_hlog(
            replace_line(3, hist_line("tick_to_trade", 0.0, 1, 3_600 * 10**9, 3, [100 * 10**9, 9_000]))
        ),
        None,
    ),  # fmt: skip
    "meta-is-a-list": (write("meta.json", "[1, 2, 3]"), "meta.json is a list, not an object"),
    "meta-is-a-string": (write("meta.json", '"hello"'), "meta.json is a string, not an object"),
    "stages-is-a-string": (with_stages("abc"), "stages is a string, expected a list"),
    "stages-entries-broken": (with_stages([{"name": 3}, "x", None]), "3 of 3 stages entries"),
    "points-is-a-number": (with_points(5), "points is int, expected a list of point names"),
    "counters-is-a-list": (with_counters([1, 2]), "counters is a list, expected an object"),
    "counters-are-strings": (
        with_counters({"produced": "12", "drained": 12, "dropped_ring_full": -1}),
        "counters are non-negative integers; ignored produced='12'",
    ),  # fmt: skip
    "meta-wrong-scalars": (
        edit_json(
            "meta.json",
            lambda m: {**m, "host": "x", "start_epoch_s": 1e300, "trade_point": [1], "doctor": "ok"},
        ),
        "host is a string, expected an object",
    ),  # fmt: skip
    "slowest-garbage": (write("slowest.json", "\x00\xffgarbage{"), "slowest.json: unreadable"),
    "slowest-an-object": (write("slowest.json", '{"a": 1}'), "slowest.json is an object, not a list"),
    "slowest-bad-trace": (
        write(
            "slowest.json",
            json.dumps(SLOWEST + [{"trace_id": 1, "stamps": [{"point": 5}]}, {"stamps": "x"}, 3]),
        ),
        "slowest.json: 3 of 4 traces are malformed",
    ),  # fmt: skip
    "summary-wrong-types": (
        write("summary.json", '{"feed": {"count": "many", "p50": "x"}}'),
        "summary.json: not numbers per stage",
    ),  # fmt: skip
    "summary-deeply-nested": (
        write("summary.json", "[" * 100_000 + "]" * 100_000),
        "summary.json: unreadable",
    ),
    "hiccup-log-damaged": (
        write(
            "hiccup.hlog",
            "Tag=hiccup,0,1,1,HISTgarbagegarbagegarbagegarbagegarbagegarbage\nTag=hiccup,1,1,1,HISTgarbage\n",
        ),
        None,
    ),  # fmt: skip
}


def lying_payload() -> str:
    """A histogram holding a 10 s value whose header claims the layout 1..1,000,000."""
    h = HdrHistogram(1, 10**12, 3)
    h.record_value(10**10)
    raw = base64.b64decode(h.encode())
    body = bytearray(zlib.decompress(raw[8:]))
    struct.pack_into(">q", body, 24, 1_000_000)  # highest trackable value
    packed = zlib.compress(bytes(body))
    return base64.b64encode(raw[:4] + struct.pack(">I", len(packed)) + packed).decode()


HUGE = hist_line("feed", 0.0, 1, 2**62, 5, [1000])
# (damage, the one line the user gets, exit 2)
ERRORS = {
    "layout-beyond-the-limit": (edit_hlog(replace_line(2, HUGE)), "declares a layout of 6,160,384 counts"),
    "count-beyond-its-own-layout": (
        edit_hlog(replace_line(2, "Tag=feed,2.000,1.000,1.0," + lying_payload())),
        "holds counts its layout cannot",
    ),  # fmt: skip
    "payload-damaged-mid-log": (
        edit_hlog(replace_line(4, "Tag=feed,4.000,1.000,1.0,HIST" + "A" * 60)),
        "latency.hlog line 9: interval at 4.000s holds a damaged histogram",
    ),  # fmt: skip
    "start-not-finite": (
        edit_hlog(replace_line(5, "Tag=feed,nan,1.000,1.0,HIST" + "A" * 60)),
        "are not finite seconds",
    ),  # fmt: skip
    "hlog-is-binary": (
        write("latency.hlog", "\x00\x01\x02\xff" * 300 + "\n"),
        "not an HdrHistogram interval",
    ),
    "meta-deeply-nested": (write("meta.json", "[" * 100_000 + "]" * 100_000), "meta.json: not valid JSON"),
    "meta-not-json": (write("meta.json", "\xff\xfe{{"), "meta.json: not valid JSON"),
}

DECODED_ONLY_WHEN_READ = {"count-beyond-its-own-layout", "layout-beyond-the-limit", "payload-damaged-mid-log"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    base = synth_session(d / "base", intervals=6, per_interval=300, seed=1)
    (base / "slowest.json").write_text(json.dumps(SLOWEST))
    return base


def damaged(clean, tmp_path, damage):
    import shutil

    d = tmp_path / "damaged"
    shutil.copytree(clean, d)
    damage(d)
    return d


def commands(d, clean, out, perfetto_alone=True):
    """Every command that reads a session, as a user types it."""
    html = ["-o", str(out / "r.html")] + ([] if perfetto_alone else ["--perfetto", str(out / "t.json")])
    return {
        "report": ["report", str(d)],
        "report-html": ["report", str(d), *html],
        **(
            {"report-perfetto": ["report", str(d), "--perfetto", str(out / "t.json")]}
            if perfetto_alone
            else {}
        ),
        "compare": [
            "compare",
            str(clean),
            str(d),
            "--markdown",
            str(out / "c.md"),
            "--junit",
            str(out / "c.xml"),
            "--json",
            str(out / "c.json"),
            "--html",
            str(out / "c.html"),
        ],  # fmt: skip
    }


def assert_one_line_error(r, needle):
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"tickscope [\w-]+: \S", lines[0]), r.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_a_damaged_file_is_one_line_and_exit_2_in_every_command(clean, tmp_path, case):
    damage, needle = ERRORS[case]
    d = damaged(clean, tmp_path, damage)
    for name, args in commands(d, clean, tmp_path).items():
        r = run_cli(*args)
        if name == "report-perfetto" and case in DECODED_ONLY_WHEN_READ:
            # The Perfetto export reads slowest.json, no histogram: a payload in the middle of the log
            # (the first and last are checked at load) is only decoded by a command that needs it.
            assert r.returncode == 0 and r.stderr == "", r.stderr
            continue
        assert_one_line_error(r, needle)
        assert not (tmp_path / "r.html").exists(), name


@pytest.mark.parametrize("case", sorted(WARNINGS))
def test_a_damaged_file_is_a_warning_and_the_rest_is_reported(clean, tmp_path, case):
    damage, needle = WARNINGS[case]
    d = damaged(clean, tmp_path, damage)
    if case == "value-beyond-our-layout":  # its 100 s value is kept, not an IndexError
        r = run_cli("report", str(d))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        row = next(x for x in r.stdout.splitlines() if "tick_to_trade" in x)
        assert row.rstrip(" │|").endswith("100s"), row
        r = run_cli("compare", str(clean), str(d), "--json", str(tmp_path / "c.json"))
        assert r.returncode in (0, 1) and r.stderr == "", r.stderr[-2000:]
        rows = json.loads((tmp_path / "c.json").read_text())["rows"]
        assert {x["tag"] for x in rows} >= {"tick_to_trade", "feed"}
        return
    for name, args in commands(d, clean, tmp_path, perfetto_alone=False).items():
        r = run_cli(*args)
        assert "Traceback" not in r.stderr + r.stdout, (name, r.stderr[-3000:])
        assert r.returncode in ((0, 1) if name == "compare" else (0,)), (name, r.returncode, r.stderr[-2000:])
        assert r.stderr == "", (name, r.stderr)
        if name == "report":
            assert "tick_to_trade" in r.stdout  # the table is still printed
        shown = {"report": r.stdout, "compare": r.stdout,
                 "report-html": (tmp_path / "r.html").read_text() if name == "report-html" else ""}  # fmt: skip
        if needle is not None and name in shown:
            assert needle in " ".join(shown[name].split()).replace("&#39;", "'"), (name, shown[name][-3000:])
    if case == "hiccup-log-damaged":
        assert "platform hiccups not shown" in (tmp_path / "r.html").read_text()
    trace = json.loads((tmp_path / "t.json").read_text())
    assert isinstance(trace["traceEvents"], list)


def test_another_tools_log_keeps_values_beyond_our_layout(tmp_path):
    """A bare log of another tool (1 us .. 1 h in ns, untagged, absolute times) with 100 s values:
    decoded in its own layout, reported and compared, with a second tool's layout mixed in."""
    start = 1_700_000_000.0
    for name, seed in (("a", 1), ("b", 2)):
        lines = [f"#[StartTime: {start:.3f} (seconds since epoch)]", HEADER]
        for i in range(6):
            lines.append(hist_line(None, start + i, 1000, 3_600 * 10**9, 3, [100 * 10**9, 5_000 * seed + i]))
        (tmp_path / f"{name}.hlog").write_text("\n".join(lines) + "\n")
    r = run_cli("report", str(tmp_path / "a.hlog"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    row = next(x for x in r.stdout.splitlines() if "default" in x)
    assert "12" in row and row.rstrip(" │|").endswith("100s"), row
    r = run_cli(
        "compare", str(tmp_path / "a.hlog"), str(tmp_path / "b.hlog"), "--json", str(tmp_path / "c.json")
    )
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert {r["percentile"] for r in rows} == {"p50", "p90", "p99", "p99.9"}
    # Two layouts in one log: the total is taken in one layout that holds both.
    with open(tmp_path / "a.hlog", "a") as f:
        f.write(hist_line(None, start + 7, 1, 60 * 10**9, 2, [50 * 10**9]) + "\n")
    r = run_cli("report", str(tmp_path / "a.hlog"))
    row = next(x for x in r.stdout.splitlines() if "default" in x)
    assert r.returncode == 0 and "13" in row and row.rstrip(" │|").endswith("100s"), (row, r.stderr)


def test_compare_takes_each_side_in_its_own_layout(tmp_path):
    """Baseline from a tool recording 1 us .. 1 h, candidate in tickscope's 1 ns .. 60 s: both are
    counted in one layout that holds them, each value where it belongs."""
    for name, lowest, highest, slow in (
        ("a", 1000, 3_600 * 10**9, 100 * 10**9),
        ("b", 1, 60 * 10**9, 50 * 10**9),
    ):
        lines = [HEADER] + [hist_line("rtt", i, lowest, highest, 3, [slow, slow, 7_000]) for i in range(8)]
        (tmp_path / f"{name}.hlog").write_text("\n".join(lines) + "\n")
    r = run_cli(
        "compare", str(tmp_path / "a.hlog"), str(tmp_path / "b.hlog"), "--json", str(tmp_path / "c.json")
    )
    assert r.returncode in (0, 1) and r.stderr == "", r.stderr
    rows = {x["percentile"]: x for x in json.loads((tmp_path / "c.json").read_text())["rows"]}
    assert rows["p50"]["baseline_ns"] == pytest.approx(100e9, rel=1e-3)
    assert rows["p50"]["candidate_ns"] == pytest.approx(50e9, rel=1e-3)
    assert rows["p50"]["change"] == pytest.approx(-0.5, rel=1e-2)


def test_the_layout_limit_is_decided_before_allocating(tmp_path):
    """A 1.8 KB hlog of 5-digit, 1..2**62 histograms: refused from its header, no 48 MB per line."""
    lines = [HEADER] + [f"{i}.000,1.000,1.0,{HUGE.split(',', 4)[4]}" for i in range(28)]
    (tmp_path / "huge.hlog").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "huge.hlog").stat().st_size < 2200
    r = run_cli("report", str(tmp_path / "huge.hlog"))
    assert_one_line_error(r, f"more than the {MAX_COUNTS_LEN:,} tickscope decodes")
    assert "re-record with fewer significant digits" in r.stderr
    # Just inside the limit is decoded: 5 digits over a range below 2**32.
    assert Layout(1, 2**32 - 1, 5).counts_len == MAX_COUNTS_LEN
    (tmp_path / "edge.hlog").write_text(HEADER + "\n" + hist_line(None, 0, 1, 2**32 - 1, 5, [12_345]) + "\n")
    r = run_cli("report", str(tmp_path / "edge.hlog"))
    assert r.returncode == 0 and "12.3µs" in r.stdout, r.stdout + r.stderr


def test_an_unwritable_perfetto_trace_is_one_line(clean, tmp_path):
    r = run_cli("report", str(clean), "--perfetto", str(tmp_path / "no-such-dir" / "t.json"))
    assert_one_line_error(r, "cannot write trace")


def start_time(value: str):
    return edit_hlog(lambda ls: [(f"#[StartTime: {value} (seconds since epoch)]" if x.startswith("#[StartTime") else x)
                                 for x in ls])  # fmt: skip


# Shapes report and compare took with a warning while merge died on them with a traceback:
# (damage, what report shows). One loader (Session.load) with one set of checks serves all three.
MERGE_SHAPES = {
    "stages-is-a-string": (with_stages("abc"), "stages is a string, expected a list"),
    "host-is-a-string": (
        edit_json("meta.json", lambda m: {**m, "host": "x"}),
        "host is a string, expected an object",
    ),
    "meta-is-a-list": (write("meta.json", "[1, 2, 3]"), "meta.json is a list, not an object"),
    "counters-is-a-list": (with_counters([1, 2]), "counters is a list, expected an object"),
    "interval-not-a-number": (
        edit_json("meta.json", lambda m: {**m, "interval_s": "abc"}),
        "interval_s is a string, expected a positive number of seconds",
    ),  # fmt: skip
    "slowest-holds-a-string": (
        write("slowest.json", json.dumps(SLOWEST + ["x"])),
        "1 of 2 traces are malformed",
    ),
    "start-time-nan": (start_time("nan"), "StartTime 'nan' is not a number"),
    "start-time-inf": (start_time("inf"), "StartTime 'inf' is not a number"),
}


@pytest.mark.parametrize("case", sorted(MERGE_SHAPES))
def test_merge_takes_what_report_and_compare_take(clean, tmp_path, case):
    damage, needle = MERGE_SHAPES[case]
    d = damaged(clean, tmp_path, damage)
    r = run_cli("report", str(d))
    assert r.returncode == 0 and r.stderr == "" and needle in " ".join(r.stdout.split()), (
        r.stderr,
        r.stdout[-2000:],
    )
    r = run_cli("compare", str(clean), str(d))
    assert r.returncode in (0, 1) and r.stderr == "" and "Traceback" not in r.stdout, r.stderr[-2000:]
    r = run_cli("merge", str(tmp_path / "m"), f"a={clean}", f"b={d}")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    warned = [w for w in r.stderr.splitlines() if w.startswith("tickscope: warning: ")]
    assert len(warned) == len(r.stderr.splitlines()) and any(needle in w and str(d) in w for w in warned), (
        r.stderr
    )
    merged = run_cli("report", str(tmp_path / "m"))
    assert merged.returncode == 0 and "b/tick_to_trade" in merged.stdout, merged.stderr[-2000:]


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_merge_refuses_a_damaged_session_in_the_same_one_line(clean, tmp_path, case):
    damage, needle = ERRORS[case]
    d = damaged(clean, tmp_path, damage)
    assert_one_line_error(run_cli("merge", str(tmp_path / "m"), f"a={clean}", f"b={d}"), needle)
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_bare_log_without_a_time_in_one_line(tmp_path):
    h = hist_line(None, 0.0, 1, 60 * 10**9, 3, [5_000])
    (tmp_path / "a.hlog").write_text(f"#[StartTime: nan (seconds since epoch)]\n{HEADER}\n{h}\n")
    r = run_cli("merge", str(tmp_path / "m"), str(tmp_path / "a.hlog"))
    assert_one_line_error(r, "a.hlog has no StartTime/BaseTime header of finite seconds")
