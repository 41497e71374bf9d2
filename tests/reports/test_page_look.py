"""The three HTML pages (session, compare, sweep) as a reader sees them: one look, one header, one
units rule, a small self-contained page. Real runs (a sweep of the bundled pipeline, whose steps
are sessions) rendered by the CLI, opened in headless Chromium at 1400 and 800 px, then pinned by
the DOM the browser laid out (the page's own script writes what it measured onto <body>).
Screenshots are kept under each test's tmp dir to be looked at."""

import re

import pytest

from support import SUBJECT
from support.chromium import chromium, headless
from support.cli import run_cli
from tickscope.collectors.session import Session
from tickscope.collectors.session.units import fmt_ns
from tickscope.reports import html as html_render
from tickscope.reports.analysis import views

WIDTHS = (1400, 800)
LATENCY = re.compile(r"^\d+(\.\d+)?(ns|µs|ms|s)$")  # fmt_ns's forms, and nothing else
HEADER_FIELDS = ("host", "date", "command", "offered rate", "load model")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real two-step sweep of the bundled pipeline: its directory, its two step sessions, and
    what it printed while it ran."""
    out = tmp_path_factory.mktemp("sweep") / "sw"
    r = run_cli(
        "sweep", "--rates", "2k,4k", "--duration", "2.5s", "--warmup", "0.5s", "-o", str(out), timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    steps = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(steps) == 2, steps
    return out, steps, r.stdout


def open_page(tmp_path, page, width: int) -> tuple[str, dict]:
    """The DOM Chromium laid out at ``width`` px (and a screenshot beside it): (dom, <body> attributes)."""
    exe = chromium()
    dom = headless(exe, tmp_path, "--dump-dom", f"--window-size={width},2000", url=page.as_uri())
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    shot = tmp_path / f"{page.stem}-{width}.png"
    headless(exe, tmp_path, f"--screenshot={shot}", f"--window-size={width},3000", url=page.as_uri())
    assert shot.exists()
    return dom.stdout, dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body.group(1)))


def assert_page_works(attrs: dict, charts: int):
    assert attrs.get("data-js-errors") == "0", attrs
    assert (
        attrs["data-charts-drawn"] == attrs["data-charts-total"] and int(attrs["data-charts-total"]) >= charts
    ), attrs
    assert attrs["data-plotly-bundle"] == "basic", "only the trace types used: scatter and bar"
    assert int(attrs["data-legend-toolbar-checked"]) >= charts, attrs
    assert attrs["data-legend-toolbar-overlaps"] == "0", "a chart's toolbar covers its legend"


def header(dom: str, run: str = "session") -> dict[str, str]:
    block = dom.split(f'data-run="{run}"', 1)[1].split("</dl>", 1)[0]
    return {k: v.strip() for k, v in re.findall(r'data-field="([^"]+)"[^>]*>([^<]*)<', block)}


def chart_dom(dom: str, chart: str) -> str:
    """The markup of one chart: from its element to the next chart's."""
    return dom.split(f'id="{chart}" data-chart="1"', 1)[1].split('data-chart="1"', 1)[0]


def tick_labels(dom: str, chart: str, axis: str = "ytick") -> list[str]:
    part = chart_dom(dom, chart)
    return re.findall(rf'class="{axis}"><text[^>]*>([^<]*)</text>', part)


