"""``profile --capture``: tcpdump beside the run, its packets joined to the traces live and at the end.

Runs ``tcpdump -i IFACE -U --time-stamp-precision=nano -w <session>/wire.pcap`` (with ``-j adapter``
/ ``adapter_unsynced`` when the interface offers hardware stamps) filtered to the pipeline's
market-data port (UDP, to the trader) and order port (TCP, to the venue), or with a WebSocket feed
(``ws_port``) TCP from the venue's WebSocket port, captured whole (snap length 262144, tcpdump's
default): a TCP stream is read by reassembly, so no byte of it may be cut. A cap of 2048 bytes, "the
headers and a whole order frame", lost every order after the first segment longer than that: on
loopback a busy trader's writes coalesce into segments of up to 64 KiB (155 of 650 orders, seen
under load). Its own counters ("packets dropped by kernel / interface") go
into meta.json (``capture``) and the console. On loopback an end marker of ours closes the
capture (``WireCapture._drain_ring``): nothing tcpdump captured is left behind in its ring.

During the run a thread tails the file (``CaptureTail``: whole records, one ``WireMatcher``) and
joins what it finds with the probe points the collector keeps (``LiveWireJoin``): the live view's
wire rows. After the run the same matcher, fed to the end of the file, gives the match of the
whole file, joined with every trace: the collector kept every trace's ``md.rx`` and ``order.tx``
(``Collector.tap``, CLOCK_MONOTONIC ns); the capture's stamps are CLOCK_REALTIME and move
onto that timeline by REALTIME's offset at their time (``IntervalGrid.to_monotonic``), as the
kernel's stamps do. ``conclude`` returns new tags for latency.hlog on the session's interval
grid, which the run engine adds before it closes the session:

``wire_to_wire``          wire.order - wire.md: STAC-T1 SOM to SOF, the capture alone
``md.rx-wire.md``         how long after the capture's stamp the trader's kernel stamped the packet
``wire.order-order.tx``   how long after the kernel's transmit stamp the capture saw the order
                          (``order.tx-wire.order`` holds the ones the capture saw first: on
                          loopback tcpdump's tap runs before the driver's software stamp)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from tickscope.collectors.rings.realtime import placed_after
from tickscope.collectors.run.children import spawn_guarded
from tickscope.collectors.side import Conclusion, SideCollectorBase
from tickscope.collectors.wire import (
    END_MARKER_MAGIC,
    PcapStream,
    WireError,
    WireMatch,
    WireMatcher,
    WireStep,
)
from tickscope.collectors.wire.traces import lookup_legs

CAPTURE_FILE = "wire.pcap"
SNAPLEN = 262144  # tcpdump's default: whole packets (loopback segments reach 64 KiB)
_STAT = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)")
RESIDUAL_TAGS = ("md.rx-wire.md", "wire.order-order.tx", "order.tx-wire.order")
END_GUARD_S = 60.0  # hang guard for the end of the capture; never a measurement
QUIET_S = 1.0  # without an end marker: the file has stopped growing for this long
IFF_LOOPBACK = 0x8
TAIL_EVERY_S = 0.2  # the live view redraws 5 times a second
LIVE_TAGS = ("wire_to_wire", *RESIDUAL_TAGS)
JOIN_HORIZON_NS = 10_000_000_000  # a live join waits this long for the other side, then gives up


def is_loopback(iface: str) -> bool:
    """``any`` sees loopback too; otherwise the interface's own flags say."""
    if iface == "any":
        return True
    try:
        return bool(int(Path(f"/sys/class/net/{iface}/flags").read_text(), 16) & IFF_LOOPBACK)
    except (OSError, ValueError):
        return False


def parse_tcpdump_stats(text: str) -> dict[str, int]:
    """tcpdump's closing lines -> {captured, received_by_filter, dropped_by_kernel, dropped_by_interface}."""
    out = {}
    for line in text.splitlines():
        m = _STAT.match(line.strip())
        if m:
            out[m.group(2).replace(" ", "_")] = int(m.group(1))
    return out


