"""Kernel stamps over real loopback sockets: receive stamps precede the read, transmit stamps match sends."""

import socket
import time

import pytest

from tickscope.pipeline.timestamping import RxTimestamps, TxTimestamps


def test_udp_receive_carries_the_kernel_stamp():
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind(("127.0.0.1", 0))
    rx = RxTimestamps(rx_sock)
    if not rx.enabled:
        pytest.skip("SO_TIMESTAMPING not available on this kernel")
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The kernel turns receive stamping on system-wide through deferred work the first time a
    # socket asks: datagrams in the first moments may come unstamped. Wait until they are.
    buf = bytearray(64)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        tx.sendto(b"warm", rx_sock.getsockname())
        time.sleep(0.005)
        if rx.recv_into(buf)[1]:
            break
    before = time.clock_gettime_ns(time.CLOCK_REALTIME)
    tx.sendto(b"itch", rx_sock.getsockname())
    time.sleep(0.01)
    n, stamp = rx.recv_into(buf)
    after = time.clock_gettime_ns(time.CLOCK_REALTIME)
    assert n == 4 and bytes(buf[:4]) == b"itch"
    assert before <= stamp <= after, "the kernel stamped the datagram between send and read"
    assert after - stamp >= 5_000_000, "the stamp is the arrival, not the (later) read"


def test_tcp_transmit_stamps_match_sends_by_byte_offset():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    tx = TxTimestamps(client)
    if not tx.enabled:
        pytest.skip("SO_TIMESTAMPING not available on this kernel")
    keys = []
    sent_at = []
    for payload in (b"a" * 100, b"b" * 50, b"c" * 7):
        sent_at.append(time.clock_gettime_ns(time.CLOCK_REALTIME))
        client.sendall(payload)
        keys.append(tx.key_for_send(len(payload)))
    assert keys == [99, 149, 156]
    stamps = []
    deadline = time.monotonic() + 2
    while len(stamps) < 3 and time.monotonic() < deadline:
        stamps += tx.drain()
        time.sleep(0.005)
    assert [k for k, _ in stamps] == keys
    for (_, ts), t0 in zip(stamps, sent_at, strict=True):
        assert ts >= t0
    assert peer.recv(1024)
