"""The HTML report and the Perfetto export, checked the way a user sees them: in real headless
Chromium with JavaScript on (every chart drew, no console errors), and in Perfetto's JSON shape."""

import json
import re
import time

import numpy as np
import pytest

from support.chromium import chromium, headless
from support.cli import run_cli
from support.synth import synth_session
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.session import Session, SessionWriter
from tickscope.collectors.session.units import fmt_ns
from tickscope.probe import Point, TickWriter

EVIL_POINT = "<script>alert(1)</script>"
EVIL_STAGE = "<img src=x onerror=alert(2)>"


def record_evil_session(ring_dir, out, ticks=400, intervals=3):
    """A real session (probe -> ring -> collector -> session dir) whose probe and stage names are HTML."""
    w = TickWriter(
        [Point("md.rx"), Point(EVIL_POINT, stage=EVIL_STAGE), Point("order.tx", stage="send", trade=True)]
    )
    writer = SessionWriter(out, {"name": "evil", "command": "<b>cmd</b>", "host": {"hostname": "<i>h</i>"}})
    col = Collector(ring_dir, writer, interval_s=0.05)
    t, seq = w.stamps, 0
    for k in range(intervals):
        for _ in range(ticks):
            seq += 1
            base = 10_000 * seq
            t[0], t[1], t[2] = base, base + 1_000 + (seq % 13) * 10, base + 3_000 + k * 100 + (seq % 7)
            t = w.commit(seq)
        col.poll()
        time.sleep(0.06)
        col.poll()
    w.close()
    col.finish()
    return Session.load(out)


@pytest.fixture
def evil_session(ring_dir, tmp_path):
    return record_evil_session(ring_dir, tmp_path / "evil")


def test_report_renders_in_headless_chromium_every_chart_drawn_no_errors(evil_session, tmp_path):
    exe = chromium()
    html = tmp_path / "report.html"
    out = run_cli(
        "report", str(evil_session.path), "-o", str(html), "--perfetto", str(tmp_path / "trace.json")
    )
    assert out.returncode == 0, out.stderr
    text = html.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=", text), (
        "the report must open offline: nothing external"
    )
    dom = headless(exe, tmp_path, "--dump-dom", url=html.as_uri())
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-js-errors") == "0", (attrs, dom.stdout[-3000:])
    assert (
        int(attrs["data-charts-total"]) >= 3 and attrs["data-charts-drawn"] == attrs["data-charts-total"]
    ), attrs
    # The evil names are on the page as text, never as markup.
    assert "alert(1)" in dom.stdout and "<script>alert(1)</script>" not in dom.stdout.split("<body", 1)[1]
    shot = tmp_path / "report.png"
    headless(exe, tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", url=html.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, "screenshot saved under the test's tmp dir"


def test_probe_and_stage_names_are_escaped_in_the_html(evil_session, tmp_path):
    from tickscope.reports.html import render

    text = render(evil_session)
    head, body = text.split("<body", 1)
    assert EVIL_POINT not in text and EVIL_STAGE not in body.split("<script>", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=alert(2)&gt;" in body
    assert "<b>cmd</b>" not in text and "&lt;b&gt;cmd&lt;/b&gt;" in text
    # Inside the figures' JSON, "</" cannot close the script element.
    scripts = re.findall(r"<script>(.*?)</script>", body, flags=re.S)
    assert all("</script" not in s for s in scripts)


def test_perfetto_export_is_valid_trace_event_json(evil_session, tmp_path):
    from tickscope.reports.perfetto import render

    doc = json.loads(render(evil_session))
    events = doc["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert slices and all(isinstance(e["ts"], float | int) and e["dur"] >= 0 for e in slices)
    # Microseconds with 3 decimals: nanoseconds survive.
    assert all(round(e["ts"], 3) == e["ts"] for e in slices)
    named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in slices} <= named, "every lane is named by an M event"
    # Stage slices nest inside their trace slice on the same lane.
    for lane in {e["tid"] for e in slices}:
        on_lane = [e for e in slices if e["tid"] == lane]
        outer = [e for e in on_lane if e["cat"] == "trace"]
        assert len(outer) == 1
        o = outer[0]
        for e in on_lane:
            if e["cat"] == "stage":
                assert o["ts"] - 1e-3 <= e["ts"] and e["ts"] + e["dur"] <= o["ts"] + o["dur"] + 1e-3
    flows = [e for e in events if e["ph"] in "sf"]
    assert flows and len([e for e in flows if e["ph"] == "s"]) == len([e for e in flows if e["ph"] == "f"])
    assert any(e["name"] == EVIL_STAGE for e in slices), "names are data in JSON, kept verbatim"


def test_report_of_a_one_hour_style_session_without_slowest_traces(tmp_path):
    """Synthesised sessions (no slowest.json, no side files) and bare .hlog files still render."""
    from tickscope.reports.html import render

    s = synth_session(tmp_path / "syn", intervals=20, per_interval=300)
    text = render(Session.load(s))
    assert "No complete tick-to-trade traces" in text and "holds no tail attribution" in text
    assert 'id="breakdown"' not in text, "no stacked percentiles of different populations"


def test_report_of_a_missing_session_or_bad_output_is_one_line(tmp_path):
    out = run_cli("report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html"))
    assert out.returncode == 2 and "Traceback" not in out.stderr and "nope" in out.stderr
    s = synth_session(tmp_path / "syn", intervals=3, per_interval=50)
    out = run_cli("report", str(s), "-o", str(tmp_path / "no-such-dir" / "r.html"))
    assert out.returncode == 2 and "Traceback" not in out.stderr and "cannot write report" in out.stderr


def test_compare_html_renders_in_headless_chromium(tmp_path):
    exe = chromium()
    a = synth_session(tmp_path / "a", intervals=8, per_interval=300, stages=["feed", "<b>risk</b>"])
    b = synth_session(tmp_path / "b", intervals=8, per_interval=300, seed=2, stages=["feed", "<b>risk</b>"])
    html = tmp_path / "compare.html"
    out = run_cli("compare", str(a), str(b), "--html", str(html))
    assert out.returncode in (0, 1), out.stderr
    assert "<b>risk</b>" not in html.read_text().split("<body", 1)[1].split("<script>", 1)[0]
    dom = headless(exe, tmp_path, "--dump-dom", url=html.as_uri())
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom.stdout).group(1)))
    assert attrs.get("data-js-errors") == "0" and attrs.get("data-charts-drawn") == "3", attrs


