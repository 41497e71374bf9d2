"""--prometheus: a real Prometheus (Debian's, native histograms on) scrapes a real profile run; the
endpoint stays up, and lets the run end, whatever its clients do."""

import asyncio
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from conftest import need_tool
from support import QUIET, SUBJECT, free_port
from support.cli import CLI, run_cli, start_cli
from support.prometheus import Prometheus
from tickscope.collectors.session import Session
from tickscope.collectors.session.hdr import (
    BulkRecorder,
    counts_view,
    highest_equivalent_values,
    new_histogram,
    percentiles,
)
from tickscope.collectors.side.prometheus import (
    CLASSIC_BOUNDS_NS,
    RELATIVE_ERROR_BOUND,
    native_bucket_bounds,
    to_native,
)


def test_every_hdr_bucket_moves_whole_into_the_native_bucket_holding_its_value():
    rng = np.random.default_rng(3)
    h = new_histogram()
    BulkRecorder(h).record(h, (rng.lognormal(9, 2, 200_000)).astype(np.int64) + 1)
    native = to_native(h)
    assert native.count == h.total_count == int(native.counts.sum())
    assert np.all(np.diff(native.indexes) > 0)
    counts = counts_view(h)
    nz = np.flatnonzero(counts)
    highest = highest_equivalent_values(h)[nz] / 1e9
    # each HDR bucket's value lies in exactly the native bucket its count went to
    by_native = dict(zip(native.indexes.tolist(), native.counts.tolist(), strict=True))
    regrouped: dict[int, int] = {}
    for v, c in zip(highest, counts[nz], strict=True):
        i = next(i for i in range(int(np.floor(np.log2(v) * 256)) - 1, int(np.ceil(np.log2(v) * 256)) + 2)
                 if native_bucket_bounds(i)[0] < v <= native_bucket_bounds(i)[1])  # fmt: skip
        regrouped[i] = regrouped.get(i, 0) + int(c)
    assert regrouped == by_native


