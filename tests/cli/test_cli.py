"""The CLI as a user meets it: real subprocesses, exit codes, one-line errors, saved sessions."""

import json
import re
import time
from pathlib import Path

import pytest

from conftest import needs_tool
from support import QUIET, SUBJECT, free_port
from support.cli import run_cli
from tickscope.collectors.session import Session

ERROR_LINE = re.compile(r"tickscope [\w-]+: (?!warning: )\S")  # main.py's one error form
NARROW = {"COLUMNS": "80"}  # a line longer than the terminal must stay one line when piped


def assert_one_line_error(out, *needles):
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    err = [line for line in out.stderr.splitlines() if ERROR_LINE.match(line)]
    assert err, out.stderr
    for n in needles:
        assert n in out.stderr, out.stderr


def test_profile_a_python_command_saves_a_session_and_prints_the_table(tmp_path):
    out = run_cli("profile", "--duration", "20s", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "3000",
                  "--rate", "5000", "--no-order-every", "3")  # fmt: skip
    assert out.returncode == 0, out.stderr
    for word in ("feed", "strategy", "tick_to_trade", "tick_to_decision", "p99.9", "drop-free"):
        assert word in out.stdout
    s = Session.load(tmp_path / "s")
    c = s.meta["counters"]
    assert c["produced"] == c["drained"] == 3000 and c["dropped_ring_full"] == 0
    assert s.summary()["tick_to_trade"]["count"] == 2000 and s.summary()["tick_to_decision"]["count"] == 1000
    assert s.meta["status"] == "complete" and "tick_subject.py" in s.meta["command"]


def test_profile_stops_a_long_running_target_at_duration(tmp_path):
    started = time.monotonic()
    out = run_cli("profile", "--duration", "2s", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "0",
                  "--forever", "--rate", "2000")  # fmt: skip
    wall_s = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    assert s.meta["counters"]["writers_died"] == 0, "the target was asked to stop and closed its ring"
    # The subject is paced at 2,000 ticks/s from its start: it can have made no more than that
    # many in the time the whole run took, however slow the host (which only lowers the count).
    count = s.summary()["tick_to_trade"]["count"]
    assert 0 < count <= 2000 * wall_s + 1 and count == s.meta["counters"]["drained"]


def test_warmup_is_recorded_apart(tmp_path):
    out = run_cli("profile", "--duration", "3s", "--warmup", "1s", "--out", str(tmp_path / "s"), *QUIET, "--",
                  *SUBJECT, "0", "--forever", "--rate", "2000")  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    assert (
        s.warmup_intervals["tick_to_trade"] and min(iv.start_s for iv in s.intervals["tick_to_trade"]) >= 1.0
    )


def test_c_program_profiled_end_to_end(tmp_path, c_build):
    exe = c_build("c_writer.c")
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", str(exe), "5000", "50000")
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    assert s.summary()["tick_to_trade"]["count"] == 5000
    assert s.meta["rings"][0]["tsc_hz"] > 1e8


def test_target_that_exits_nonzero_reports_its_code_and_keeps_the_data(tmp_path):
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "200", "--exit-code", "3")
    assert_one_line_error(out, "exited with code 3")
    assert Session.load(tmp_path / "s").summary()["tick_to_trade"]["count"] == 200


def test_missing_target_command(tmp_path):
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", "no-such-trader-binary")
    assert_one_line_error(out, "target command not found", "no-such-trader-binary")


@pytest.mark.parametrize("flag, value, needle", [("--duration", "5x", "not a duration"),
                                                 ("--rate", "fast", "not a rate"),
                                                 ("--warmup", "-1s", "not a duration"),
                                                 ("--hiccup-cpu", "4096", "not a CPU this process may run on")])  # fmt: skip