class WireCapture(SideCollectorBase):
    name = "capture"

    def __init__(self, iface: str = "lo", snaplen: int = SNAPLEN, md_port: int | None = None,
                 order_port: int | None = None, end_guard_s: float = END_GUARD_S,
                 ws_port: int | None = None, hedge_order_port: int | None = None):  # fmt: skip
        super().__init__()
        self.iface, self.end_guard_s = iface, end_guard_s
        self.snaplen = snaplen
        self.proc: subprocess.Popen | None = None
        self.md_port, self.order_port, self.ws_port = md_port, order_port, ws_port
        # the market maker's hedge leg goes to a second venue: its orders are on the capture too
        self.hedge_order_port = hedge_order_port
        # Ports known up front: start (and wait for tcpdump's "listening on") before the subject
        # exists, so the first market data and orders are on the capture too.
        self.before_subject = bool(md_port and order_port)
        self.collector = None
        self.points = None  # the collector's tap of md.rx and order.tx (``bind``)
        self.path: Path | None = None
        self.stats: dict[str, int] = {}
        self.stamp_type = "host"
        self._stderr: list[str] = []
        self.tail: CaptureTail | None = None
        # The end marker: a UDP socket of ours on loopback, in the filter; at the end one datagram
        # to it goes through tcpdump's ring behind everything captured before it (see ``stop``).
        self.marker_sock: socket.socket | None = None
        self.end: dict = {}
        self.live: LiveWireJoin | None = None
        self.live_cpu: tuple[float, float] | None = None  # (CPU s, wall s) of the tail thread

    def bind(self, subject, collector) -> None:
        """Before start: the ports come from the subject (the bundled pipeline knows them); the
        collector keeps md.rx/order.tx of every trace for the join."""
        if not self.before_subject:
            ports = subject.ports()
            self.md_port, self.order_port = ports.get("md_port"), ports.get("order_port")
            self.hedge_order_port = ports.get("hedge_order_port")
            if ports.get("ws_port"):
                self.ws_port = ports["ws_port"]
        self.collector = collector
        self.points = collector.tap(("md.rx", "order.tx"))

    def start(self, pid: int | None, session_dir: Path) -> None:
        tcpdump = shutil.which("tcpdump")
        if tcpdump is None:
            self.warn("tcpdump not found (apt-get install tcpdump; no wire capture, session goes on)")
            return
        if not self.md_port or not self.order_port:
            self.warn("ports unknown for a user command: capture with tcpdump yourself and run "
                      "tickscope wire CAPTURE --md udp:PORT --orders tcp:PORT")  # fmt: skip
            return
        self.path = Path(session_dir) / CAPTURE_FILE
        # -U: each packet is written as tcpdump takes it, so the file can be tailed (end marker, live view)
        argv = [tcpdump, "-i", self.iface, "-n", "-U", "-s", str(self.snaplen), "-B", "16384",
                "--time-stamp-precision=nano", "-w", str(self.path)]  # fmt: skip
        self.stamp_type = self._hardware_stamps(tcpdump)
        if self.stamp_type != "host":
            argv += ["-j", self.stamp_type]
        md = f"tcp src port {self.ws_port}" if self.ws_port else f"udp dst port {self.md_port}"
        bpf = f"({md}) or " + " or ".join(f"(tcp dst port {p})" for p in self.order_ports)
        if is_loopback(self.iface):
            self.marker_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.marker_sock.bind(("127.0.0.1", 0))
            bpf += f" or (udp dst port {self.marker_sock.getsockname()[1]})"
        argv.append(bpf)
        # A child of ours that ends with us, though tcpdump drops root (``children.spawn_guarded``):
        # a killed tickscope must not leave tcpdump writing its capture forever.
        self.proc = spawn_guarded(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        listening = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(listening,), daemon=True, name="tcpdump")
        self.thread.start()
        # tcpdump says "listening on" once the filter is in; the first packets must not be missed.
        # A hang guard only: a dead tcpdump ends the wait at once.
        deadline = time.monotonic() + 15
        while not listening.wait(0.05) and self.proc.poll() is None and time.monotonic() < deadline:
            pass
        if not listening.is_set() and self.proc.poll() is None:
            self.warn(
                f"tcpdump did not say 'listening on' {self.iface} within 15 s: the capture may miss the start"
            )
        if self.proc.poll() is not None:
            self.thread.join(timeout=5)
            self.warn(self._why_failed())
            self.proc = None
            self._close_marker()
            return
        self.tail = CaptureTail(self.path, self.md_port, self.order_ports, self.ws_port)
        self.live = LiveWireJoin(self.collector, self.points) if self.collector is not None else None
        self._tailing = threading.Event()
        self.tail_thread = threading.Thread(target=self._follow, daemon=True, name="capture-tail")
        self.tail_thread.start()

    @property
    def order_ports(self) -> list[int]:
        return [p for p in (self.order_port, self.hedge_order_port) if p]

    def _follow(self) -> None:
        """The capture tailed during the run: wire points joined as tcpdump writes them, for the
        live view (``live_rows``) and the side panel. Its own thread: the drain never waits on it."""
        cpu0, wall0 = time.thread_time(), time.monotonic()
        try:
            self._follow_steps()
        except Exception as e:  # the live rows stop; the capture and the join at the end go on
            self.warn(f"live wire rows stopped ({e}); the session's wire tags are joined at the end as usual")
        self.live_cpu = (time.thread_time() - cpu0, time.monotonic() - wall0)

    def _follow_steps(self) -> None:
        matched = orders = 0
        while not self._tailing.wait(TAIL_EVERY_S):
            step = self.tail.step()
            if step is None:
                continue
            if self.live is not None:
                self.live.add(step)
            matched += step.trace.size
            orders += step.order_trace.size
            c = self.tail.matcher.counters
            self.publish({"summary": f"{self.tail.matcher.packets:,} packets, "
                                     f"{c.get('md_messages_seen', 0):,} md msgs, {orders:,} orders, "
                                     f"{matched:,} matched, {orders - matched:,} unmatched"})  # fmt: skip

    def roll_live(self, warmup: bool) -> None:
        """The collector closed an interval: close the wire rows' interval too."""
        if self.live is not None:
            self.live.roll(warmup)

    def live_rows(self):
        """The wire rows for the live view's stage table (a partial ``Snapshot``), or None."""
        return self.live.rows() if self.live is not None else None

    def _hardware_stamps(self, tcpdump: str) -> str:
        try:
            r = subprocess.run([tcpdump, "-J", "-i", self.iface], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "host"
        types = {line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()}
        return next((t for t in ("adapter_unsynced", "adapter") if t in types), "host")

    def _read(self, listening: threading.Event) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())
            if "listening on" in line:
                listening.set()

    def _why_failed(self) -> str:
        text = " ".join(self._stderr[-3:])
        if "permission" in text.lower() or "not permitted" in text.lower():
            return (f"tcpdump may not capture on {self.iface}: run as root or grant it "
                    "`setcap cap_net_raw,cap_net_admin=eip $(which tcpdump)` (no wire capture, session goes on)")  # fmt: skip
        return f"tcpdump failed on {self.iface}: {text or 'no output'} (no wire capture, session goes on)"

    def _close_marker(self) -> None:
        if self.marker_sock is not None:
            self.marker_sock.close()
            self.marker_sock = None

    def _drain_ring(self) -> None:
        """Called once the subject has stopped, before tcpdump is: wait until tcpdump has written
        everything it captured. On SIGINT tcpdump (libpcap's TPACKET_V3 ring) breaks its loop and
        abandons what is still in the ring, packets the kernel counted as received, so no drop
        counter shows them; a loaded host makes tcpdump lag, and the tail of the run was lost.
        The ring is FIFO: once our own marker datagram is in the file, so is every packet before it.
        A non-loopback interface cannot carry our marker: wait until the file stops growing."""
        tail, deadline = self.tail, time.monotonic() + self.end_guard_s
        if self.marker_sock is not None:
            token = END_MARKER_MAGIC + uuid.uuid4().hex.encode()
            self.marker_sock.sendto(token, self.marker_sock.getsockname())
            while token not in tail.matcher.markers and tail.error is None and self.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.end = {"end_marker": True, "end_marker_missing": 1}
                    self.warn(f"the end marker did not reach {CAPTURE_FILE} within {self.end_guard_s:g} s: packets "
                              "tcpdump had not written when it stopped may be missing (capture.end_marker_missing)")  # fmt: skip
                    return
                if not tail.step():
                    time.sleep(0.02)
            self.end = {"end_marker": True}
            return
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() < deadline and tail.error is None:
            if tail.step():
                quiet_since = time.monotonic()
            time.sleep(0.1)
        self.end = {"end_marker": False}
        self.warn(f"{self.iface} is not loopback, so no end marker: stopped tcpdump once {CAPTURE_FILE} had not "
                  f"grown for {QUIET_S:.0f} s (packets still in its ring then would be missing)")  # fmt: skip

    def stop(self) -> list[str]:
        if self.tail is not None:
            self._tailing.set()
            self.tail_thread.join()  # from here on one thread reads the file
        if self.proc is not None:
            if self.proc.poll() is None and self.tail is not None:
                self._drain_ring()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # tcpdump flushes the file and prints its counters
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the guard and tcpdump: one process group
                self.proc.wait()
                self.warn("tcpdump did not stop within 30 s: killed, its counters are unknown")
            self.thread.join(timeout=5)
            self.stats = parse_tcpdump_stats("\n".join(self._stderr))
            self.publish(self.stats)
            if self.tail is not None:
                self.tail.close()  # the rest of the file, now that tcpdump has written its last record
        self._close_marker()
        return self.warnings

    # -- after the run ------------------------------------------------------------------------------
    def conclude(self, collector) -> Conclusion:
        """Match the capture, join it with the kept traces: the wire tags on the session's interval
        grid (for the engine to add), warnings, and meta.json's ``capture`` section."""
        info = {"interface": self.iface, "snaplen": self.snaplen, "stamps": self.stamp_type, "file": CAPTURE_FILE,
                **({"ws_port": self.ws_port} if self.ws_port else {"md_port": self.md_port}),
                "order_port": self.order_port,
                **({"hedge_order_port": self.hedge_order_port} if self.hedge_order_port else {}), **self.end,
                **({"live_join_cpu_s": round(self.live_cpu[0], 3), "live_join_s": round(self.live_cpu[1], 3)}
                   if self.live_cpu else {}),
                **{f"tcpdump_{k}": v for k, v in self.stats.items()}}  # fmt: skip
        if self.tail is None or self.path is None or not self.path.is_file():
            return Conclusion(meta=info)
        if self.tail.error is not None:
            return Conclusion([f"{self.name}: {self.tail.error}"], info)
        m = self.tail.match  # the whole file, read as tcpdump wrote it: what `tickscope wire` reads too
        info["counters"] = m.counters
        grid = collector.grid
        to_mono = grid.to_monotonic  # the capture's REALTIME -> the collector's CLOCK_MONOTONIC timeline
        kept = {name: self.points.all(name) for name in ("md.rx", "order.tx")}
        values = {"wire_to_wire": (to_mono(m.wire_order), m.wire_to_wire)}
        md_rx = _lookup(*kept.get("md.rx", _empty())[:2], m.md_trace)  # shared by the legs: by trace
        ok = md_rx != 0
        md_at = to_mono(m.md_ts[ok])
        values["md.rx-wire.md"] = (md_at, md_rx[ok] - md_at)
        tx_trace, tx_ts, tx_leg = kept.get("order.tx", _empty())
        order_tx = lookup_legs(
            tx_trace, tx_leg, tx_ts, m.order_trace, m.order_leg
        )  # each order its own leg's
        ok = order_tx != 0
        at = to_mono(m.order_ts[ok])
        res = at - order_tx[ok]
        values["wire.order-order.tx"] = (at[res >= 0], res[res >= 0])
        values["order.tx-wire.order"] = (at[res < 0], -res[res < 0])
        traced_orders = lookup_legs(m.order_trace, m.order_leg, np.ones(m.order_trace.size, np.int64),
                                    tx_trace, tx_leg)  # 1: that (trace, leg) is on the wire  # fmt: skip
        info["orders_traced"] = int(np.unique(np.stack((tx_trace, tx_leg)), axis=1).shape[1])
        info["orders_traced_not_on_wire"] = int(np.count_nonzero(traced_orders == 0))
        traced_md = kept.get("md.rx", _empty())[0]
        info["md_traced_not_on_wire"] = int(
            np.count_nonzero(~np.isin(traced_md, m.md_trace))
        )  # before tcpdump listened
        info["orders_on_wire_without_trace"] = int(np.count_nonzero(order_tx == 0))
        # Filled while the engine consumes the intervals, before meta.json is written for the last time.
        info["set_aside"] = {}
        warnings = [f"{self.name}: {w}" for w in m.warnings]
        return Conclusion(warnings, info, wire_tag_intervals(values, grid, info["set_aside"]))


