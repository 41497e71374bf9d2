"""Kernel stamps over real loopback sockets: receive stamps precede the read, transmit stamps match sends."""

import socket
import time

import pytest

from tickscope.pipeline.timestamping import PendingSends, RxTimestamps, TxTimestamps


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


def test_sends_the_kernel_merged_into_one_segment_each_get_its_stamp():
    """With Nagle on, small sends wait for the ACK of the one in flight and leave together: the
    kernel stamps each segment once, keyed by its last send. Every send still gets the stamp of the
    segment that carried it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    tx = TxTimestamps(client)
    if not tx.enabled:
        pytest.skip("SO_TIMESTAMPING not available on this kernel")
    pending, sent_at = PendingSends(), []
    for i in range(200):
        sent_at.append(time.clock_gettime_ns(time.CLOCK_REALTIME))
        client.sendall(b"x" * 100)
        pending.add(tx.key_for_send(100), i)
    stamps, stamped = [], {}
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        for key, ts in tx.drain():
            stamps.append(key)
            stamped |= {i: ts for i in pending.stamped(key)}
        time.sleep(0.005)
    assert len(stamps) < 200, (
        "the kernel merged sends: fewer stamps than sends (else this test shows nothing)"
    )
    assert sorted(stamped) == list(range(200)), "every send got a stamp"
    assert all(stamped[i] >= sent_at[i] for i in range(200)), "no send's stamp before the send"
    assert all(stamped[i] <= stamped[i + 1] for i in range(199)), "stamps in send order"
    assert len(peer.recv(1 << 16)) > 0


def test_a_stamp_covers_the_sends_up_to_its_key_across_the_32_bit_wrap():
    pending = PendingSends()
    keys = [(1 << 32) - 300, (1 << 32) - 100, 99, 500]  # the OPT_ID wraps after 4 GiB sent
    for i, key in enumerate(keys):
        pending.add(key, i)
    assert pending.stamped((1 << 32) - 301) == []
    assert pending.stamped((1 << 32) - 100) == [0, 1]
    assert pending.stamped(99) == [2] and len(pending) == 1
    assert pending.stamped(499) == [] and pending.stamped(500) == [3] and len(pending) == 0
    with socket.socket() as sock:
        tx = TxTimestamps(sock, enable=False)
        tx.sent_bytes = (1 << 32) - 50
        assert tx.key_for_send(100) == 49, "the key the kernel reports: the byte offset modulo 2**32"