def test_bad_flag_values_are_one_line(tmp_path, flag, value, needle):
    out = run_cli("profile", flag, value, "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "10")
    assert_one_line_error(out, needle)


@pytest.mark.parametrize("args, needle", [
    (["profile", "--rate", "0"], "--rate '0' is not a positive rate"),
    (["profile", "--rate", "0k"], "--rate '0k' is not a positive rate"),
    (["profile", "--duration", "5", "sec"], "unexpected argument 'sec' (a target command goes after --"),
    (["profile", "--duration", "1s", "sec", "--", *SUBJECT, "10"], "unexpected argument 'sec'"),
    (["profile", "--bogus", "--", *SUBJECT, "10"], "no such option: --bogus"),
    (["sweep", "--rates", "5k", "--duration", "1s", "sec"], "unexpected argument 'sec'"),
])  # fmt: skip
def test_refused_before_anything_starts_leaving_nothing_behind(tmp_path, args, needle):
    """``profile --rate 0`` failed inside the venue and ``profile --duration 5 sec`` ran ``sec`` as
    the target; both left a session directory. Refused in one line, before any directory exists,
    whether --out is given or the default sessions/ would be used."""
    for out in ([], ["--out", str(tmp_path / "s")]):
        r = run_cli(*args, *QUIET[: 3 if args[0] == "profile" else 0], *out, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_a_rate_is_one_grammar_and_written_back_as_it_reads():
    """One parser for profile and sweep, one formatter for the rate a sweep hands its steps."""
    from tickscope.collectors.session.units import RateError, format_rate, parse_rate

    for text, rate in (("20000", 20_000), ("20k", 20_000), ("1.5k/s", 1_500), ("1M", 1_000_000),
                       ("2.5M", 2_500_000), ("1.1k", 1_100), ("0.5", 0.5), ("12345678", 12_345_678)):  # fmt: skip
        assert parse_rate(text) == rate
        assert "e" not in format_rate(rate) and parse_rate(format_rate(rate)) == rate, format_rate(rate)
    for rate in (1e6, 3e7, 1e9, 0.001, 1 / 3, 123456.789):
        assert parse_rate(format_rate(rate)) == rate, format_rate(rate)
    for bad in ("0", "0k", "0.0M"):
        with pytest.raises(RateError, match="is not a positive rate"):
            parse_rate(bad)
    for bad in ("-5k", "1e6", "fast", "", "5 k/s/s"):
        with pytest.raises(RateError, match="is not a rate"):
            parse_rate(bad)


@pytest.mark.parametrize("address", ["foo", "127.0.0.1:abc", ":9878", "host:0", "host:99999", "[::1]:98x"])
def test_malformed_fix_connect_is_one_line_before_anything_starts(tmp_path, address):
    out = run_cli(
        "profile", "--fix-connect", address, "--duration", "1s", "--out", str(tmp_path / "s"), *QUIET
    )
    assert_one_line_error(out, f"--fix-connect {address!r} is not HOST:PORT (expected")
    assert not (tmp_path / "s").exists(), "refused before the session (or the pipeline) started"


def test_unwritable_out(tmp_path):
    (tmp_path / "f").write_text("")
    out = run_cli("profile", "--out", str(tmp_path / "f" / "s"), *QUIET, "--", *SUBJECT, "10")
    assert_one_line_error(out, "cannot write session directory")


def test_report_of_missing_or_broken_session(tmp_path):
    assert_one_line_error(run_cli("report", str(tmp_path / "nope")), "no session at")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "meta.json").write_text("{}")
    (tmp_path / "s" / "latency.hlog").write_text("Tag=x,0,1,1,HISTF\nTag=x,1,1,1,HISTF\n")
    assert_one_line_error(run_cli("report", str(tmp_path / "s")), "not an HdrHistogram interval")


def test_report_prints_a_saved_session(tmp_path):
    assert run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "500").returncode == 0
    out = run_cli("report", str(tmp_path / "s"))
    assert out.returncode == 0 and "tick_to_trade" in out.stdout and "drop-free" in out.stdout


