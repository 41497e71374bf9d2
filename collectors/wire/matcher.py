"""The join: a capture's ``wire.md`` and ``wire.order`` points per trace, matched as it is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .capture import Capture, WireError, add_count
from .files import CHUNK_BYTES, read_chunks
from .fix import MAX_LEG, OrderMapping, fix_field, fix_refusal
from .fragments import IpReassembly
from .headers import IPPROTO_TCP, Headers, decode_headers
from .marker import end_markers
from .mold import mold_messages
from .tcp import TCP_SYN, TcpStream
from .traces import first_per_leg, first_per_trace, i64, join_traces
from .websocket import WsConnection, stream_name


@dataclass
class WireStep:
    """What one ``feed`` found: the chunk's wire.md and wire.order points, and its orders joined
    to market data already seen (the live view's ``wire_to_wire``). An order is one leg of its
    trace (``order_leg``; ``leg`` of the joined ones): a tick may send several."""

    md_trace: np.ndarray
    md_ts: np.ndarray
    order_trace: np.ndarray
    order_ts: np.ndarray
    trace: np.ndarray
    wire_md: np.ndarray
    wire_order: np.ndarray
    order_leg: np.ndarray
    leg: np.ndarray


@dataclass
class WireMatch(WireStep):
    """Both wire points over the whole capture (market data per trace, orders per (trace, leg)),
    and the join: ``trace``/``leg``/``wire_to_wire`` of matched orders."""

    counters: dict[str, int]
    warnings: list[str]
    packets: int
    fmt: str
    source: dict = field(default_factory=dict)  # the capture's identity when read from a file (match_file)

    @property
    def wire_to_wire(self) -> np.ndarray:
        return self.wire_order - self.wire_md


class WireMatcher:
    """Captures matched as they are read, in chunks of whole packets (``PcapStream``): MoldUDP64
    first-seen state and the order port's TCP streams carry over from one chunk to the next, so
    ``finish()`` after feeding a file in any number of pieces gives the match of the whole file.

    ``feed`` also joins each new order with the market data seen so far, for the live view; that
    join looks back ``LIVE_LOOKBACK_CHUNKS`` chunks, so its cost per chunk does not grow with the
    run. ``finish`` joins everything with everything, which is what the session files hold."""

    LIVE_LOOKBACK_CHUNKS = 64

    def __init__(self, md_ports: set[int], order_ports: set[int], mapping: OrderMapping | None = None,
                 ws_ports: set[int] = frozenset()):  # fmt: skip
        self.md_ports, self.order_ports, self.ws_ports = set(md_ports), set(order_ports), set(ws_ports)
        self.mapping = mapping or OrderMapping()
        self.counters: dict[str, int] = {"md_packets": 0, "md_heartbeats": 0, "order_segments": 0}
        self.warnings: list[str] = []
        self.packets = 0
        self.fmt = ""
        self.sessions: set[bytes] = set()
        self.md_parts: list[tuple[np.ndarray, np.ndarray]] = []  # per chunk, sorted by trace
        self.order_traces: list[int] = []
        self.order_legs: list[int] = []
        self.order_stamps: list[int] = []
        self.streams: dict[bytes, TcpStream] = {}  # by stream key: the connection in use
        self.order_streams = 0  # connections seen (the same ports opened again count again)
        self.markers: list[bytes] = []  # end-marker payloads seen
        self.fragments = IpReassembly(self.counters)
        # WebSocket market data: text messages numbered across connections in the order they
        # started (all of one connection's before the next one's), 1 for the first.
        self.ws_conns: dict[bytes, WsConnection] = {}  # by stream key: the one in use
        self.ws_order: list[WsConnection] = []  # every connection, in the order it started
        self.ws_next = 0  # the first connection whose messages are not all numbered yet
        self.ws_base = 0  # text messages on the connections before it
        self.ws_blocked = False  # a connection before ws_next stopped: later counts are unknowable

    def feed(self, cap: Capture) -> WireStep:
        for k, v in cap.counters.items():
            add_count(self.counters, k, v)
        self.warnings += [w for w in cap.warnings if w not in self.warnings]
        self.fmt = cap.fmt or self.fmt  # a push before the file header is complete has none
        if not len(cap):
            # A push that completed no packet (a pipe's short read) changes no stream, fragment or
            # numbering: the dozen array passes below cost ~1 ms each time for nothing.
            return WireStep(*(i64() for _ in range(9)))
        self.packets += len(cap)
        hdr = decode_headers(cap, self.counters, self.warnings, self.fragments)  # may grow cap.data
        self.markers += end_markers(cap, hdr, self.md_ports)
        md_trace, md_ts = mold_messages(cap, hdr, self.md_ports, self.counters, self.sessions)
        if self.ws_ports:
            self._ws_segments(cap, hdr)
            md_trace, md_ts = self._with_ws(md_trace, md_ts, self._number_ws())
        if md_trace.size:
            self.md_parts.append((md_trace, md_ts))
        first = len(self.order_traces)
        self._orders(cap, hdr)
        order_trace, order_ts = i64(self.order_traces[first:]), i64(self.order_stamps[first:])
        order_leg = i64(self.order_legs[first:])
        found, wire_md = self._recent_md(order_trace)
        return WireStep(md_trace, md_ts, order_trace, order_ts, order_trace[found], wire_md, order_ts[found],
                        order_leg, order_leg[found])  # fmt: skip

    def _recent_md(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.zeros(wanted.size, dtype=bool)
        stamps = np.full(wanted.size, 2**62, dtype=np.int64)
        if not wanted.size:
            return found, stamps[found]
        lo, hi = wanted.min(), wanted.max()
        for trace, ts in self.md_parts[-self.LIVE_LOOKBACK_CHUNKS :]:
            if trace[0] > hi or trace[-1] < lo:
                continue
            hit, st = join_traces(trace, ts, wanted)
            stamps[hit] = np.minimum(stamps[hit], st)  # a sequence seen twice: its first stamp
            found |= hit
        return found, stamps[found]

    def _with_ws(self, md_trace, md_ts, ws: tuple[np.ndarray, np.ndarray]):
        if not ws[0].size:
            return md_trace, md_ts
        add_count(self.counters, "md_messages_seen", int(ws[0].size))
        return first_per_trace(np.concatenate((md_trace, ws[0])), np.concatenate((md_ts, ws[1])))

    def _ws_segments(self, cap: Capture, hdr: Headers) -> None:
        """The venue's side of the WebSocket connections (TCP from a ``ws_ports`` port), framed."""
        sel = np.flatnonzero((hdr.proto == IPPROTO_TCP) & np.isin(hdr.sport, list(self.ws_ports)))
        add_count(self.counters, "ws_segments", int(sel.size))
        data, conns = cap.data, self.ws_conns
        cols = (hdr.addr[sel], hdr.addr_len[sel], hdr.sport[sel], hdr.dport[sel], hdr.payload[sel],
                hdr.payload_end[sel], hdr.tcp_seq[sel], hdr.tcp_flags[sel], cap.ts_ns[sel])  # fmt: skip
        for addr, alen, sport, dport, p, pend, seq, flags, ts in zip(
            *(c.tolist() for c in cols), strict=True
        ):
            key = data[addr : addr + 2 * alen] + bytes((sport >> 8, sport & 0xFF, dport >> 8, dport & 0xFF))
            conn = conns.get(key)
            reused = (conn is not None and flags & TCP_SYN and seq != conn.isn
                      and (conn.fin or conn.tcp.stream_pos))  # fmt: skip
            if conn is None or reused:  # a new connection (the same ports again: a new one too)
                conn = conns[key] = WsConnection(stream_name(key, alen), self.counters)
                self.ws_order.append(conn)
                add_count(self.counters, "ws_connections")
            conn.segment(seq, flags, data[p:pend], ts)

    def _number_ws(self, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Trace ids for the text messages framed since the last call whose number is known: those of
        the first connection not yet ended, and of later ones once every earlier one has ended.
        ``final``: the capture is over, every connection's count is what it is."""
        traces: list[int] = []
        stamps: list[int] = []
        order = self.ws_order
        while self.ws_next < len(order) and not self.ws_blocked:
            c = order[self.ws_next]
            new = c.stamps
            first = self.ws_base + c.emitted + 1
            traces += range(first, first + len(new))
            stamps += new
            c.emitted += len(new)
            c.stamps = []  # numbered: memory per connection stays what one chunk framed
            if not (final or c.ended):
                for later in order[self.ws_next + 1 :]:
                    if later.messages and not later.overlaps:  # messages while an earlier one is open
                        later.overlaps = True
                        add_count(self.counters, "ws_connections_overlapping")
                break
            self.ws_next += 1
            self.ws_base += c.messages
            self.ws_blocked = c.state == "stopped"
        return i64(traces), i64(stamps)

    def _finish_ws(self) -> tuple[np.ndarray, np.ndarray]:
        for c in self.ws_order:
            if c.tcp.pending:
                add_count(self.counters, "tcp_segments_after_gap", len(c.tcp.pending))
            if c.tcp.pending and c.state in ("handshake", "frames"):
                add_count(self.counters, "ws_gaps_never_filled")
                c.stop(f"a gap in the TCP stream at byte {c.tcp.stream_pos} was never filled "
                       f"({len(c.tcp.pending)} segments wait behind it)")  # fmt: skip
        ws = self._number_ws(final=True)
        for i, c in enumerate(self.ws_order):
            if c.state == "stopped":
                later = len(self.ws_order) - i - 1
                self.warnings.append(f"WebSocket {c.name}: {c.why}; its later text messages "
                                     + (f"and those of the {later} connection(s) after it " if later else "")
                                     + "are not numbered (a number after it would be a guess)")  # fmt: skip
        if self.ws_blocked:
            add_count(self.counters, "ws_messages_not_numbered",
                   sum(c.messages for c in self.ws_order[self.ws_next :]))  # fmt: skip
        overlapping = self.counters.get("ws_connections_overlapping", 0)
        if overlapping:
            self.warnings.append(f"{overlapping} WebSocket connection(s) carried messages while an earlier one "
                                 "was still open: numbered after all of the earlier connection's messages "
                                 "(connection start order); a handler numbering in arrival order across its "
                                 "sockets numbers them differently")  # fmt: skip
        self.counters["ws_text_messages"] = sum(c.messages for c in self.ws_order)
        return ws

    def _orders(self, cap: Capture, hdr: Headers) -> None:
        sel = np.flatnonzero((hdr.proto == IPPROTO_TCP) & np.isin(hdr.dport, list(self.order_ports)))
        add_count(self.counters, "order_segments", int(sel.size))
        data, mapping, counters, streams = cap.data, self.mapping, self.counters, self.streams
        new_orders = unmapped = out_of_range = leg_out_of_range = 0
        refused = {"checksum": 0, "malformed": 0}
        cols = (hdr.addr[sel], hdr.addr_len[sel], hdr.sport[sel], hdr.dport[sel], hdr.payload[sel],
                hdr.payload_end[sel], hdr.tcp_seq[sel], hdr.tcp_flags[sel], cap.ts_ns[sel])  # fmt: skip
        for addr, alen, sport, dport, p, pend, seq, flags, ts in zip(
            *(c.tolist() for c in cols), strict=True
        ):
            key = data[addr : addr + 2 * alen] + bytes((sport >> 8, sport & 0xFF, dport >> 8, dport & 0xFF))
            stream = streams.get(key)
            if stream is None or stream.restarted_by(seq, flags):  # the same ports again: a new connection
                if stream is not None:
                    stream.finish()
                    add_count(counters, "tcp_connections_reopened")
                stream = streams[key] = TcpStream(counters)
                self.order_streams += 1
            stream.segment(seq, flags, data[p:pend], ts)
            if not stream.buf:
                continue
            for stamp, frame, body in stream.frames():
                why, body = fix_refusal(frame, body)
                if why:
                    refused[why] += 1
                    continue
                if frame[body + 3 : body + 5] != b"D\x01":  # MsgType is the body's first field
                    continue
                new_orders += 1
                value = fix_field(frame, mapping.field)
                key = mapping.trace_leg(value) if value is not None else None
                if key is None:
                    unmapped += 1
                    continue
                trace, leg = key
                if trace >= 1 << 64:  # beyond any feed's sequence number (u64)
                    out_of_range += 1
                    continue
                if leg > MAX_LEG:  # no ring record can name it: no trace of ours has it
                    leg_out_of_range += 1
                    continue
                # u64 ids as int64, two's complement: how a Mold sequence of 2**63 or more is held too
                self.order_traces.append(trace - (1 << 64) if trace >= 1 << 63 else trace)
                self.order_stamps.append(stamp)
                self.order_legs.append(leg)
        add_count(counters, "orders_new", new_orders)
        if unmapped:
            add_count(counters, "orders_unmapped", unmapped)
        if out_of_range:
            add_count(counters, "orders_trace_id_out_of_range", out_of_range)
        if leg_out_of_range:
            add_count(counters, "orders_leg_out_of_range", leg_out_of_range)
        if refused["checksum"]:
            add_count(counters, "fix_frames_bad_checksum", refused["checksum"])
        if refused["malformed"]:
            add_count(counters, "fix_frames_malformed", refused["malformed"])

    def finish(self) -> WireMatch:
        """Every trace joined: the same for a file fed whole or in pieces. Call once, at the end."""
        if self.ws_ports:
            ws = self._finish_ws()
            if ws[0].size:
                add_count(self.counters, "md_messages_seen", int(ws[0].size))
                self.md_parts.append(ws)
        self.fragments.finish()
        counters, warnings = self.counters, list(self.warnings)
        incomplete = counters.get("ip_datagrams_incomplete", 0)
        if incomplete:
            why = ", ".join(f"{k.removeprefix('ip_').replace('_', ' ')} {v}" for k, v in sorted(counters.items())
                            if k.startswith(("ip_datagrams_", "ip_fragments_")) and k != "ip_datagrams_incomplete"
                            and k != "ip_datagrams_reassembled")  # fmt: skip
            warnings.append(f"{incomplete} fragmented IP datagram(s) never completed ({why}): what they carried "
                            "is not read, as the receiving host's kernel would not deliver it either")  # fmt: skip
        md_trace, md_ts = (
            (np.concatenate(x) for x in zip(*self.md_parts, strict=True)) if self.md_parts else (i64(), i64())
        )
        md_trace, md_ts = first_per_trace(md_trace, md_ts)
        seen = counters.pop("md_messages_seen", 0)
        if len(self.sessions) > 1:
            warnings.append(f"{len(self.sessions)} MoldUDP64 sessions on the market-data port(s): trace ids are "
                            "sequence numbers, so the same number in two sessions is one trace")  # fmt: skip
        counters["md_sessions"] = len(self.sessions)
        counters["md_messages"] = int(md_trace.size)
        if seen - md_trace.size:
            counters["md_messages_duplicate"] = int(seen - md_trace.size)
        for s in self.streams.values():
            s.finish()
        counters["order_streams"] = self.order_streams
        counters.setdefault("orders_new", 0)
        raw = i64(self.order_traces)
        order_trace, order_leg, order_ts = first_per_leg(raw, i64(self.order_legs), i64(self.order_stamps))
        if raw.size - order_trace.size:  # the same (trace, leg) again: a resend, not another order
            counters["orders_duplicate_trace"] = int(raw.size - order_trace.size)
        found, wire_md = join_traces(md_trace, md_ts, order_trace)
        counters["orders_matched"] = int(found.sum())
        counters["orders_unmatched"] = int(order_trace.size - found.sum())
        legs, per_leg = np.unique(order_leg[found], return_counts=True)
        counters.update({f"orders_matched_leg_{leg}": int(n) for leg, n in zip(legs.tolist(), per_leg.tolist(),
                                                                              strict=True)})  # fmt: skip
        # most ticks trade nothing; a tick of several legs is one message with an order
        traded = int(np.unique(order_trace[found]).size)
        counters["md_messages_without_order"] = int(md_trace.size - traded)
        if self.markers:
            counters["capture_end_marker"] = len(self.markers)
        counters["packets"] = self.packets
        ws_segments = counters.get("ws_segments", 0)
        counters["packets_other"] = int(self.packets - counters["md_packets"] - counters["order_segments"]
                                        - ws_segments - len(self.markers))  # fmt: skip
        if not counters["md_packets"] and not counters["order_segments"] and not ws_segments:
            ws = f", from tcp port(s) {sorted(self.ws_ports)}" if self.ws_ports else ""
            warnings.append(f"no packet of the capture goes to udp port(s) {sorted(self.md_ports)} or tcp port(s) "
                            f"{sorted(self.order_ports)}{ws} (check --md/--orders)")  # fmt: skip
        return WireMatch(md_trace, md_ts, order_trace, order_ts, order_trace[found], wire_md, order_ts[found],
                         order_leg, order_leg[found], counters, warnings, self.packets, self.fmt)  # fmt: skip


# What the wire side refuses or cannot use, as the receiver would: (counter, words) in the order shown.
REFUSAL_COUNTERS = (
    ("md_packets_malformed", "MoldUDP64 packets malformed (dropped whole, as the feed handler does)"),
    ("fix_frames_bad_checksum", "FIX frames with a wrong CheckSum"),
    ("fix_frames_malformed", "FIX frames malformed"),
    ("orders_trace_id_out_of_range", "orders with a trace id of 2**64 or more"),
    ("orders_leg_out_of_range", f"orders with a leg above {MAX_LEG}"),
    ("ip_datagrams_incomplete", "fragmented IP datagrams never completed"),
    ("capture_packets_bad_stamp", "packets stamped outside 1970-2116"),
)


def refusals(counters: dict[str, int]) -> str:
    """One line naming what was refused, "" when nothing was (for ``wire`` and ``profile --capture``)."""
    parts = [f"{counters[k]} {words}" for k, words in REFUSAL_COUNTERS if counters.get(k)]
    return "refused: " + "; ".join(parts) if parts else ""


def match(cap: Capture, md_ports: set[int], order_ports: set[int],
          mapping: OrderMapping | None = None, ws_ports: set[int] = frozenset()) -> WireMatch:  # fmt: skip
    """A whole capture matched at once: one chunk fed to a ``WireMatcher``."""
    matcher = WireMatcher(md_ports, order_ports, mapping, ws_ports)
    matcher.feed(cap)
    return matcher.finish()


def match_file(path: str | Path, md_ports: set[int], order_ports: set[int], mapping: OrderMapping | None = None,
               ws_ports: set[int] = frozenset(), chunk_bytes: int | None = None) -> WireMatch:  # fmt: skip
    """A capture file of any size matched as it is read (``read_chunks``): memory is one chunk plus
    the matcher's state per message, never the file. The same match as ``match(read_capture(path))``,
    with the capture's identity (``source``) taken from the same single read: a FIFO works."""
    matcher = WireMatcher(md_ports, order_ports, mapping, ws_ports)
    read_warnings: list[str] = []
    identity: dict = {}
    for cap in read_chunks(path, chunk_bytes or CHUNK_BYTES, identity):
        matcher.feed(cap)
        read_warnings += cap.warnings
    if not matcher.packets:
        raise WireError(f"{path}: no packets read" + (f" ({read_warnings[0]})" if read_warnings else ""))
    m = matcher.finish()
    m.source = identity
    return m
