"""One direction of a TCP connection reassembled from captured segments, and the FIX frames in it."""

from __future__ import annotations

import bisect
import heapq

from .fix import FIX_BEGIN, FIX_HEAD, MAX_FIX_MESSAGE, frame_by_body_length

TCP_SYN = 0x02


TCP_FIN, TCP_RST = 0x01, 0x04


SEQ_MASK = 0xFFFFFFFF


class TcpStream:
    """One direction of one TCP connection, reassembled: bytes in sequence order, each byte's
    capture stamp that of the first segment that carried it.

    Segments after a hole wait for it to fill (every one of them, in capture order: a coalesced
    retransmission starting where a pending segment starts but carrying more is kept too), up to
    ``MAX_PENDING_BYTES``: beyond that the capture lost the hole's bytes (a retransmission comes
    within an RTO, not 16 MiB later), so the stream goes on after it (``tcp_gaps_skipped``,
    ``tcp_bytes_missing``; the unframed bytes before it are dropped, FIX framing resyncs on
    ``8=FIX``). Without it one lost segment would hold the rest of a day's stream in memory. A SYN
    with the stream's own ISN seen again after data (a late copy) is counted, never a rewind; a SYN
    with another ISN is a new connection, the caller's to start (``restarted_by``)."""

    MAX_PENDING_BYTES = 16 << 20

    def __init__(self, counters: dict[str, int]):
        self.counters = counters
        self.isn: int | None = None
        self.next_seq: int | None = None
        self.buf = bytearray()
        self.buf_pos = 0  # stream offset of buf[0]
        self.marks: list[int] = []  # stream offsets where a segment's bytes begin ...
        self.mark_ts: list[int] = []  # ... and their stamps
        # out of order, by arrival (capture order): n -> (seq, payload, stamp)
        self.pending: dict[int, tuple[int, bytes, int]] = {}
        self.pending_longest: dict[int, int] = {}  # seq -> the longest payload pending from it
        self.arrivals = 0
        self.pending_bytes = 0
        self.stream_pos = 0  # stream offset of next_seq
        self.gaps = 0  # holes given up on (see MAX_PENDING_BYTES)
        self.gap_at = 0  # stream offset of the last one

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def restarted_by(self, seq: int, flags: int) -> bool:
        """This segment is a SYN opening a new connection on the same addresses and ports."""
        return bool(flags & TCP_SYN) and seq != self.isn and bool(self.stream_pos or self.pending)

    def segment(self, seq: int, flags: int, payload: bytes, ts: int) -> None:
        if flags & TCP_SYN:
            if not self.stream_pos and not self.pending:
                self.isn, self.next_seq = seq, (seq + 1) & SEQ_MASK
            else:
                self._count("tcp_syn_repeated")  # the same ISN again after data: not a rewind
            return
        if not payload:
            return
        if self.next_seq is None:  # joined mid-connection: start here; framing resyncs on 8=FIX
            self._count("tcp_streams_joined_midway")
            self.next_seq = seq
        rel = (seq - self.next_seq) & SEQ_MASK
        if rel >= 1 << 31:  # starts before what we have: retransmission, maybe with new bytes after
            behind = (self.next_seq - seq) & SEQ_MASK
            if behind >= len(payload):
                self._count("tcp_segments_retransmitted")
                return
            self._count("tcp_segments_partly_retransmitted")
            payload, seq = payload[behind:], self.next_seq
            rel = 0
        if rel:
            longest = self.pending_longest.get(seq, 0)
            if len(payload) <= longest:
                self._count("tcp_segments_retransmitted")
                return
            self._count("tcp_segments_partly_retransmitted" if longest else "tcp_segments_out_of_order")
            self.pending[self.arrivals] = (seq, payload, ts)
            self.arrivals += 1
            self.pending_longest[seq] = len(payload)
            self.pending_bytes += len(payload)
            if self.pending_bytes > self.MAX_PENDING_BYTES:
                self._skip_gap()
            return
        self._append(payload, ts)
        if self.pending:
            self._drain()

    def _drain(self) -> None:
        """Pending segments that now start at or before ``next_seq``, each time the first captured of
        those (its stamp is the bytes' first), until a hole. Sorted once, so a hole filled late
        costs n log n, not n squared."""
        base = self.next_seq
        by_seq = sorted(self.pending.items(), key=lambda kv: (kv[1][0] - base + (1 << 31)) & SEQ_MASK)
        ready: list[int] = []  # arrival numbers: capture order
        i = 0
        while True:
            while i < len(by_seq) and not 0 < (by_seq[i][1][0] - self.next_seq) & SEQ_MASK < 1 << 31:
                heapq.heappush(ready, by_seq[i][0])
                i += 1
            if not ready:
                break
            s, data, t = self.pending.pop(heapq.heappop(ready))
            self.pending_bytes -= len(data)
            behind = (self.next_seq - s) & SEQ_MASK
            if behind < len(data):
                self._append(data[behind:], t)
        longest: dict[int, int] = {}
        for s, data, _ in self.pending.values():
            longest[s] = max(longest.get(s, 0), len(data))
        self.pending_longest = longest

    def _skip_gap(self) -> None:
        base = self.next_seq
        first = min((s for s, _, _ in self.pending.values()), key=lambda s: (s - base) & SEQ_MASK)
        missing = (first - base) & SEQ_MASK
        self._count("tcp_gaps_skipped")
        self._count("tcp_bytes_missing", missing)
        if self.buf:
            self._count("tcp_bytes_dropped_before_gap", len(self.buf))
        self.gaps += 1
        self.gap_at = self.stream_pos
        self.buf.clear()
        self.marks.clear()
        self.mark_ts.clear()
        self.stream_pos += missing
        self.buf_pos = self.stream_pos
        self.next_seq = first
        self._drain()

    def _append(self, payload: bytes, ts: int) -> None:
        self.marks.append(self.stream_pos)
        self.mark_ts.append(ts)
        self.buf += payload
        self.stream_pos += len(payload)
        self.next_seq = (self.next_seq + len(payload)) & SEQ_MASK

    def stamp_at(self, stream_offset: int) -> int:
        return self.mark_ts[bisect.bisect_right(self.marks, stream_offset) - 1]

    def frames(self):
        """Complete FIX frames now in the buffer -> (first byte's stamp, frame bytes, where its body
        starts when BodyLength framed it, else 0), cut exactly
        where the venue's ``FixStream`` (pipeline/fix.py) cuts them, so a frame a receiver reads is
        the frame counted here: by BodyLength when it points at a complete ``10=NNN<SOH>``;
        otherwise (BodyLength not digits, too long, or pointing elsewhere) at the first CheckSum
        field, or at the next header when one comes before it. A header declaring a huge
        BodyLength thus costs one frame, not the rest of the connection. Whether a frame is valid
        (CheckSum, fields) is ``fix_refusal``'s to say. Bytes that are no frame are counted."""
        buf = self.buf
        n = len(buf)
        pos = 0
        while True:
            start = buf.find(FIX_BEGIN, pos)
            if start < 0:
                if n - pos > 16:  # as FixStream: keep a tail that may begin the next BeginString
                    keep = next((k for k in range(4, 0, -1) if buf.endswith(FIX_BEGIN[:k])), 0)
                    self._count("fix_garbage_bytes", n - keep - pos)
                    pos = n - keep
                break
            if start > pos:
                self._count("fix_garbage_bytes", start - pos)
                pos = start
            end, body = frame_by_body_length(buf, pos)
            if end:
                yield self.stamp_at(self.buf_pos + pos), bytes(buf[pos:end]), body - pos
                pos = end
                continue
            trailer = buf.find(b"\x0110=", pos)
            restart = FIX_HEAD.search(buf, pos + 1, trailer if trailer >= 0 else n)
            if restart is not None:  # cut short (no CheckSum) before a whole one: refuse it alone
                self._count("fix_frames_malformed")
                pos = restart.start()
                continue
            if trailer < 0 or n < trailer + 8:
                if n - pos > MAX_FIX_MESSAGE:
                    self._count("fix_frames_malformed")
                    pos = n
                break
            yield self.stamp_at(self.buf_pos + pos), bytes(buf[pos : trailer + 8]), 0
            pos = trailer + 8
        self.consume(pos)

    def consume(self, n: int) -> None:
        """The first ``n`` bytes of the buffer are framed: drop them (and the marks only they need)."""
        if n:
            del self.buf[:n]
            self.buf_pos += n
            keep = max(0, bisect.bisect_right(self.marks, self.buf_pos) - 1)
            if keep:
                del self.marks[:keep]
                del self.mark_ts[:keep]

    def finish(self) -> None:
        if self.pending:
            self._count("tcp_segments_after_gap", len(self.pending))
        if self.buf:
            self._count("fix_bytes_incomplete_at_end", len(self.buf))