def test_bench_json_has_every_figure():
    out = run_cli("bench", "--json", "--quick", timeout=300)
    assert out.returncode == 0, out.stderr
    b = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("perf_counter_ns_ns", "probe_stamp_ns", "c_probe_ns", "ingest_values_per_s", "hdrh_record_value_per_s",
                "ingest_ratio", "drain_records_per_s", "drain_paced_records_per_s", "collect_records_per_s",
                "collect_cpu_ns_per_record",
                "collect_fanout_records_per_s", "collect_fanout_cpu_ns_per_record", "collect_fanout_ratio",
                "collect_incident_cpu_ns_per_record", "collect_incident_check_ns_per_record",
                "collect_incident_buffer_peak_bytes", "collect_incident_cpu_ratio", "kernels_load_s",
                "collect_floor_cpu_ns_per_record", "collect_floor_records_per_s", "collect_floor_ratio"):  # fmt: skip
        assert key in b
    # the physical floor copied the very records the collector then drained
    assert b["collect_floor_records"] == b["collect_records"] > 0
    # the same rings with and without --incident's buffer: every trace counted the same
    assert (
        b["collect_incident_records"] == b["collect_records"] and b["collect_incident_traces_incomplete"] == 0
    )
    assert b["collect_incident_buffer_peak_bytes"] > 0
    assert b["kernels_load_s"] > 0 and "kernels_compile_s" not in b  # --quick never compiles cold
    assert (
        b["drain_zero_loss"] is True
        and b["collect_traces_incomplete"] == 0
        and b["probe_bench_dropped"] == 0
        and b["collect_fanout_traces_incomplete"] == 0
    )


def test_unknown_command_and_option_exit_2():
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("profile", "--no-such-flag").returncode == 2


def test_expected_interval_adds_coordinated_omission_corrected_totals(tmp_path):
    out = run_cli("profile", "--expected-interval", "100us", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT,
                  "2000", "--rate", "10000")  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    raw, co = s.summary()["tick_to_trade"], s.summary()["tick_to_trade_co"]
    assert co["count"] >= raw["count"] == 2000 and co["max"] == raw["max"]


def test_doctor_prints_findings_with_fixes():
    out = run_cli("doctor", "--json")
    assert out.returncode == 0, out.stderr
    findings = json.loads(out.stdout)
    assert {"name", "status", "value", "fix"} <= set(findings[0]) and any(
        f["name"] == "clocksource" for f in findings
    )


def test_profile_with_side_collectors_saves_their_files(tmp_path):
    out = run_cli("profile", "--out", str(tmp_path / "s"), "--no-live", "--duration", "3s", "--", *SUBJECT, "0",
                  "--forever", "--rate", "2000")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "s" / "hiccup.hlog").is_file()
    s = Session.load(tmp_path / "s")
    assert s.meta["host"]["cpus"] >= 1 and any(f["name"] == "timer cost" for f in s.meta["doctor"])
    assert "Traceback" not in out.stderr


def test_bench_says_which_way_a_figure_misses_its_target():
    from rich.console import Console

    from tickscope.reports.bench import render as table

    console = Console(record=True, width=200)
    console.print(table({"c_probe_ns": 40.0, "ingest_ratio": 20.0, "probe_stamp_ns": 50.0}))
    text = console.export_text()
    assert "misses target (≤ 15)" in text and "misses target (≥ 100)" in text and "BELOW" not in text
    assert text.count("misses target") == 2 and " ok" in text


def test_version_prints_the_package_version():
    from importlib.metadata import version

    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tickscope {version('tickscope')}"


def one_order_capture(cut: int = 0) -> bytes:
    """A pcap: a MoldUDP64 packet to udp 40100, the order it caused to tcp 40101 (ClOrdID TS7-1),
    the market data again; ``cut`` bytes off the end (a capture cut short)."""
    from support import wire_synth as S
    from tickscope.pipeline import itch
    from tickscope.pipeline.fix import OrderTemplate

    mold = itch.mold_packet(b"TESTSESS01", 7, [itch.order_delete(1, 0, 0, 7)])
    nos = OrderTemplate("TRADER", "VENUE").encode(1, b"TS7-1", b"AAPL", b"1", 100, b"10.0000")
    md = S.ethernet(S.ipv4("10.0.0.1", "10.0.0.2", 17, S.udp(5000, 40100, mold)))
    order = S.ethernet(S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, 40101, 1, nos)))
    data = S.pcap([(10**9, md), (10**9 + 5000, order), (10**9 + 9000, md)])
    return data[: len(data) - cut]


