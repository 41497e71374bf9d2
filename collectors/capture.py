"""``profile --capture``: tcpdump beside the run, joined to the traces afterwards.

Runs ``tcpdump -i IFACE --time-stamp-precision=nano -w <session>/wire.pcap`` (with ``-j adapter``
/ ``adapter_unsynced`` when the interface offers hardware stamps) filtered to the pipeline's
market-data port (UDP, to the trader) and order port (TCP, to the venue), snap length 2048: the
headers and a whole order frame. Its own counters ("packets dropped by kernel / interface") go
into meta.json (``capture``) and the console.

After the run the capture is matched (collectors/wire.py) and joined with the traces: the collector
kept every trace's ``md.rx`` and ``order.tx`` (``Collector.keep_points``, CLOCK_MONOTONIC ns); the
capture's stamps are CLOCK_REALTIME and move onto that timeline by the collector's own realtime
offset. New tags in latency.hlog, one interval grid with the rest of the session:

``wire_to_wire``          wire.order - wire.md: STAC-T1 SOM to SOF, the capture alone
``md.rx-wire.md``         how long after the capture's stamp the trader's kernel stamped the packet
``wire.order-order.tx``   how long after the kernel's transmit stamp the capture saw the order
                          (``order.tx-wire.order`` holds the ones the capture saw first: on
                          loopback tcpdump's tap runs before the driver's software stamp)
"""

from __future__ import annotations

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

from .side import SideCollectorBase
from .wire import END_MARKER_MAGIC, PcapStream, WireError, WireMatch, WireMatcher, WireStep