def test_a_dimension_section_has_a_table_and_one_nines_plot_per_slicing(tmp_path):
    """A session of tests/programs/dims_subject.py (venue XNAS on leg 0, BATS on leg 1): per
    slicing, a row per value with its tick-to-trade figures, and every value's curve on one plot."""
    import sys

    from support import PROGRAMS, QUIET

    exe = chromium()
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable,
                  str(PROGRAMS / "dims_subject.py"), "800", "--truth", str(tmp_path / "t.txt"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    html = tmp_path / "r.html"
    assert run_cli("report", str(tmp_path / "s"), "-o", str(html)).returncode == 0
    s = Session.load(tmp_path / "s")
    dom = headless(exe, tmp_path, "--dump-dom", url=html.as_uri()).stdout
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    assert attrs.get("data-js-errors") == "0" and attrs["data-charts-drawn"] == attrs["data-charts-total"], (
        attrs
    )
    section = dom.split('<section id="dimensions">', 1)[1].split("</section>", 1)[0]
    table = section.split('data-slicing="venue"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td>([\d,]+)</td><td>-</td>((?:<td>[^<]*</td>){4})</tr>", table)
    assert [(v, int(n.replace(",", ""))) for v, n, _ in rows] == [("XNAS", 400), ("BATS", 200)]
    bats = s.slice("venue", "BATS").summary()["tick_to_trade"]
    assert re.findall(r"<td>([^<]*)</td>", rows[1][2]) == [
        fmt_ns(bats[k]) for k in ("p50", "p99", "p99_9", "max")
    ]
    for i, slicing in enumerate(s.dimensions):  # one drawn plot per slicing, a curve per value
        assert f'data-slicing="{slicing}"' in section
        plot = section.split(f'id="dim{i}"', 1)[1].split("</div>\n", 1)[0]
        assert "main-svg" in plot and len(re.findall(r'class="trace scatter', plot)) == len(
            s.dimensions[slicing]
        )
    shot = tmp_path / "dims.png"
    headless(exe, tmp_path, f"--screenshot={shot}", "--window-size=1400,3200", url=html.as_uri())
    assert shot.exists()


def _drawn(exe, tmp_path):
    """The session at tmp_path/s, and its HTML report's DOM and figures as headless Chromium drew
    them (every chart drawn, no script error)."""
    html = tmp_path / "r.html"
    assert run_cli("report", str(tmp_path / "s"), "-o", str(html)).returncode == 0
    dom = headless(exe, tmp_path, "--dump-dom", url=html.as_uri()).stdout
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    assert attrs.get("data-js-errors") == "0" and attrs["data-charts-drawn"] == attrs["data-charts-total"], (
        attrs
    )
    return Session.load(tmp_path / "s"), dom, figures_of(dom)


def figures_of(dom: str) -> dict:
    """The page's figures as drawn: the JSON its script hands to plotly."""
    return json.loads(re.search(r"var figures = (\{.*?\});\n", dom, re.S).group(1))


def value_tables(dom: str, slicing: str, value: str) -> tuple[str, dict[str, dict], dict[str, list[str]]]:
    """A value's block of the By dimension section: its title, its stage rows (tag -> population,
    count, figures in ns) and its attribution rows (stage -> cells)."""
    block = dom.split(f'data-slicing="{slicing}" data-value="{value}"', 1)[1].split("</details>", 1)[0]
    title = re.search(r"<summary>([^<]*)</summary>", block).group(1)
    stages = {}
    for tag, pop, count, cells in re.findall(
        r'<tr data-tag="([^"]+)"><td>[^<]*</td><td>([^<]*)</td><td>([\d,]+)</td>((?:<td data-ns="[^"]*">[^<]*</td>)+)</tr>',
        block,
    ):
        ns = [int(x) if x else None for x in re.findall(r'data-ns="([^"]*)"', cells)]
        stages[tag] = {"population": pop, "count": int(count.replace(",", "")), "ns": ns}
    attribution = {}
    if 'class="dimension-attribution"' in block:
        table = block.split('class="dimension-attribution"', 1)[1].split("</table>", 1)[0]
        for stage, cells in re.findall(r"<tr><td>([^<]*)</td>((?:<td>[^<]*</td>)+)</tr>", table):
            attribution[stage] = re.findall(r"<td>([^<]*)</td>", cells)
    return title, stages, attribution


def exact_hdr(values, pcts=(50, 90, 99, 99.9, 100)) -> list[int]:
    """The exact values' percentiles as an HDR histogram of the session's layout reports them."""
    from tickscope.collectors.session.hdr import BulkRecorder, new_histogram, percentile_values

    h = new_histogram()
    BulkRecorder(h).record(h, np.asarray(values, np.int64))
    return percentile_values(h, pcts).tolist()


def tail_bars(fig: dict, label_prefix: str) -> dict[str, dict[str, float]]:
    """Per bar of a tail attribution figure whose label starts with ``label_prefix``: stage -> mean ns."""
    out: dict[str, dict[str, float]] = {}
    for trace in fig["data"]:
        for label, x in zip(trace["y"], trace["x"], strict=True):
            if label.startswith(label_prefix):
                out.setdefault(label, {})[trace["name"]] = x
    return out


def assert_exact_tail_means(s: Session, slicing: str, value: str, fig: dict, label: str, spans: dict, t2t):
    """Each bar of ``value``'s tails is the exact mean span, per stage, of the orders whose exact
    tick-to-trade is at or beyond the tail's threshold (``spans``: stage -> per-order spans)."""
    tails = s.slice(slicing, value).attribution["tails"]
    bars = tail_bars(fig, f"{label} · ")
    assert len(bars) == len(tails) == 3
    for key, tail in tails.items():
        (bar,) = [b for lbl, b in bars.items() if lbl.startswith(f"{label} · {key.replace('_', '.')}:")]
        inside = t2t >= tail["threshold_ns"]
        assert int(inside.sum()) == tail["traces"]
        for stage, per_order in spans.items():
            # summary.json keeps a mean to 0.1 ns
            assert bar[stage] == pytest.approx(per_order[inside].mean(), abs=0.05 + 1e-9), (value, key, stage)


def test_every_dimension_value_has_its_stage_table_over_its_populations_and_its_exact_tail_bars(tmp_path):
    """tests/programs/dims_subject.py (legs on two venues, symbols on the tick): per value, the
    stage table names each row's population (a symbol's feed stage over all its ticks, its send
    over its orders; a venue only its orders), every figure is the exact values' in HDR, and the
    tail attribution bars of every value are the exact per-order means of the tail's traces."""
    import sys

    from support import PROGRAMS, QUIET

    exe = chromium()
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable, str(PROGRAMS / "dims_subject.py"),
                  "600", "--truth", str(tmp_path / "t.txt"), "--tick-truth", str(tmp_path / "ticks.txt"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    truth = np.loadtxt(tmp_path / "t.txt", dtype=np.int64)  # trace leg md.rx signal order.tx symbol venue
    ticks = np.loadtxt(tmp_path / "ticks.txt", dtype=np.int64)  # trace md.rx signal symbol
    s, dom, figures = _drawn(exe, tmp_path)
    strategy, send, t2t = truth[:, 3] - truth[:, 2], truth[:, 4] - truth[:, 3], truth[:, 4] - truth[:, 2]
    for i in range(3):
        mine, orders = ticks[:, 3] == i, truth[:, 5] == i
        n_ticks, n_orders = int(mine.sum()), int(orders.sum())
        no_order = n_ticks - len(set(truth[orders, 0].tolist()))
        title, rows, attribution = value_tables(dom, "symbol", f"S{i}")
        assert title == (f"symbol = S{i}: {n_orders:,} orders, {no_order:,} ticks without an order; "
                         f"stages before the fan-out over all {n_ticks:,} ticks")  # fmt: skip
        assert rows["strategy"] == {"population": f"{n_ticks:,} ticks", "count": n_ticks,
                                    "ns": exact_hdr(ticks[mine, 2] - ticks[mine, 1])}  # fmt: skip
        assert rows["send"] == {
            "population": f"{n_orders:,} orders",
            "count": n_orders,
            "ns": exact_hdr(send[orders]),
        }
        assert rows["tick_to_trade"] == {"population": f"{n_orders:,} orders", "count": n_orders,
                                         "ns": exact_hdr(t2t[orders])}  # fmt: skip
        assert rows["tick_to_decision"]["population"] == f"{no_order:,} ticks without an order"
        assert list(attribution) == ["strategy", "send", "tick_to_trade"]
        fig = figures[f"dim{list(s.dimensions).index('symbol')}tails"]
        assert_exact_tail_means(s, "symbol", f"S{i}", fig, f"S{i}",
                                {"strategy": strategy[orders], "send": send[orders]}, t2t[orders])  # fmt: skip
    for venue, leg in (("XNAS", 0), ("BATS", 1)):
        orders = truth[:, 1] == leg
        n = int(orders.sum())
        title, rows, attribution = value_tables(dom, "venue", venue)
        assert title == f"venue = {venue}: {n:,} orders, 0 ticks without an order"
        # a venue labels orders only: no stage before the fan-out is its own
        assert rows == {"send": {"population": f"{n:,} orders", "count": n, "ns": exact_hdr(send[orders])},
                        "tick_to_trade": {"population": f"{n:,} orders", "count": n, "ns": exact_hdr(t2t[orders])}}  # fmt: skip
        fig = figures[f"dim{list(s.dimensions).index('venue')}tails"]
        assert_exact_tail_means(s, "venue", venue, fig, venue,
                                {"strategy": strategy[orders], "send": send[orders]}, t2t[orders])  # fmt: skip


def test_a_value_that_never_traded_keeps_its_feed_stages_per_tick(tmp_path):
    """tests/programs/tick_dims_subject.py: every value is the tick's own (symbol, msg_type) and
    S1 never trades. S1 still has its block (strategy over all its ticks, tick_to_decision, no
    attribution) and its overview row; every figure is the exact values' in HDR."""
    import sys

    from support import PROGRAMS, QUIET

    exe = chromium()
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable,
                  str(PROGRAMS / "tick_dims_subject.py"), "600", "--truth", str(tmp_path / "t.txt"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    seq, strategy, send = np.loadtxt(tmp_path / "t.txt", dtype=np.int64, usecols=(0, 1, 2)).T
    symbol, msg_type = np.loadtxt(tmp_path / "t.txt", dtype=str, usecols=(3, 4)).T
    s, dom, figures = _drawn(exe, tmp_path)
    traded = send >= 0
    for slicing, column, value in (("symbol", symbol, "S0"), ("symbol", symbol, "S1"), ("msg_type", msg_type, "T"),
                                   ("msg_type", msg_type, "Q")):  # fmt: skip
        mine = column == value
        n_ticks, orders = int(mine.sum()), mine & traded
        n_orders = int(orders.sum())
        title, rows, attribution = value_tables(dom, slicing, value)
        assert title == (f"{slicing} = {value}: {n_orders:,} orders, {n_ticks - n_orders:,} ticks without an order; "
                         f"stages per tick over all {n_ticks:,} ticks")  # fmt: skip
        assert rows["strategy"] == {
            "population": f"{n_ticks:,} ticks",
            "count": n_ticks,
            "ns": exact_hdr(strategy[mine]),
        }
        table = dom.split(f'<table class="dimension" data-slicing="{slicing}">', 1)[1].split("</table>", 1)[0]
        overview = re.search(rf"<tr><td>{value}</td><td>([\d,]+)</td><td>([\d,]+)</td>", table)
        assert overview.groups() == (f"{n_orders:,}", f"{n_ticks:,}")
        if not n_orders:
            assert set(rows) == {"strategy", "tick_to_decision"} and not attribution
            assert not any(lbl.startswith(f"{value} · ") for f in figures.values() for tr in f["data"]
                           for lbl in tr.get("y") or [] if isinstance(lbl, str))  # fmt: skip
            continue
        # no fan-out: the send stage is per tick too (each traded tick one order)
        assert rows["send"] == {
            "population": f"{n_ticks:,} ticks",
            "count": n_orders,
            "ns": exact_hdr(send[orders]),
        }
        assert rows["tick_to_trade"]["population"] == f"{n_orders:,} orders"
        fig = figures[f"dim{list(s.dimensions).index(slicing)}tails"]
        assert_exact_tail_means(s, slicing, value, fig, value, {"strategy": strategy[orders], "send": send[orders]},
                                strategy[orders] + send[orders])  # fmt: skip