def test_report_of_a_wire_session_names_what_the_capture_lost_and_claims_no_records(tmp_path):
    # `tickscope wire` of a capture whose last record is cut: its session has no rings, so no
    # "records: produced 0 ... drop-free", and the cut is said by report (one line) and in the HTML.
    capture = tmp_path / "cut.pcap"
    capture.write_bytes(one_order_capture(cut=10))
    out = run_cli(
        "wire",
        str(capture),
        "--md",
        "udp:40100",
        "--orders",
        "tcp:40101",
        "-o",
        str(tmp_path / "w"),
        env=NARROW,
    )
    assert out.returncode == 0, out.stderr
    (warned,) = [line for line in out.stderr.splitlines() if "last record truncated" in line]
    assert "packets read before it" in warned, out.stderr
    rep = run_cli("report", str(tmp_path / "w"), env=NARROW)
    assert rep.returncode == 0 and "wire_to_wire" in rep.stdout, rep.stderr
    assert "records: produced" not in rep.stdout and "drop-free" not in rep.stdout, rep.stdout
    cut = [line for line in rep.stdout.splitlines() if "last record truncated" in line]
    assert len(cut) == 1 and "packets read before it" in cut[0], rep.stdout
    html = run_cli("report", str(tmp_path / "w"), "-o", str(tmp_path / "w.html"))
    assert html.returncode == 0 and "last record truncated" in (tmp_path / "w.html").read_text()
    trace = run_cli("report", str(tmp_path / "w"), "--perfetto", str(tmp_path / "t.json"))
    assert trace.returncode == 0 and json.loads((tmp_path / "t.json").read_text())["traceEvents"] == []
    assert "(empty: the session kept no trace's stamps" in trace.stdout, trace.stdout


