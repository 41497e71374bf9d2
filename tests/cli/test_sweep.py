"""``tickscope sweep``: rates and SLA parsing, the knee and sustainable-throughput logic on
synthetic curves (exact answers), and a real 3-step sweep of an instrumented command whose
structure (sessions, sweep.json, table, report) is checked, never its host-dependent numbers."""

import json
import re
from pathlib import Path

import pytest

from support import SUBJECT
from support.chromium import chromium, headless
from support.cli import CLI, run_cli, start_cli
from tickscope.collectors.run.sweep import (
    Step,
    SweepError,
    analyse,
    geometric_rates,
    judge,
    kneedle,
    load_sweep,
    parse_rates,
    parse_sla,
    step_argv,
)


def test_rates_parse_and_must_increase():
    assert parse_rates("5k,10k, 20k,1M") == [5_000, 10_000, 20_000, 1_000_000]
    for bad in ("", " ", "5k,abc", "10k,5k", "5k,5k", "5k,,10k", "-5k", "0"):
        with pytest.raises(SweepError, match="--rates"):
            parse_rates(bad)
    assert geometric_rates(5_000, 80_000, 5) == [5_000, 10_000, 20_000, 40_000, 80_000]
    with pytest.raises(SweepError):
        geometric_rates(80_000, 5_000, 5)


def test_sla_parses_latencies_and_refuses_unknown_percentiles():
    assert parse_sla("p99=200us, p99.9=1ms,max=2s") == {"p99": 200_000, "p99.9": 1_000_000, "max": 2e9}
    for bad, text in (
        ("p98=1ms", "unknown percentile 'p98'"),
        ("p99=fast", "is not a latency"),
        ("p99", "latency"),
    ):
        with pytest.raises(SweepError, match=text):
            parse_sla(bad)


def test_kneedle_finds_the_bend_of_a_hockey_stick_and_nothing_on_a_line():
    rates = [5e3, 10e3, 20e3, 40e3, 80e3, 160e3, 320e3]
    flat_then_steep = [50e3, 51e3, 52e3, 53e3, 1e6, 2e6, 3e6]
    assert kneedle(rates, flat_then_steep) == 3  # 40k: the last rate before the tail takes off
    assert kneedle(rates, [1, 2, 3, 4, 5, 6, 7]) is None  # a straight line (on the plotted axes): no knee
    assert kneedle(rates, [9, 8, 7, 6, 5, 4, 3]) is None  # falling: no knee either
    assert kneedle(rates[:2], flat_then_steep[:2]) is None


def _step(rate, p99, achieved=None, drops=0, co=None):
    s = Step(offered=rate, session=f"s{rate}", achieved=rate if achieved is None else achieved, tag="tick_to_trade",
             latency={"p50": p99 / 4, "p90": p99 / 2, "p99": p99, "p99_9": p99 * 2, "max": p99 * 3}, drops=drops)  # fmt: skip
    if co is not None:
        s.latency_co = {"p50": co / 4, "p90": co / 2, "p99": co, "p99_9": co * 2, "max": co * 3}
    return s


def test_sustainable_is_the_highest_rate_meeting_the_sla_judged_on_co_corrected_figures():
    sla = parse_sla("p99=200us")
    steps = [_step(5e3, 50e3), _step(10e3, 80e3), _step(20e3, 150e3, co=300e3), _step(40e3, 190e3)]
    reasons = [judge(s, sla) for s in steps]
    assert reasons == [None, None, None, None]
    assert [s.meets_sla for s in steps] == [True, True, False, True]  # the CO figure breaks 20k
    assert analyse(steps, sla).sustainable_rate == 40e3


def test_a_wide_breach_or_drops_stop_the_sweep_and_an_ignored_rate_is_flagged():
    sla = parse_sla("p99=200us")
    assert "broke p99 10x" in judge(_step(80e3, 2e6), sla)
    drop = _step(80e3, 100e3, drops=12)
    assert "dropped 12 records" in judge(drop, sla) and not drop.meets_sla
    ignored = _step(20e3, 10e3, achieved=100)
    assert judge(ignored, sla) is None and not ignored.meets_sla
    assert any("rate ignored? achieved 0% of offered" in f for f in ignored.flags)