CAPTURE_FILE = "wire.pcap"
SNAPLEN = 2048
_STAT = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)")
RESIDUAL_TAGS = ("md.rx-wire.md", "wire.order-order.tx", "order.tx-wire.order")
END_GUARD_S = 60.0  # hang guard for the end of the capture; never a measurement
QUIET_S = 1.0  # without an end marker: the file has stopped growing for this long
IFF_LOOPBACK = 0x8


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
                 order_port: int | None = None):  # fmt: skip
        super().__init__()
        self.iface, self.snaplen = iface, snaplen
        self.proc: subprocess.Popen | None = None
        self.md_port, self.order_port = md_port, order_port
        # Ports known up front: start (and wait for tcpdump's "listening on") before the subject
        # exists, so the first market data and orders are on the capture too.
        self.before_subject = bool(md_port and order_port)
        self.collector = None
        self.path: Path | None = None
        self.stats: dict[str, int] = {}
        self.stamp_type = "host"
        self._stderr: list[str] = []
        self.tail: CaptureTail | None = None
        # The end marker: a UDP socket of ours on loopback, in the filter; at the end one datagram
        # to it goes through tcpdump's ring behind everything captured before it (see ``stop``).
        self.marker_sock: socket.socket | None = None
        self.end: dict = {}

    def bind(self, subject, collector) -> None:
        """Before start: the ports come from the subject (the bundled pipeline knows them); the
        collector keeps md.rx/order.tx of every trace for the join."""
        if not self.before_subject:
            self.md_port, self.order_port = (
                getattr(subject, "md_port", None),
                getattr(subject, "fix_port", None),
            )
        self.collector = collector
        collector.keep_points = {"md.rx": [], "order.tx": []}

    def start(self, pid: int | None, session_dir: Path) -> None:
        tcpdump = shutil.which("tcpdump")
        if tcpdump is None:
            self.warn("tcpdump not found: apt-get install tcpdump (no wire capture, session goes on)")
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
        bpf = f"(udp dst port {self.md_port}) or (tcp dst port {self.order_port})"
        if is_loopback(self.iface):
            self.marker_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.marker_sock.bind(("127.0.0.1", 0))
            bpf += f" or (udp dst port {self.marker_sock.getsockname()[1]})"
        argv.append(bpf)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
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
        self.tail = CaptureTail(self.path, self.md_port, self.order_port)

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
        tail, deadline = self.tail, time.monotonic() + END_GUARD_S
        if self.marker_sock is not None:
            token = END_MARKER_MAGIC + uuid.uuid4().hex.encode()
            self.marker_sock.sendto(token, self.marker_sock.getsockname())
            while token not in tail.matcher.markers and tail.error is None and self.proc.poll() is None:
                if time.monotonic() > deadline:
                    self.end = {"end_marker": True, "end_marker_missing": 1}
                    self.warn(f"the end marker did not reach {CAPTURE_FILE} within {END_GUARD_S:.0f} s: packets "
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
        if self.proc is not None:
            if self.proc.poll() is None and self.tail is not None:
                self._drain_ring()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # tcpdump flushes the file and prints its counters
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
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
    def conclude(self, collector, writer) -> tuple[list[str], dict]:
        """Match the capture, join it with the kept traces, append the wire tags to the session.
        -> (warnings, meta.json ``capture`` section)."""
        info = {"interface": self.iface, "snaplen": self.snaplen, "stamps": self.stamp_type, "file": CAPTURE_FILE,
                "md_port": self.md_port, "order_port": self.order_port, **self.end,
                **{f"tcpdump_{k}": v for k, v in self.stats.items()}}  # fmt: skip
        if self.tail is None or self.path is None or not self.path.is_file():
            return [], info
        if self.tail.error is not None:
            return [f"{self.name}: {self.tail.error}"], info
        m = self.tail.match  # the whole file, read as tcpdump wrote it: what `tickscope wire` reads too
        info["counters"] = m.counters
        off = collector.realtime_offset  # realtime -> the collector's CLOCK_MONOTONIC timeline
        kept = {name: _concat(parts) for name, parts in collector.keep_points.items()}
        values = {"wire_to_wire": (m.wire_order - off, m.wire_to_wire)}
        md_rx = _lookup(*kept.get("md.rx", _empty()), m.md_trace)
        ok = md_rx != 0
        values["md.rx-wire.md"] = (m.md_ts[ok] - off, md_rx[ok] - (m.md_ts[ok] - off))
        order_tx = _lookup(*kept.get("order.tx", _empty()), m.order_trace)
        ok = order_tx != 0
        res = (m.order_ts[ok] - off) - order_tx[ok]
        at = m.order_ts[ok] - off
        values["wire.order-order.tx"] = (at[res >= 0], res[res >= 0])
        values["order.tx-wire.order"] = (at[res < 0], -res[res < 0])
        traced_orders = kept.get("order.tx", _empty())[0]
        info["orders_traced"] = int(np.unique(traced_orders).size)
        info["orders_traced_not_on_wire"] = int(np.count_nonzero(~np.isin(traced_orders, m.order_trace)))
        traced_md = kept.get("md.rx", _empty())[0]
        info["md_traced_not_on_wire"] = int(
            np.count_nonzero(~np.isin(traced_md, m.md_trace))
        )  # before tcpdump listened
        info["orders_on_wire_without_trace"] = int(np.count_nonzero(order_tx == 0))
        _append_tags(writer, values, collector)
        warnings = [f"{self.name}: {w}" for w in m.warnings]
        return warnings, info


class CaptureTail:
    """The capture file as tcpdump writes it (-U: whole records), read from where the last read
    stopped and fed to one ``WireMatcher``: the end marker is seen here, the live view's wire rows
    come from here, and ``close`` gives the match of the whole file that the session keeps."""

    def __init__(self, path: Path, md_port: int, order_port: int):
        self.path = path
        self.stream = PcapStream(path.name)
        self.matcher = WireMatcher({md_port}, {order_port})
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
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def _concat(parts) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return _empty()
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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


def _append_tags(writer, values: dict, collector) -> None:
    """The wire tags into latency.hlog on the session's interval grid, and into summary.json."""
    import json

    from .hdr import summarize
    from .session import LATENCY_LOG, SUMMARY, HistogramLogWriter, write_json_atomic
    from .wire import interval_histograms

    log = HistogramLogWriter.append_to(writer.path / LATENCY_LOG)
    totals: dict = {}
    warm_end = collector.start_ns + collector.warmup_ns
    kept = {tag: (st[st >= warm_end], v[st >= warm_end]) for tag, (st, v) in values.items()}
    try:
        for start_s, end_s, hists in interval_histograms(kept, collector.start_ns, collector.interval_ns):
            for tag, h in hists.items():
                log.write(tag, h, start_s, end_s)
                if tag in totals:
                    totals[tag].add(h)
                else:
                    totals[tag] = h
    finally:
        log.close()
    try:
        summary = json.loads((writer.path / SUMMARY).read_text())
    except (OSError, ValueError):
        summary = {}
    summary.update({tag: summarize(h) for tag, h in totals.items()})
    write_json_atomic(writer.path / SUMMARY, summary)