class PendingJoin:
    """(trace, stamp) pairs from two sources arriving in any order and at any lag (the capture
    file, the collector's kept probe points), paired once both sides have a trace. What waits
    longer than ``JOIN_HORIZON_NS`` is dropped: memory and cost per step stay bounded however long
    the run (the session's files are joined in full at the end, not from this)."""

    def __init__(self, horizon_ns: int = JOIN_HORIZON_NS):
        self.horizon_ns = horizon_ns
        self.a = self.b = _empty()[:2]  # (trace ids or keys, stamps)

    def add(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
        """-> (trace ids, a's stamps, b's stamps) of the traces both sides now have."""
        at, ats = (np.concatenate(x) for x in zip(self.a, a, strict=True))
        bt, bts = (np.concatenate(x) for x in zip(self.b, b, strict=True))
        common, ia, ib = np.intersect1d(at, bt, return_indices=True)  # first occurrences
        newest = max(int(ats.max(initial=0)), int(bts.max(initial=0)))
        keep_a = ~np.isin(at, common) & (ats >= newest - self.horizon_ns)
        keep_b = ~np.isin(bt, common) & (bts >= newest - self.horizon_ns)
        self.a, self.b = (at[keep_a], ats[keep_a]), (bt[keep_b], bts[keep_b])
        return common, ats[ia], bts[ib]


class LiveWireJoin:
    """The wire rows of the live view, from what the capture tail finds: ``wire_to_wire`` and the
    residuals against the collector's kept ``md.rx``/``order.tx``, in an interval histogram closed
    with the collector's. The drain thread appends to the kept lists; this reads only what was
    appended since the last step (a list's length and slice are safe to read meanwhile)."""

    def __init__(self, collector, points):
        from tickscope.collectors.rings.collector import HistogramSet

        self.points = points
        self.to_monotonic = collector.grid.to_monotonic
        self._md_after = placed_after(collector.grid.start_ns)  # each stream's state, call to call
        self._order_after = placed_after(collector.grid.start_ns)
        self.interval_s = collector.grid.interval_ns / 1e9
        self.hists = HistogramSet()
        self.lock = threading.Lock()
        self.md = PendingJoin()
        self.orders = PendingJoin()
        self._rows = None

    def add(self, step: WireStep) -> None:
        to_mono = self.to_monotonic
        values = {"wire_to_wire": step.wire_order - step.wire_md}
        trace, wire_md, md_rx = self.md.add(
            (step.md_trace, to_mono(step.md_ts, self._md_after)), self.points.take_new("md.rx")[:2]
        )
        values["md.rx-wire.md"] = md_rx - wire_md
        tx_trace, tx_ts, tx_leg = self.points.take_new("order.tx")
        trace, wire_order, order_tx = self.orders.add(
            (live_leg_key(step.order_trace, step.order_leg), to_mono(step.order_ts, self._order_after)),
            (live_leg_key(tx_trace, tx_leg), tx_ts),
        )
        res = wire_order - order_tx
        values["wire.order-order.tx"], values["order.tx-wire.order"] = res[res >= 0], -res[res < 0]
        with self.lock:
            for tag, v in values.items():
                self.hists.record(tag, v)

    def roll(self, warmup: bool) -> None:
        from tickscope.collectors.session import Snapshot
        from tickscope.collectors.session.hdr import summarize

        with self.lock:
            finished = self.hists.roll(warmup)
            totals = self.hists.total or self.hists.warmup_total
            secs = self.interval_s
            last = {t: summarize(h) for t, h in finished.items()}
            self._rows = Snapshot(
                tags=[t for t in LIVE_TAGS if t in totals or t in last],
                last=last,
                cumulative={t: summarize(h) for t, h in totals.items()},
                rates={t: s["count"] / secs for t, s in last.items()},
            )

    def rows(self):
        return self._rows


class CaptureTail:
    """The capture file as tcpdump writes it (-U: whole records), read from where the last read
    stopped and fed to one ``WireMatcher``: the end marker is seen here, the live view's wire rows
    come from here, and ``close`` gives the match of the whole file that the session keeps."""

    def __init__(self, path: Path, md_port: int, order_ports: list[int], ws_port: int | None = None):
        self.path = path
        self.stream = PcapStream(path.name)
        # a WebSocket feed: market data is the venue's side of its TCP port, not Mold on the UDP one
        md, ws = ({md_port}, set()) if not ws_port else (set(), {ws_port})
        self.matcher = WireMatcher(md, set(order_ports), ws_ports=ws)
        self.file = None
        self.error: str | None = None  # the file is not a capture we can read: one line
        self.match: WireMatch | None = None

    def step(self) -> WireStep | None:
        """Read what was appended since the last step. -> what it held (None: nothing new)."""
        if self.error is not None:
            return None
        try:
            if self.file is None:
                self.file = open(self.path, "rb")  # noqa: SIM115 - kept open between steps
            data = self.file.read()
            return self.matcher.feed(self.stream.push(data)) if data else None
        except FileNotFoundError:
            return None  # tcpdump has not created it yet
        except (OSError, WireError) as e:
            self.error = f"cannot read {self.path}: {e}"
            return None

    def close(self) -> None:
        self.step()
        if self.file is not None:
            self.file.close()
        if self.error is None:
            try:
                self.matcher.feed(self.stream.close())
            except WireError as e:
                self.error = str(e)
                return
            self.match = self.matcher.finish()


def _empty():
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)