def test_bad_listen_addresses_are_one_line_errors(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli("profile", "--out", str(tmp_path / "a"), *QUIET, "--prometheus", f"127.0.0.1:{port}",
                      "--", *SUBJECT, "10")  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"port {port} is in use" in out.stderr, out.stderr
    out = run_cli("profile", "--out", str(tmp_path / "b"), *QUIET, "--prometheus", "192.0.2.1:9464",
                  "--", *SUBJECT, "10")  # fmt: skip
    assert out.returncode == 2 and "not an address of this host" in out.stderr, out.stderr
    out = run_cli("profile", "--out", str(tmp_path / "c"), *QUIET, "--prometheus", "localhost:http",
                  "--", *SUBJECT, "10")  # fmt: skip
    assert out.returncode == 2 and "expected [HOST:]PORT" in out.stderr, out.stderr
    assert not any((tmp_path / n).exists() for n in "abc"), "nothing is recorded when the endpoint fails"


def final_scrape_time(prom: Prometheus, drained: int, selector: str) -> float:
    """When Prometheus scraped the run's final totals (before the target vanished and went stale):
    the last scrape that saw every record drained. Not the first: a scrape between the last drain
    and the final roll sees every record drained but not yet every latency (a loaded host)."""
    samples = prom.query(f"tickscope_records_drained_total{selector}[10m]")
    assert samples, "no scrape reached Prometheus"
    ts = [float(t) for t, v in samples[0]["values"] if float(v) == drained]
    assert ts, (drained, samples[0]["values"][-3:])
    return ts[-1]


def final_latency_time(prom: Prometheus, selector: str, count: int) -> float:
    """When Prometheus first held a host's final latency totals: the first scrape whose
    tick-to-trade histogram counts the session's ``count`` traces."""
    series = prom.query(f"tickscope_latency_seconds{selector}[10m]")
    assert len(series) == 1, series
    ts = [float(t) for t, h in series[0]["histograms"] if int(float(h["count"])) == count]
    assert ts, (count, series[0]["histograms"][-1:])
    return ts[0]


def assert_p99_agrees(prom: Prometheus, selector: str, at: float, hist) -> float:
    got = prom.query(f"histogram_quantile(0.99, sum(tickscope_latency_seconds{selector}))", at)
    assert len(got) == 1, got
    prom_p99 = float(got[0]["value"][1])
    count = prom.query(f"histogram_count(sum(tickscope_latency_seconds{selector}))", at)
    assert int(float(count[0]["value"][1])) == hist.total_count, "Prometheus holds the final totals"
    ours = percentiles(hist, (99.0,))[99.0] / 1e9  # the summary's p99: Prometheus takes the same rank
    assert abs(prom_p99 - ours) <= RELATIVE_ERROR_BOUND * ours, (prom_p99, ours)
    return prom_p99


@pytest.fixture
def prometheus_for(tmp_path):
    started = []

    def start(targets, native=True):
        started.append(Prometheus(tmp_path, targets, native))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def test_prometheus_p99_of_the_bundled_pipeline_agrees_with_the_session(tmp_path, prometheus_for):
    port = free_port()
    prom = prometheus_for([f"127.0.0.1:{port}"])
    out = run_cli("profile", "--duration", "8s", "--rate", "5k", "--out", str(tmp_path / "s"), *QUIET,
                  "--prometheus", f"127.0.0.1:{port}", timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stderr
    session = Session.load(tmp_path / "s")
    assert session.meta["prometheus"]["final_scraped"], session.meta["prometheus"]
    at = final_scrape_time(prom, session.meta["counters"]["drained"], "")
    hist = session.total("tick_to_trade")
    assert hist.total_count > 50
    prom_p99 = assert_p99_agrees(prom, '{stage="tick_to_trade"}', at, hist)
    summary_p99 = session.summary()["tick_to_trade"]["p99"]
    assert abs(prom_p99 * 1e9 - summary_p99) <= RELATIVE_ERROR_BOUND * summary_p99, (prom_p99, summary_p99)
    # the README's per-stage PromQL: one p99 per stage the session recorded
    per_stage = prom.query(
        "histogram_quantile(0.99, sum by (host, stage) (rate(tickscope_latency_seconds[1m])))", at
    )
    assert {r["metric"]["stage"] for r in per_stage} == set(session.tags), per_stage
    assert all(float(r["value"][1]) > 0 for r in per_stage)
    # counters labelled by host and the run's name (the bundled pipeline's); the session by an info metric
    sent = prom.query('tickscope_orders_sent_total{pipeline="pipeline-itch-busy"}', at)
    assert sent and sent[0]["metric"]["host"] == socket.gethostname() and "session" not in sent[0]["metric"]
    assert int(float(sent[0]["value"][1])) == session.meta["counters"]["orders_sent"] > 0
    info = prom.query("tickscope_session_info", at)
    assert [(r["metric"]["session"], r["value"][1]) for r in info] == [("s", "1")], info


def test_dimension_labels_with_a_cap_give_histogram_quantile_per_venue_within_the_bound(
    tmp_path, prometheus_for
):
    """tests/programs/dims_subject.py (venues XNAS and BATS, five symbols) with --dimension-cap 2:
    per venue, Prometheus's p99 is the session's within the documented bound; symbols are two of
    their own and ``other``; the plain family still sums to the run's own count."""
    import sys

    from support import PROGRAMS

    port = free_port()
    prom = prometheus_for([f"127.0.0.1:{port}"])
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--prometheus", f"127.0.0.1:{port}",
                  "--dimension-cap", "2", "--", sys.executable, str(PROGRAMS / "dims_subject.py"), "4000",
                  "--symbols", "5", "--gap-us", "300", "--truth", str(tmp_path / "t.txt"), timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stderr
    session = Session.load(tmp_path / "s")
    assert session.meta["prometheus"]["final_scraped"], session.meta["prometheus"]
    at = final_scrape_time(prom, session.meta["counters"]["drained"], "")
    assert_p99_agrees(prom, '{stage="tick_to_trade"}', at, session.total("tick_to_trade"))  # no double count
    for venue in ("XNAS", "BATS"):
        hist = session.slice("venue", venue).total("tick_to_trade")
        got = prom.query(f'histogram_quantile(0.99, tickscope_dimension_latency_seconds{{stage="tick_to_trade",'
                         f'dimension="venue",venue="{venue}"}})', at)  # fmt: skip
        assert len(got) == 1, got
        ours = percentiles(hist, (99.0,))[99.0] / 1e9
        assert abs(float(got[0]["value"][1]) - ours) <= RELATIVE_ERROR_BOUND * ours, (venue, got, ours)
    symbols = prom.query('tickscope_dimension_latency_seconds{stage="tick_to_trade",dimension="symbol"}', at)
    labels = sorted(r["metric"]["symbol"] for r in symbols)
    assert len(labels) == 3 and "other" in labels, labels
    per_venue = prom.query('histogram_count(sum by (venue) (tickscope_dimension_latency_seconds{stage="tick_to_trade",'
                           'dimension="venue"}))', at)  # fmt: skip
    assert sum(float(r["value"][1]) for r in per_venue) == session.total("tick_to_trade").total_count


def series_of(body: bytes) -> set[str]:
    """The series a text scrape holds, as ``name{labels}`` without the values."""
    return {
        line.rsplit(" ", 1)[0] for line in body.decode().splitlines() if line and not line.startswith("#")
    }


def test_a_restarted_run_continues_the_same_series_and_says_which_session_in_an_info_metric(tmp_path):
    """Two runs of one pipeline (same --name, new session each): every series but the session
    info and start time is the same, so a restart adds no series to Prometheus."""
    scraped = []
    for run in ("first", "second"):
        port = free_port()
        proc = start_cli("profile", "--out", str(tmp_path / run), "--name", "md-handler", *QUIET,
                         "--prometheus", f"127.0.0.1:{port}", "--prometheus-linger", "0s", "--", *SUBJECT, "0",
                         "--forever", "--rate", "2000")  # fmt: skip
        try:
            wait_serving(port, proc, drained=True)
            scraped.append(settled_series(port))
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            proc.kill()
        assert proc.returncode == 130 and "Traceback" not in err, err
    first, second = scraped
    moving = {"tickscope_session_info", "tickscope_session_start_time_seconds"}
    assert {s for s in first if s.split("{")[0] not in moving} == {
        s for s in second if s.split("{")[0] not in moving
    }
    assert any(
        s.startswith("tickscope_latency_seconds_count{") and 'pipeline="md-handler"' in s for s in first
    )
    assert not any("session=" in s for s in first if not s.startswith("tickscope_session_info"))
    info = [sorted(s for s in series if s.startswith("tickscope_session_info")) for series in scraped]
    assert info == [[f'tickscope_session_info{{host="{socket.gethostname()}",pipeline="md-handler",session="{r}"}}']
                    for r in ("first", "second")], info  # fmt: skip


def test_a_text_only_prometheus_gets_classic_buckets_holding_the_same_p99(tmp_path, prometheus_for):
    port = free_port()
    prom = prometheus_for([f"127.0.0.1:{port}"], native=False)
    out = run_cli("profile", "--duration", "4s", "--out", str(tmp_path / "s"), *QUIET, "--prometheus",
                  f"127.0.0.1:{port}", "--", *SUBJECT, "0", "--forever", "--rate", "3000")  # fmt: skip
    assert out.returncode == 0, out.stderr
    session = Session.load(tmp_path / "s")
    at = final_scrape_time(prom, session.meta["counters"]["drained"], "")
    hist = session.total("tick_to_trade")
    got = prom.query(
        'histogram_quantile(0.99, sum by (le) (tickscope_latency_seconds_bucket{stage="tick_to_trade"}))', at
    )
    count = prom.query('tickscope_latency_seconds_count{stage="tick_to_trade"}', at)
    assert int(float(count[0]["value"][1])) == hist.total_count
    ours = percentiles(hist, (99.0,))[99.0]
    upper = min(b for b in CLASSIC_BOUNDS_NS if b >= ours)  # the classic bucket holding our value
    lower = max([b for b in CLASSIC_BOUNDS_NS if b < upper] or [0])
    assert lower / 1e9 <= float(got[0]["value"][1]) <= upper / 1e9, (got, ours)


def _sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@pytest.fixture
def two_hosts():
    """Two network namespaces, each a "host" with a veth link to this one (10.77.N.1 <-> 10.77.N.2)."""
    need_tool("ip", install="apt-get install iproute2")
    need_tool("unshare", install="apt-get install util-linux")
    tag = f"{os.getpid() % 100000}"
    made, hosts = [], []
    try:
        for n in (1, 2):
            ns, outer, inner = f"ts{n}-{tag}", f"tso{n}-{tag}", f"tsi{n}-{tag}"
            r = _sh("ip", "netns", "add", ns, check=False)
            if r.returncode != 0:
                pytest.skip(
                    f"cannot create network namespaces here ({r.stderr.strip()}): needs root/CAP_NET_ADMIN"
                )
            made.append(ns)
            _sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            _sh("ip", "link", "set", inner, "netns", ns)
            _sh("ip", "addr", "add", f"10.77.{n}.1/30", "dev", outer)
            _sh("ip", "link", "set", outer, "up")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.77.{n}.2/30", "dev", inner)
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            hosts.append((ns, f"host-{chr(96 + n)}", f"10.77.{n}.2"))
        yield hosts
    finally:
        for ns in made:
            _sh("ip", "netns", "del", ns, check=False)  # takes its end of the veth pair with it


@pytest.mark.slow  # two 6 s profile runs
def test_two_hosts_fleet_p99_from_prometheus_and_from_merge_agree(tmp_path, prometheus_for, two_hosts):
    port = 19464
    prom = prometheus_for([f"{addr}:{port}" for _, _, addr in two_hosts])
    procs = []
    for ns, hostname, addr in two_hosts:
        cmd = [*CLI, "profile", "--duration", "6s", "--rate", "2k",
               "--out", str(tmp_path / hostname), *QUIET, "--prometheus", f"{addr}:{port}",
               "--prometheus-hold", "30s"]  # fmt: skip
        # its own UTS namespace too, so each "host" has its own hostname (the host label and merge key)
        script = f"hostname {hostname} && exec {' '.join(cmd)}"
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c", script],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    sessions = [Session.load(tmp_path / h) for _, h, _ in two_hosts]
    assert [s.meta["host"]["hostname"] for s in sessions] == ["host-a", "host-b"]
    # The instant the later host's final totals were first scraped: the earlier one's are still up
    # then, held 30 s past its end. (Its *last* scrape, 30 s after its end, found the earlier host
    # gone whenever the two ended more than a scrape apart: under load, start-up alone parts them.)
    times = [final_latency_time(prom, f'{{stage="tick_to_trade",host="{s.meta["host"]["hostname"]}"}}',
                                s.total("tick_to_trade").total_count) for s in sessions]  # fmt: skip
    merged = run_cli("merge", str(tmp_path / "fleet"), str(tmp_path / "host-a"), str(tmp_path / "host-b"))
    assert merged.returncode == 0, merged.stderr
    assert "clocks disagree" not in merged.stderr, "one machine, one clock: the measured offset is ~0"
    fleet = Session.load(tmp_path / "fleet")
    hist = fleet.total("tick_to_trade")
    assert hist.total_count == sum(s.total("tick_to_trade").total_count for s in sessions)
    # --prometheus-hold kept the earlier host up with its final totals until the later one's were scraped
    assert_p99_agrees(prom, '{stage="tick_to_trade"}', max(times), hist)


# -- the endpoint under clients that are slow, many or rude -----------------------------------------
HANG_GUARD_S = 90  # only ever a hang guard: the host is loaded, nothing here measures its speed


def scrape(port: int, method: str = "GET") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_GUARD_S)
    conn.request(method, "/metrics")
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def wait_serving(port: int, proc: subprocess.Popen, drained: bool = False) -> None:
    """Until the endpoint answers (``drained``: with records drained, so the target is running)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            got = scrape(port)
            if got.status == 200 and not (drained and re.search(rb"drained_total{[^}]*} 0\n", got.body)):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "hang guard: the endpoint never answered"
        time.sleep(0.1)


def settled_series(port: int) -> set[str]:
    """The series the endpoint serves once it serves latency (records drained is earlier: under
    load a scrape there found no trace closed yet) and two scrapes 0.5 s apart agree on them."""
    deadline, before = time.monotonic() + HANG_GUARD_S, None
    while True:
        now = series_of(scrape(port).body)
        if before == now and any(s.startswith("tickscope_latency_seconds_count{") for s in now):
            return now
        assert time.monotonic() < deadline, f"hang guard: the served series never settled: {sorted(now)[:20]}"
        before = now
        time.sleep(0.5)


def half_a_request(port: int) -> socket.socket:
    """A slowloris: connects, sends the request line and one header, never the blank line."""
    s = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    return s


def test_half_a_request_held_open_blocks_neither_a_scrape_nor_the_end_of_the_run(tmp_path):
    port = free_port()
    proc = start_cli("profile", "--duration", "3s", "--out", str(tmp_path / "s"), *QUIET, "--prometheus",
                     f"127.0.0.1:{port}", "--prometheus-linger", "1s", "--", *SUBJECT, "0", "--forever",
                     "--rate", "2000", columns=False)  # fmt: skip
    slow = []
    try:
        wait_serving(port, proc)
        slow.append(half_a_request(port))
        got = scrape(port)
        assert got.status == 200 and b"tickscope_records_drained_total" in got.body
        out, err = proc.communicate(timeout=HANG_GUARD_S)  # the slow client is still connected
    finally:
        proc.kill()
        for s in slow:
            s.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert Session.load(tmp_path / "s").meta["status"] == "complete"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_end_a_run_that_a_slow_client_holds(tmp_path, sig):
    port = free_port()
    proc = start_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--prometheus", f"127.0.0.1:{port}",
                     "--prometheus-linger", "1s", "--", *SUBJECT, "0", "--forever", "--rate", "2000", columns=False)  # fmt: skip
    slow = []
    try:
        wait_serving(port, proc, drained=True)
        slow.append(half_a_request(port))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        for s in slow:
            s.close()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "please wait" not in err
    assert Session.load(tmp_path / "s").meta["status"] == "interrupted"


def test_connections_beyond_the_bound_are_closed_unserved_and_counted(tmp_path):
    from tickscope.collectors.side.prometheus import MAX_CONNECTIONS

    (tmp_path / "rings").mkdir()
    port = free_port()
    proc = start_cli("live", str(tmp_path / "rings"), "--no-live", "--out", str(tmp_path / "s"), "--prometheus",
                     f"127.0.0.1:{port}", "--prometheus-linger", "0s", columns=False)  # fmt: skip
    slow = []
    try:
        wait_serving(port, proc)
        slow += [half_a_request(port) for _ in range(MAX_CONNECTIONS)]
        with pytest.raises(ConnectionError):
            scrape(port)  # every slot is held: this one is closed without an answer, not left hanging
        slow.pop().close()
        wait_serving(port, proc)  # a slot freed is a slot served
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        for s in slow:
            s.close()
    assert proc.returncode == 130 and "Traceback" not in err, err
    stats = json.loads((tmp_path / "s" / "meta.json").read_text())["prometheus"]  # no traces: meta only
    assert stats["connections_refused"] >= 1, (stats, out, err)
    assert "closed unserved" in err, (stats, out, err)


@pytest.mark.slow  # 1,000 clients
def test_a_thousand_concurrent_scrapes_are_mostly_answered_and_head_says_no_more_than_tickscope(tmp_path):
    (tmp_path / "rings").mkdir()
    port = free_port()
    proc = start_cli("live", str(tmp_path / "rings"), "--no-live", "--prometheus", f"127.0.0.1:{port}",
                     "--prometheus-linger", "0s", columns=False)  # fmt: skip
    clients = 1000

    async def one() -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = await reader.read()
            writer.close()
            return data.startswith(b"HTTP/1.0 200") and b"tickscope_records_drained_total" in data
        except OSError:
            return False

    async def burst() -> list[bool]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(clients))), HANG_GUARD_S)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < clients + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {clients} sockets")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, clients + 100), hard))
        wait_serving(port, proc)
        answered = sum(asyncio.run(burst()))
        head = scrape(port, "HEAD")
        get = scrape(port)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        proc.kill()
    assert answered >= 0.9 * clients, f"{answered} of {clients} concurrent scrapes answered"
    assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    for resp in (head, get):
        assert resp.headers["Server"] == "tickscope", resp.headers["Server"]
    assert proc.returncode == 130 and "Traceback" not in err, err
