"""Captured frames built byte by byte: Mold market data to ``MD_PORT`` over UDP and FIX orders to
``FIX_PORT`` over TCP, on made-up hosts (what a capture holds, without a capture)."""

from support import wire_synth as S
from tickscope.pipeline import itch
from tickscope.pipeline.fix import OrderTemplate

MD_PORT, FIX_PORT = 40100, 40101
SESSION = b"TESTSESS01"
TEMPLATE = OrderTemplate("TRADER", "VENUE")


def mold(seq: int, count: int) -> bytes:
    msgs = [itch.order_delete(1, 0, 0, seq + i) for i in range(count)]
    return itch.mold_packet(SESSION, seq, msgs)


def order(clordid: bytes, seq: int = 1) -> bytes:
    return TEMPLATE.encode(seq, clordid, b"AAPL", b"1", 100, b"10.0000")


def md_frame(seq: int, count: int = 1) -> bytes:
    return S.ethernet(S.ipv4("10.0.0.1", "10.0.0.2", 17, S.udp(5000, MD_PORT, mold(seq, count))))


def tcp_frame(seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    return S.ethernet(S.ipv4("10.0.0.2", "10.0.0.3", 6, S.tcp(6000, FIX_PORT, seq, payload, flags)))