def live_leg_key(trace: np.ndarray, leg: np.ndarray) -> np.ndarray:
    """(trace id, leg) as one int64 for the live join, which sees a few seconds of traces at a time:
    two pairs share a key only when their trace ids differ by a multiple of 2**48 (the session's
    join, ``lookup_legs``, is exact)."""
    return (trace << 16) | leg


def _lookup(trace: np.ndarray, ts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Stamp of each wanted trace id (the first one kept), 0 where the trace has none."""
    order = np.lexsort((ts, trace))
    trace, ts = trace[order], ts[order]
    at = np.searchsorted(trace, wanted)
    found = at < trace.size
    found[found] = trace[at[found]] == wanted[found]
    out = np.zeros(wanted.size, np.int64)
    out[found] = ts[at[found]]
    return out


def wire_tag_intervals(values: dict, grid, set_aside: dict[str, int]):
    """The wire tags' ``(start_s, end_s, {tag: histogram})`` on the session's interval grid, one
    interval at a time, warm-up left out; values no histogram can hold are counted into
    ``set_aside`` per tag and reason (``interval_histograms``)."""
    from tickscope.collectors.wire import interval_histograms

    warm_end = grid.start_ns + grid.warmup_ns
    kept = {tag: (st[st >= warm_end], v[st >= warm_end]) for tag, (st, v) in values.items()}
    yield from interval_histograms(kept, grid.start_ns, grid.interval_ns, set_aside)