def test_the_rate_reaches_the_command_as_placeholder():
    argv = step_argv(20_000, Path("o"), "5s", "1s", [], ["./trader", "--rate={rate}", "x"], cli=CLI)
    assert argv[-3:] == ["./trader", "--rate=20000", "x"] and "--expected-interval" in argv
    assert argv[argv.index("--expected-interval") + 1] == "50000ns"


@pytest.mark.slow  # three profile runs
def test_a_three_step_sweep_of_a_command_writes_sessions_sweep_json_and_a_report(tmp_path):
    out = tmp_path / "sw"
    r = run_cli("sweep", "--rates", "200,400,800", "--duration", "2s", "--warmup", "0s", "--sla", "p99=10s",
                "-o", str(out), "--", *SUBJECT, "0", "--forever", "--rate", "{rate}", timeout=300)  # fmt: skip
    assert r.returncode in (0, 1), r.stdout + r.stderr
    steps = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert steps == ["step-01-200", "step-02-400", "step-03-800"]
    assert all((out / s / "latency.hlog").is_file() for s in steps)
    doc = json.loads((out / "sweep.json").read_text())
    assert [s["offered"] for s in doc["steps"]] == [200, 400, 800] and doc["sla"] == {"p99": 1e10}
    assert all(s["tag"] == "tick_to_trade" and s["latency"]["p99"] > 0 for s in doc["steps"])
    assert all(s["latency_co"]["p99"] >= s["latency"]["p50"] for s in doc["steps"])  # CO figures are recorded
    for row in (
        "offered +achieved/s",
        "200/s ",
        "400/s ",
        "800/s ",
    ):  # a header, then a row per step as it ends
        assert re.search(rf"^\s*{row}", r.stdout, re.M), r.stdout
    assert "sustainable throughput:" in r.stdout and "knee:" in r.stdout and "Kneedle" in r.stdout
    assert load_sweep(out).steps[2].offered == 800
    table = run_cli("report", str(out))
    assert table.returncode == 0 and "tickscope sweep: SLA p99" in table.stdout
    html = tmp_path / "sweep.html"
    rep = run_cli("report", str(out), "-o", str(html))
    assert rep.returncode == 0 and html.is_file()
    exe = chromium()
    dom = headless(exe, tmp_path, "--dump-dom", url=html.as_uri())
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom.stdout).group(1)))
    assert attrs.get("data-js-errors") == "0" and attrs.get("data-charts-drawn") == "2", (
        attrs
    )  # latency, throughput


def test_a_command_that_ignores_the_rate_is_flagged_per_step(tmp_path):
    out = tmp_path / "sw"
    r = run_cli("sweep", "--rates", "5k,10k", "--duration", "2s", "--warmup", "0s", "-o", str(out),
                "--", *SUBJECT, "0", "--forever", "--rate", "50", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert all(
        any(f.startswith("rate ignored?") for f in s["flags"]) and not s["meets_sla"] for s in doc["steps"]
    )
    assert (
        r.stdout.count("rate ignored?") >= 2
        and "sustainable throughput: none (every offered rate dropped records or missed its rate; no --sla given)"
        in r.stdout
    )


@pytest.mark.parametrize("args, text", [
    (["--rates", ""], "--rates ''"), (["--rates", "5k,abc"], "'abc' is not a rate"), (["--rates", "0,5k"], "'0' is not a positive rate"),
    (["--rates", "10k,5k"], "do not increase step by step"), (["--rates", "5k", "--sla", "p98=1ms"], "unknown percentile"),
    ([], "no rates given (give --rates"), (["--rates", "5k", "--from", "1k", "--to", "2k"], "given together (give either one)"),
])  # fmt: skip
def test_bad_sweep_input_is_one_line_and_exit_2(tmp_path, args, text):
    r = run_cli("sweep", *args, "-o", str(tmp_path / "sw"))
    assert r.returncode == 2 and text in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "sw").exists()


