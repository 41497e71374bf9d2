"""Kernel packet timestamps (``SO_TIMESTAMPING``): when the packet really arrived and left.

Receive: the kernel stamps each datagram as the driver hands it up (software) or the NIC
receives it (hardware, where supported); the stamp comes back as ancillary data of
``recvmsg_into``. The gap to the user-space read is the socket-queueing time that user-space
stamps cannot see: it is where coordinated omission hides.

Transmit: the kernel stamps the bytes as the driver queues them to the device; the stamp is
read later from the socket's error queue. ``OPT_ID`` numbers the stamps (for TCP: the byte
offset of the last byte of the ``send``), ``OPT_TSONLY`` keeps the error-queue entries small
(no copy of the packet). Stamps are CLOCK_REALTIME; the collector maps them onto MONOTONIC.
"""

from __future__ import annotations

import socket
import struct
from collections import deque

SO_TIMESTAMPING = 37  # SO_TIMESTAMPING_OLD: timespecs with the native 64-bit layout on 64-bit hosts
SCM_TIMESTAMPING = SO_TIMESTAMPING

TX_HARDWARE = 1 << 0
TX_SOFTWARE = 1 << 1
RX_HARDWARE = 1 << 2
RX_SOFTWARE = 1 << 3
SOFTWARE = 1 << 4
RAW_HARDWARE = 1 << 6
OPT_ID = 1 << 7
OPT_TSONLY = 1 << 11

SO_EE_ORIGIN_TIMESTAMPING = 4
SCM_TSTAMP_SND = 0

_TIMESPECS = struct.Struct("@qqqqqq")  # scm_timestamping: software, (deprecated), raw hardware
_EXTENDED_ERR = struct.Struct("@IBBBBII")  # sock_extended_err: errno, origin, type, code, pad, info, data
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPECS.size) + socket.CMSG_SPACE(64)


def _stamp_ns(data: bytes) -> int:
    """Prefer the hardware stamp when the NIC gave one, else the software one; 0 if neither."""
    s_sec, s_nsec, _, _, h_sec, h_nsec = _TIMESPECS.unpack_from(data)
    if h_sec or h_nsec:
        return h_sec * 1_000_000_000 + h_nsec
    return s_sec * 1_000_000_000 + s_nsec


class RxTimestamps:
    """Receive with the kernel's stamp of each datagram."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        try:
            sock.setsockopt(
                socket.SOL_SOCKET, SO_TIMESTAMPING, RX_SOFTWARE | SOFTWARE | RX_HARDWARE | RAW_HARDWARE
            )
            self.enabled = True
        except OSError:
            self.enabled = False
        self._bufs = None

    def recv_into(self, buf: bytearray | memoryview) -> tuple[int, int]:
        """(bytes received, kernel receive stamp in REALTIME ns or 0). Raises BlockingIOError when empty."""
        n, anc, _flags, _addr = self.sock.recvmsg_into([buf], _ANC_SIZE)
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING:
                return n, _stamp_ns(data)
        return n, 0


OPT_ID_MASK = (1 << 32) - 1  # the kernel's OPT_ID (sock_extended_err.ee_data) is a u32


class PendingSends:
    """Sends waiting for their transmit stamp, in send order (their OPT_ID keys increase, modulo
    2**32). TCP stamps an skb once, keyed by the last byte of the last send it holds: sends the
    kernel merged into one skb before it left (Nagle, a queue held back under load) get one stamp
    between them, with the last one's key. So a stamp of key K is the transmit time of every send
    still waiting up to K, not only of the send whose key is K: matched by key alone, the earlier
    sends of a merged skb would never get their stamp."""

    def __init__(self):
        self._sends: deque[tuple[int, object]] = deque()

    def add(self, key: int, send: object) -> None:
        self._sends.append((key, send))

    def stamped(self, key: int) -> list[object]:
        """The sends a stamp of ``key`` covers (each once, oldest first), no longer waiting."""
        out = []
        while self._sends and (key - self._sends[0][0]) & OPT_ID_MASK <= OPT_ID_MASK >> 1:
            out.append(self._sends.popleft()[1])
        return out

    def __len__(self) -> int:
        return len(self._sends)


class TxTimestamps:
    """Transmit stamps of a TCP socket, matched to sends by their OPT_ID byte offset."""

    def __init__(self, sock: socket.socket, enable: bool = True):
        self.sock = sock
        self.sent_bytes = 0
        self.enabled = False
        if not enable:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_SOFTWARE | SOFTWARE | OPT_ID | OPT_TSONLY)
            self.enabled = True
        except OSError:
            self.enabled = False

    def key_for_send(self, nbytes: int) -> int:
        """Call after a send of ``nbytes``: the OPT_ID the kernel will report for its last byte (a
        u32: it wraps after 4 GiB sent, see ``PendingSends``)."""
        self.sent_bytes += nbytes
        return (self.sent_bytes - 1) & OPT_ID_MASK

    def reset_counter(self) -> None:
        """OPT_ID counts from the moment the option is set: re-arm after a reconnect."""
        self.sent_bytes = 0

    def drain(self) -> list[tuple[int, int]]:
        """All stamps waiting in the error queue, as (OPT_ID key, REALTIME ns), without blocking."""
        out = []
        while True:
            try:
                _data, anc, _flags, _addr = self.sock.recvmsg(
                    0, _ANC_SIZE, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
                )
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out
            ts, key = 0, None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING:
                    ts = _stamp_ns(data)
                elif len(data) >= _EXTENDED_ERR.size:
                    _errno, origin, _t, _c, _p, info, ee_data = _EXTENDED_ERR.unpack_from(data)
                    if origin == SO_EE_ORIGIN_TIMESTAMPING and info == SCM_TSTAMP_SND:
                        key = ee_data
            if ts and key is not None:
                out.append((key, ts))
