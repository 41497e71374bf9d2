"""Market data: WebSocket (RFC 6455) over TCP, text messages numbered as the feed handler numbers them."""

from __future__ import annotations

import struct

from .tcp import TCP_FIN, TCP_RST, TCP_SYN, TcpStream

# A WebSocket feed carries no sequence number that is the trace id: a feed handler numbers the text
# messages in the order they arrive (the bundled trader: ``ws_seq += 1`` for every text message).
# TCP delivers the venue's bytes in order, so the n-th text message on the venue->client byte stream
# is the handler's trace n, found on the wire by framing that stream exactly as the client does.
WS_CONT, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0, 1, 2, 8, 9, 10
WS_DATA_OPCODES = (WS_TEXT, WS_BINARY)
WS_CONTROL_OPCODES = (WS_CLOSE, WS_PING, WS_PONG)
MAX_WS_HANDSHAKE = 16384  # the HTTP/1.1 101 response; real ones are a few hundred bytes
MAX_WS_PAYLOAD = 1 << 30  # one frame of market data beyond 1 GiB: the framing is lost, not a message


class WsConnection:
    """The venue->client direction of one WebSocket connection: TCP reassembled (``TcpStream``), the
    HTTP/1.1 101 response skipped, then RFC 6455 frames walked header by header. Payloads are
    passed over as they arrive, never kept whole and never inflated (permessage-deflate, RSV1, does
    not change how many messages there are). ``stamps[i]`` is the capture stamp of the segment
    holding the first byte of text message i (0-based): its first frame's header.

    A frame the client would refuse (reserved opcode or bits, a masked frame, a fragmented or long
    control frame, a continuation outside a message, a length beyond ``MAX_WS_PAYLOAD``), a
    handshake that is not a 101, or a connection joined midway stops the numbering on it: the count
    of what follows is unknown, and a number after it would be a guess. One line says where."""

    def __init__(self, name: str, counters: dict[str, int]):
        self.name = name
        self.counters = counters
        self.tcp = TcpStream(counters)
        self.state = "handshake"  # -> "frames" -> "closed" (a Close frame) or "stopped" (see above)
        self.why = ""  # why it stopped: a line
        self.skip = 0  # payload bytes of the current frame not yet passed
        self.in_message: int | None = None  # opcode of the fragmented data message in progress
        self.deflate = False  # the 101 response agreed permessage-deflate: RSV1 allowed on data frames
        self.stamps: list[int] = []  # of the text messages not yet given trace ids
        self.emitted = 0  # text messages already given trace ids (their stamps are dropped)
        self.fin = False  # the venue's FIN or RST is on the capture
        self.isn: int | None = None  # the SYN-ACK's sequence number: the stream is seen from its first byte
        self.overlaps = False  # carried messages while an earlier connection was still open

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    @property
    def messages(self) -> int:
        """Text messages framed so far."""
        return self.emitted + len(self.stamps)

    @property
    def ended(self) -> bool:
        """No text message can follow: the count of this connection is final (or unknowable)."""
        return self.state in ("closed", "stopped") or (self.fin and not self.tcp.pending)

    def segment(self, seq: int, flags: int, payload: bytes, ts: int) -> None:
        if flags & TCP_SYN:
            if self.isn is not None:
                return  # the SYN-ACK again (retransmitted): the stream must not rewind to it
            self.isn = seq
        gaps = self.tcp.gaps
        self.tcp.segment(seq, flags, payload, ts)
        if self.tcp.gaps != gaps and self.state in ("handshake", "frames"):
            self._count("ws_gaps_never_filled")
            self.skip = 0
            self.stop(f"a gap in the TCP stream at byte {self.tcp.gap_at} was not filled within "
                      f"{self.tcp.MAX_PENDING_BYTES} bytes of later data")  # fmt: skip
        if flags & (TCP_FIN | TCP_RST):
            self.fin = True
        if self.tcp.buf:
            self._walk()

    def stop(self, why: str) -> None:
        self.state = "stopped"
        self.why = why
        self._count("ws_connections_stopped")

    def _walk(self) -> None:
        tcp = self.tcp
        buf = tcp.buf
        n = len(buf)
        pos = 0
        stamp, base, stamps = tcp.stamp_at, tcp.buf_pos, self.stamps
        while pos < n:
            if self.skip:
                step = min(self.skip, n - pos)
                self.skip -= step
                pos += step
                continue
            if self.state == "handshake":
                pos = self._handshake(buf)
                if pos < 0:
                    pos = 0
                    break
                continue
            if self.state != "frames":
                self._count(
                    "ws_bytes_after_close" if self.state == "closed" else "ws_bytes_unframed", n - pos
                )
                pos = n
                break
            if n - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 == 0x81 and b1 < 126 and self.in_message is None:  # the usual frame: a whole short text
                stamps.append(stamp(base + pos))
                end = pos + 2 + b1
                if end > n:  # its payload goes on in the next segment
                    self.skip, end = end - n, n
                pos = end
                continue
            length = b1 & 0x7F
            head = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if b1 & 0x80 else 0)
            if n - pos < head:
                break
            if length == 126:
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            problem = self._refused(b0, b1, length)
            at = tcp.buf_pos + pos
            if problem:
                self._count("ws_frames_malformed")
                self.stop(f"{problem} at stream byte {at}")
                continue
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in WS_DATA_OPCODES:
                if opcode == WS_TEXT:
                    self.stamps.append(tcp.stamp_at(at))
                else:
                    self._count("ws_binary_messages")
                self.in_message = None if fin else opcode
            elif opcode == WS_CONT:
                self._count("ws_continuation_frames")
                if fin:
                    self.in_message = None
            elif opcode == WS_CLOSE:
                self._count("ws_close_frames")
                self.state = "closed"  # the client reads no frame after it (RFC 6455 5.5.1)
            else:
                self._count("ws_control_frames")  # ping, pong: anywhere, even inside a fragmented message
            pos += head
            self.skip = length
        tcp.consume(pos)

    def _handshake(self, buf: bytearray) -> int:
        """-> offset of the first frame, -1 while the response is incomplete, 0 once stopped."""
        if not buf.startswith(b"HTTP/1."[: len(buf)]):
            if self.isn is not None:
                self._count("ws_handshakes_malformed")
                self.stop("the stream does not start with an HTTP response")
            else:
                self._count("ws_connections_joined_midway")
                self.stop("the capture joined the connection midway (no SYN, no HTTP 101 response): "
                          "how many messages came before is unknown")  # fmt: skip
            return 0
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_WS_HANDSHAKE:
                self._count("ws_handshakes_malformed")
                self.stop(f"no end of the HTTP response within {MAX_WS_HANDSHAKE} bytes")
                return 0
            return -1
        head = bytes(buf[:end]).lower()
        if head.split(b"\r\n", 1)[0].split(b" ")[1:2] != [b"101"]:
            self._count("ws_handshakes_refused")
            status = bytes(buf[: min(end, 60)]).split(b"\r\n")[0]
            self.stop(f"the venue answered {status!r}, not 101 Switching Protocols")
            return 0
        self.deflate = any(
            line.startswith(b"sec-websocket-extensions:") and b"permessage-deflate" in line
            for line in head.split(b"\r\n")
        )
        self.state = "frames"
        self._count("ws_connections_upgraded")
        return end + 4

    def _refused(self, b0: int, b1: int, length: int) -> str:
        """Why an RFC 6455 client fails the connection on this frame header ("" if it does not)."""
        opcode = b0 & 0x0F
        if opcode not in (WS_CONT, *WS_DATA_OPCODES, *WS_CONTROL_OPCODES):
            return f"reserved opcode {opcode}"
        if b0 & 0x30 or (b0 & 0x40 and not (self.deflate and opcode in WS_DATA_OPCODES)):
            return f"reserved bits RSV1-3 = {(b0 >> 4) & 7:03b}" + (
                "" if self.deflate else ", no extension agreed"
            )
        if b1 & 0x80:
            return "a masked frame from the server (a client must close the connection)"
        if opcode in WS_CONTROL_OPCODES and (not b0 & 0x80 or length > 125):
            return f"control frame (opcode {opcode}) fragmented or longer than 125 bytes ({length})"
        if opcode == WS_CONT and self.in_message is None:
            return "continuation frame outside a message"
        if opcode in WS_DATA_OPCODES and self.in_message is not None:
            return "a new message inside a fragmented one"
        if length > MAX_WS_PAYLOAD:
            return f"payload length {length} beyond {MAX_WS_PAYLOAD} bytes"
        return ""


def stream_name(key: bytes, addr_len: int) -> str:
    import ipaddress

    src, dst = (ipaddress.ip_address(key[i * addr_len : (i + 1) * addr_len]) for i in (0, 1))
    sport, dport = struct.unpack_from(">HH", key, 2 * addr_len)
    return f"{src}:{sport} -> {dst}:{dport}"
