"""Every duration option is parsed to exact integer nanoseconds (no float truncation)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("text", "ns"),
    [("1m30s", 90 * 10**9), ("2d", 2 * 86400 * 10**9), ("1h2m3s", 3723 * 10**9), ("1m 30s", 90 * 10**9),
     ("1s500ms", 1_500_000_000), ("500us", 500_000)],
)  # fmt: skip
def test_one_grammar_takes_compound_durations_and_days(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["30s1m", "1s1s", "1m30", "2 days"])
def test_compound_durations_name_each_unit_once_largest_first(text):
    with pytest.raises(UserError):
        parse_duration_ns(text)


@given(st.integers(min_value=0, max_value=400 * 86400 * 10**9))
def test_a_formatted_duration_reads_back_exactly(ns):
    from tickscope.collectors.session.units import format_duration
    from tickscope.collectors.session.units import parse_duration_ns as parse

    assert parse(format_duration(ns)) == ns


def test_a_latency_limit_is_a_duration_with_its_unit():
    from tickscope.collectors.session.units import parse_latency_ns

    assert parse_latency_ns("1ms500us") == 1_500_000 and parse_latency_ns("0.5ns") == 0.5
    assert parse_latency_ns("200") is None  # 200 seconds or 200 us? a limit names its unit


def test_the_sla_offers_the_one_percentile_set():
    from tickscope.collectors.run.sweep import parse_sla

    assert parse_sla("p99.99=1ms,max=2ms,mean=100us") == {"p99.99": 1e6, "max": 2e6, "mean": 1e5}