@pytest.mark.parametrize("width", WIDTHS)
def test_session_page_one_header_one_unit_small_and_drawn(sweep, tmp_path, width):
    _, steps, _ = sweep
    page = tmp_path / "report.html"
    r = run_cli("report", str(steps[0]), "-o", str(page))
    assert r.returncode == 0, r.stderr
    size = page.stat().st_size
    assert size < 2_000_000, f"{size:,} bytes: the full plotly bundle alone is 4.8 MB"
    dom, attrs = open_page(tmp_path, page, width)
    assert_page_works(attrs, charts=3)
    h = header(dom)
    assert set(HEADER_FIELDS) <= h.keys() and "?" not in h.values(), h
    assert h["offered rate"] == "2k/s" and h["load model"] == "constant", h
    assert h["command"].startswith("bundled pipeline: python trader, itch feed"), h
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", h["date"]), h
    for chart, axis in (("dist", "ytick"), ("timeline", "ytick"), ("waterfall", "xtick")):
        labels = tick_labels(dom, chart, axis)
        assert labels and all(LATENCY.match(t) for t in labels), (chart, labels)
    assert re.search(r"\d\d:\d\d:\d\d", " ".join(tick_labels(dom, "timeline", "xtick"))), "a wall-clock axis"
    text = re.sub(r"<[^>]+>", " ", dom.split("<main>", 1)[1].split("<script>", 1)[0])
    assert not re.search(r"\d(\.\d+)?us\b", text), "µs is spelled one way"
    assert "counters at zero" in text and "records produced" in text and "dropped_ring_full" not in text
    orders = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom.split('<div class="k">orders sent</div>', 1)[1]
                                         .split('<div class="card', 1)[0].split("</div></div>", 1)[0]))  # fmt: skip
    assert re.search(r"\d[\d,]* answered: [\d,]+ acked", orders) and " none " in f" {orders}", orders
    assert " / " not in orders, "the orders are said in words, not as a row of slashes"


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_page_names_both_sides_warns_on_the_load_and_plots_every_run(sweep, tmp_path, width):
    _, (two_k, four_k), _ = sweep
    page = tmp_path / "compare.html"
    r = run_cli("compare", str(two_k), "--vs", str(two_k), str(four_k), "--html", str(page))
    assert r.returncode in (0, 1), r.stderr
    assert f"baseline {two_k.name} vs candidate {two_k.name} + {four_k.name}" in r.stdout
    dom, attrs = open_page(tmp_path, page, width)
    assert_page_works(attrs, charts=3)
    base, cand = header(dom, "baseline"), header(dom, "candidate")
    assert base["name"] == two_k.name, base
    assert cand["name"] == f"{two_k.name} | {four_k.name} (2 runs)", cand
    assert cand["offered rate"] == "2k/s | 4k/s" and base["offered rate"] == "2k/s"
    assert (
        f"<th>baseline {two_k.name}</th>" in dom and f"<th>candidate {two_k.name} + {four_k.name}</th>" in dom
    )
    assert "offered rate differs: baseline 2k/s, candidate 2k/s, 4k/s" in dom
    first = chart_dom(dom, "c0")
    legend = re.findall(r'class="legendtext"[^>]*>([^<]*)<', first)
    assert legend == [f"baseline {two_k.name}", f"candidate {two_k.name}", f"candidate {four_k.name}"], legend
    labels = tick_labels(dom, "c0")
    assert labels and all(LATENCY.match(t) for t in labels), labels


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_page_header_links_each_step_and_plots_achieved_against_offered(sweep, tmp_path, width):
    out, steps, _ = sweep
    page = tmp_path / "sweep.html"
    r = run_cli("report", str(out), "-o", str(page))
    assert r.returncode == 0, r.stderr
    dom, attrs = open_page(tmp_path, page, width)
    assert_page_works(attrs, charts=2)
    h = header(dom)
    assert h["command"].startswith("tickscope sweep --rates 2k,4k"), h
    assert (
        h["offered rate"] == "2k/s .. 4k/s in 2 steps"
        and h["load model"] == "constant"
        and "?" not in h.values()
    )
    links = re.findall(r'<a href="([^"]+)">report</a>', dom)
    assert len(links) == 2 and all((tmp_path / link).is_file() for link in links), links
    assert 'id="throughput"' in dom and tick_labels(dom, "throughput")
    labels = tick_labels(dom, "sweep")
    assert labels and all(LATENCY.match(t) for t in labels), labels


def test_sweep_prints_its_steps_as_a_table_with_a_header(sweep):
    lines = sweep[2].splitlines()
    assert lines[0].split()[:3] == ["offered", "achieved/s", "p50"] and "verdict" in lines[0], lines[:3]
    assert [line.split()[0] for line in lines[1:3]] == ["2k/s", "4k/s"] and not any(" | " in x for x in lines)


