"""Every duration option is parsed to exact integer nanoseconds (no float truncation)."""

import json

import pytest

from support import QUIET, SUBJECT
from support.cli import run_cli
from tickscope.main import UserError, parse_duration, parse_duration_ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [("50us", 50_000), ("50µs", 50_000), ("1.5ms", 1_500_000), ("0.57s", 570_000_000), ("30s", 30 * 10**9),
     ("2m", 120 * 10**9), ("1h", 3600 * 10**9), ("10", 10 * 10**9), ("7ns", 7), ("0.001us", 1),
     (" 290 ms ", 290_000_000)],
)  # fmt: skip
def test_durations_are_exact_nanoseconds(text, ns):
    assert parse_duration_ns(text) == ns
    assert round(parse_duration(text) * 1e9) == ns


@pytest.mark.parametrize("text", ["", "fast", "-1s", "1e3s", "0.5ns", "3 days"])
def test_a_bad_duration_is_a_one_line_error(text):
    with pytest.raises(UserError) as e:
        parse_duration_ns(text, "warmup")
    assert "warmup" in str(e.value) and "\n" not in str(e.value)


def test_profile_stores_the_durations_it_was_given_exactly(tmp_path):
    out = tmp_path / "s"
    r = run_cli("profile", *QUIET, "--duration", "20s", "--interval", "290ms",
                "--warmup", "0.57s", "--expected-interval", "50us", "--out", str(out), "--", *SUBJECT, "200")  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["expected_interval_ns"] == 50_000
    assert round(meta["interval_s"] * 1e9) == 290_000_000 and round(meta["warmup_s"] * 1e9) == 570_000_000


def test_a_duration_finer_than_a_nanosecond_is_refused_by_the_cli():
    r = run_cli("profile", "--expected-interval", "0.5ns", "--", "true")
    assert r.returncode == 2 and "finer than 1 ns" in r.stderr