def test_wire_never_overwrites_a_session_unless_forced(tmp_path):
    # `tickscope wire CAP -o DIR` wrote over whatever session DIR held (a profile's, with its
    # probes' stages), and a second run onto the default CAPTURE.session silently replaced the first.
    capture = tmp_path / "c.pcap"
    capture.write_bytes(one_order_capture())
    ports = ("--md", "udp:40100", "--orders", "tcp:40101")
    profiled = run_cli(
        "profile", "--duration", "20s", "--out", str(tmp_path / "p"), *QUIET, "--", *SUBJECT, "50"
    )
    assert profiled.returncode == 0, profiled.stderr
    before = (tmp_path / "p" / "meta.json").read_text()
    onto = run_cli("wire", str(capture), *ports, "-o", str(tmp_path / "p"))
    assert_one_line_error(onto, "already holds a session (status complete): not overwriting it (use --force")
    assert (tmp_path / "p" / "meta.json").read_text() == before
    first = run_cli("wire", str(capture), *ports)
    assert first.returncode == 0 and (tmp_path / "c.pcap.session" / "meta.json").exists(), first.stderr
    assert_one_line_error(run_cli("wire", str(capture), *ports), "c.pcap.session already holds a session")
    forced = run_cli("wire", str(capture), *ports, "-o", str(tmp_path / "p"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert Session.load(tmp_path / "p").meta["source"] == "wire"
    (tmp_path / "p" / "c.pcap").write_bytes(capture.read_bytes())
    inside = run_cli("wire", str(tmp_path / "p" / "c.pcap"), *ports, "-o", str(tmp_path / "p"), "--force")
    assert_one_line_error(inside, "--force would remove c.pcap, the capture being read")


@needs_tool("tcpdump", install="apt-get install tcpdump")
def test_a_capture_that_never_ran_prints_its_reason_and_no_made_up_figures(tmp_path):
    # It printed "capture nosuch0 (host stamps): ? packets, drops unknown; orders on the wire 0,
    # matched 0, ..." under the warning that tcpdump had failed.
    # --capture-iface alone implies --capture (it was silently ignored: no capture, no warning)
    out = run_cli("profile", "--capture-iface", "nosuch0", "--duration", "1s", "--rate", "2k",
                  "--out", str(tmp_path / "s"), *QUIET)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "capture: tcpdump failed on nosuch0" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert "capture nosuch0" not in out.stdout and "drops unknown" not in out.stdout, out.stdout


@needs_tool("tcpdump", install="apt-get install tcpdump")
def test_capture_with_fix_connect_sees_the_orders_sent_to_the_other_acceptor(tmp_path):
    # The capture filtered the bundled venue's own FIX port, which --fix-connect leaves unused:
    # 0 orders on the wire, every traced order "not on the wire", no wire_to_wire.
    from support.hostile import HostileVenue

    acceptor = HostileVenue([], answer_orders=True)
    acceptor.start()
    out = run_cli("profile", "--capture", "--fix-connect", f"127.0.0.1:{acceptor.port}", "--duration", "3s",
                  "--rate", "5k", "--out", str(tmp_path / "s"), *QUIET)  # fmt: skip
    acceptor.server.close()
    assert out.returncode == 0, out.stderr
    s = Session.load(tmp_path / "s")
    capture, sent = s.meta["capture"], s.meta["counters"]["orders_sent"]
    assert capture["order_port"] == acceptor.port and sent > 0
    # whole packets: under load a segment of several orders outgrew a 2048-byte cap, and the
    # stream's gap lost every order after it (495 of 650 matched)
    assert capture["snaplen"] >= int(Path("/sys/class/net/lo/mtu").read_text()) + 14, capture["snaplen"]
    assert "packets_cut_by_snaplen" not in capture["counters"], capture
    assert capture["counters"]["orders_new"] == capture["counters"]["orders_matched"] == sent, capture
    assert capture["orders_traced_not_on_wire"] == 0 and s.summary()["wire_to_wire"]["count"] == sent


def test_a_fix_acceptor_nobody_listens_on_is_one_line_naming_it_once(tmp_path):
    port = free_port()  # nobody listens there
    out = run_cli("profile", "--fix-connect", f"127.0.0.1:{port}", "--duration", "20s", "--out",
                  str(tmp_path / "s"), *QUIET)  # fmt: skip
    assert_one_line_error(out, f"tickscope profile: trader: cannot connect to FIX acceptor 127.0.0.1:{port}")
    assert "trader: trader:" not in out.stderr, out.stderr


def test_wire_refuses_a_tag_that_is_not_a_positive_number(tmp_path):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(one_order_capture())
    out = run_cli("wire", str(capture), "--md", "udp:40100", "--orders", "tcp:40101", "--clordid-tag", "-5")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "--clordid-tag" in out.stderr, out.stderr
    assert not (tmp_path / "c.pcap.session").exists()


def test_traces_set_aside_are_one_accounting_line_and_fail_the_run_with_fail_on_drops(tmp_path):
    """Every 10th tick's clocks disagree (md.decoded before md.rx): those traces are set aside,
    named in one line whose terms add up, the run is not drop-free and --fail-on-drops exits 1."""
    out = tmp_path / "skew"
    r = run_cli("profile", "--no-live", "--no-perf", "--fail-on-drops", "--out", str(out), "--", *SUBJECT, "1000",
                "--skew-every", "10")  # fmt: skip
    line = "traces: 1,000 seen = 900 recorded + 100 set aside (clock skew 100)"
    assert r.returncode == 1 and line in r.stdout, r.stdout + r.stderr
    assert "NOT drop-free: 100 traces set aside (not measured)" in r.stdout
    assert "records lost or traces set aside (see above): exit 1 (--fail-on-drops)" in r.stderr
    meta = json.loads((out / "meta.json").read_text())
    c = meta["counters"]
    assert (
        meta["drop_free"] is False
        and c["traces_seen"] == c["traces_complete"] + c["traces_clock_skew"] == 1000
    )
    assert line in run_cli("report", str(out)).stdout
    html = tmp_path / "skew.html"
    assert run_cli("report", str(out), "-o", str(html)).returncode == 0 and line in html.read_text()
    # A session saved before traces were counted as seen still loads, and the line is rebuilt from
    # the counts that were exclusive then.
    for key in ("traces_seen", "traces_duplicate", "traces_out_of_range", "traces_unordered", "records_refused",
                "rings_refused"):  # fmt: skip
        del c[key]
    (out / "meta.json").write_text(json.dumps(meta))
    old = run_cli("report", str(out))
    assert old.returncode == 0 and line in old.stdout, old.stdout + old.stderr