def test_replay_speeds_offer_the_file_rate_times_the_speed(tmp_path):
    from support.replay import GAPS_NS, recorded
    from tickscope.pipeline import itch
    from tickscope.pipeline.replay import offered_rates

    f = tmp_path / "day.itch"
    itch.write_itch_file(f, recorded())
    per_s = len(recorded()) / (sum(GAPS_NS) / 1e9)
    assert offered_rates(f, "1x,2x,8x") == [("1x", pytest.approx(per_s)), ("2x", pytest.approx(2 * per_s)),
                                            ("8x", pytest.approx(8 * per_s))]  # fmt: skip
    for bad in ("2x,1x", "1x,max", "fast"):
        with pytest.raises(ValueError, match="--speeds"):
            offered_rates(f, bad)


def test_a_rate_of_a_million_reaches_every_step_as_digits(tmp_path):
    """``f"{rate:g}"`` handed 1,000,000 to the step as ``1e+06``, which profile refused: every rate
    from 1M up failed. Here the command fixes its own pace (the rate only reaches it, as $TICKSCOPE_RATE)."""
    argv = step_argv(2_500_000, Path("o"), "5s", "1s", [], ["./trader", "--rate={rate}"], cli=CLI)
    assert argv[argv.index("--rate") + 1] == "2500000" and argv[-1] == "--rate=2500000"
    out = tmp_path / "sw"
    seen = tmp_path / "rate.txt"
    r = run_cli("sweep", "--rates", "1M", "--duration", "1.5s", "--warmup", "0s", "-o", str(out), "--", "sh", "-c",
                f'echo "$TICKSCOPE_RATE {{rate}}" > {seen}; exec "$0" "$@"', *SUBJECT, "0", "--forever",
                "--rate", "300", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    step = json.loads((out / "sweep.json").read_text())["steps"][0]
    assert step["error"] is None and step["tag"] == "tick_to_trade" and step["offered"] == 1e6, step
    assert seen.read_text().split() == ["1000000", "1000000"]


def test_sweep_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    r = run_cli("sweep", "--rates", "5k", "-o", str(tmp_path / "f" / "sw"), "--", *SUBJECT, "10")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot write sweep directory" in r.stderr and "Not a directory" in r.stderr


def test_ctrl_c_during_a_sweep_keeps_the_finished_steps_and_closes_the_running_one(tmp_path):
    """Ctrl-C lost the sweep: no sweep.json though steps had finished, the running step's session
    left ``running`` (its profile killed 0.25 s after the signal), its ring directory in /dev/shm.
    Now sweep.json is written after every step, and the running step is stopped as Ctrl-C stops
    ``profile``: saved, marked interrupted, recorded as the last step."""
    import os
    import signal
    import time

    out, rings = tmp_path / "sw", tmp_path / "rings.txt"
    # The subject notes the ring directory of its step's profile, to check it is removed.
    cmd = ["sh", "-c", f'echo "$TICKSCOPE_RING_DIR" >> {rings}; exec "$0" "$@"', *SUBJECT, "0", "--forever",
           "--rate", "{rate}"]  # fmt: skip
    proc = start_cli("sweep", "--rates", "200,400,800,1600", "--duration", "3s", "--warmup", "0s", "-o", str(out),
                     "--", *cmd, collector_pid=False, columns=False, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # a hang guard: each wait is for a condition
        step2 = out / "step-02-400" / "latency.hlog"
        while not ((out / "sweep.json").is_file() and step2.is_file() and "Tag=" in step2.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "step 1 not recorded while step 2 ran"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the foreground group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "interrupted (SIGINT) during 400/s" in stderr, stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["interrupted"] and [s["offered"] for s in doc["steps"]] == [200, 400], doc
    first, cut = doc["steps"]
    assert not first["interrupted"] and first["latency"]["p99"] > 0
    assert cut["interrupted"] and cut["error"] is None and cut["tag"] == "tick_to_trade", cut
    assert json.loads((out / "step-02-400" / "meta.json").read_text())["status"] == "interrupted"
    assert not (out / "step-03-800").exists()
    ring_dirs = rings.read_text().split()
    assert len(ring_dirs) == 2 and not any(Path(d).exists() for d in ring_dirs), ring_dirs
    assert load_sweep(out).interrupted
