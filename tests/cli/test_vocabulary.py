"""One vocabulary across commands: -o/--out is the output everywhere, report and compare take the
newest sessions when given none, sweep hands every profile option to its steps, live takes the
profile options that apply to it."""

import json
import os
import time

from support import QUIET, SUBJECT
from support.cli import run_cli
from support.synth import synth_session


def sessions(tmp_path, *names):
    made = []
    for n in names:
        made.append(synth_session(tmp_path / "sessions" / n, intervals=3, per_interval=300))
        time.sleep(0.02)  # distinct mtimes: "newest" is by when the session was written
    return made


def test_report_takes_out_and_the_newest_session(tmp_path):
    _, newest = sessions(tmp_path, "b-older", "a-newer")  # newest by time written, not by name
    r = run_cli("report", "-o", "r.html", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "r.html").is_file(), r.stderr
    assert f"using the newest session: {os.path.relpath(newest, tmp_path)}" in r.stderr
    r = run_cli("report", "--out", "r2.html", str(newest), cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "r2.html").is_file(), r.stderr
    r = run_cli("report", "--output", "r3.html", str(newest), cwd=tmp_path)  # the old spelling, hidden
    assert r.returncode == 0 and (tmp_path / "r3.html").is_file(), r.stderr
    assert "--output" not in run_cli("report", "--help").stdout


def test_compare_writes_every_output_into_out_and_takes_the_two_newest(tmp_path):
    base, cand = sessions(tmp_path, "base", "cand")
    r = run_cli("compare", "-o", "cmp", cwd=tmp_path)
    assert r.returncode in (0, 1, 3), r.stderr
    assert (
        f"using the newest sessions: {os.path.relpath(base, tmp_path)}, {os.path.relpath(cand, tmp_path)}"
        in r.stderr
    )
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == [
        "compare.html", "compare.json", "compare.md", "compare.xml"]  # fmt: skip
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())


def test_sweep_passes_profile_options_to_each_step_and_warms_up_outside_duration(tmp_path):
    out = tmp_path / "sw"
    r = run_cli("sweep", "--rates", "2k", "--duration", "1s", "--warmup", "500ms", "-o", str(out), *QUIET,
                "--interval", "250ms", "--name", "passed", "--", *SUBJECT, "0", "--forever", "--rate", "{rate}",
                timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (step,) = [d for d in out.iterdir() if d.is_dir()]
    meta = json.loads((step / "meta.json").read_text())
    assert meta["interval_s"] == 0.25 and meta["warmup_s"] == 0.5
    assert meta["options"]["duration_s"] == 1.5  # the measured second, the warm-up on top
    assert not (step / "hiccup.hlog").exists()  # --no-hiccup reached the step
    assert "no --sla given" in r.stdout and "met the SLA" not in r.stdout


def test_live_takes_warmup_interval_and_expected_interval(tmp_path, ring_dir):
    r = run_cli("live", str(ring_dir), "--duration", "1s", "--warmup", "200ms", "--interval", "250ms",
                "--expected-interval", "50us", "--prometheus-hold", "0s", "--no-live", "-o", str(tmp_path / "s"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["interval_s"] == 0.25 and meta["warmup_s"] == 0.2 and meta["expected_interval_ns"] == 50_000