def test_one_unit_rule_in_text_and_on_axes():
    assert [fmt_ns(v) for v in (850, 12_300, 123_000, 4_560_000)] == ["850ns", "12.3µs", "123µs", "4.56ms"]
    axis = html_render.latency_axis([800, 2_000_000])
    assert axis["ticktext"] == [fmt_ns(v) for v in axis["tickvals"]] and "1µs" in axis["ticktext"]
    assert "1ms" in axis["ticktext"] and all(LATENCY.match(t) for t in axis["ticktext"])


def test_each_warning_is_listed_once(sweep):
    """The doctor's 'perf hardware counters' finding and the run's 'perf: ...' warning are one fact."""
    s = Session.load(sweep[1][0])
    s.meta["doctor"] = [{"name": "perf hardware counters", "status": "warn", "value": "none", "fix": "bare metal"},
                        {"name": "isolated CPUs", "status": "warn", "value": "none", "fix": "isolcpus"}]  # fmt: skip
    s.meta["side_warnings"] = ["perf: events not supported on this host: cycles"] * 2
    assert html_render.page_warnings(s) == [
        "isolated CPUs: none — isolcpus",
        "perf: events not supported on this host: cycles",
    ]


def test_counters_in_words_fold_the_zeros():
    shown, zeros = views.counters_in_words({"produced": 10, "dropped_ring_full": 0, "some_new_counter": 3})
    assert shown == [("records produced", "10"), ("some new counter", "3")]
    assert zeros == ["records dropped (ring full)"]


def test_the_orders_card_says_what_each_figure_is_and_folds_the_zeros():
    card = views.orders_in_words({"orders_sent": 1533, "orders_acked": 1530, "orders_rejected": 3,
                                  "orders_gap_filled": 0, "orders_in_flight_at_end": 0, "order_stalls": 0,
                                  "risk_rejects": 6, "orders_leg_bid": 684, "orders_leg_ask": 684,
                                  "orders_leg_hedge": 165})  # fmt: skip
    assert card == {"sent": "1,533", "bad": False, "lines": [
        "per leg: 684 bids, 684 asks, 165 hedges", "all 1,533 answered: 1,530 acked, 3 rejected",
        "6 held by risk (not sent)"], "zeros": ["unanswered at the end", "gap-filled at the venue", "order-session stalls"]}  # fmt: skip
    taker = views.orders_in_words({"orders_sent": 10, "orders_acked": 8, "orders_in_flight_at_end": 2,
                                   "orders_leg_taker": 10, "orders_leg_hedge": 0})  # fmt: skip
    assert taker["lines"] == ["8 answered: 8 acked", "2 unanswered at the end"] and taker["bad"]
    assert taker["zeros"] == [
        "hedges",
        "rejected",
        "gap-filled at the venue",
        "order-session stalls",
        "held by risk",
    ]
    assert views.orders_in_words({"orders_sent": 0}) is None


def test_profile_keeps_the_slowest_n_and_the_report_draws_each_as_a_waterfall(tmp_path):
    out = tmp_path / "s"
    r = run_cli("profile", "--duration", "2s", "--slowest", "3", "--no-perf", "--no-hiccup", "--no-live", "-o", str(out),
                "--", *SUBJECT, "0", "--forever", "--rate", "5000")  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = Session.load(out)
    assert len(s.slowest) == 3
    rows = views.waterfalls(s)
    assert [len(r["segments"]) for r in rows] == [4, 4, 4], "feed, strategy, encode, send"
    for row in rows:  # the stages tile the trace: each starts where the one before ended
        ends = [seg["start_ns"] + seg["dur_ns"] for seg in row["segments"]]
        assert [seg["start_ns"] for seg in row["segments"][1:]] == ends[:-1]
        assert ends[-1] == row["tick_to_trade_ns"]
    figure = html_render.waterfall_figure(s)
    assert {y for t in figure["data"] for y in t["y"]} == {
        f"trace {r['trace_id']} · {fmt_ns(r['tick_to_trade_ns'])}" for r in rows
    }
