"""Coverage-guided fuzzing of ITCH 5.0 over MoldUDP64, through to the book and the strategy.

    pip install atheris
    python fuzz/fuzz_itch.py -max_total_time=300

One input drives, in turn:
- ``itch.decode`` of the bytes as one message: only ValueError may come out;
- ``itch.itch_file_messages`` (what ``--replay`` reads): only ItchFileError;
- ``MoldReceiver`` on the bytes as a packet, twice: in a buffer of exactly its size and in a
  larger one whose bytes past the packet are stale (0xEE), with every decoded message applied to
  an order book and shown to the strategy, as the trader does. Nothing may raise, and both runs
  must agree (nothing past the packet is read).
When the first byte is odd the rest is a list of messages split at b"\\n\\n", framed into a valid
MoldUDP64 packet by the harness, so that the fuzzer reaches decoding and the book.
"""

import atheris
from _harness import run

with atheris.instrument_imports():
    from tickscope.pipeline import itch
    from tickscope.pipeline.book import BookSet
    from tickscope.pipeline.strategy import ImbalanceStrategy
    from tickscope.pipeline.venue import SESSION, SyntheticFlow


def receive(buf, n: int) -> list:
    rx, books, strategy = itch.MoldReceiver(), BookSet(), ImbalanceStrategy(cooldown_ns=0)
    out = []
    for _ in range(2):  # the second time the same packet is stale (or a duplicate)
        for seq, fields in rx.messages(buf, n):
            book = books.apply(fields)
            if book is not None:
                out.append((seq, fields, strategy.on_book(book, seq)))
    return out + [rx.stats.__dict__]


def test_one_input(data: bytes) -> None:
    try:
        itch.decode(data, 0, len(data))
    except ValueError:
        pass
    try:
        for _ in itch.itch_file_messages(data):
            pass
    except itch.ItchFileError:
        pass
    packet = data
    if data[:1] and data[0] & 1:
        packet = itch.mold_packet(SESSION, 1, [m[:65535] for m in data[1:].split(b"\n\n")])
    exact = receive(packet, len(packet))
    padded = bytearray(packet) + b"\xee" * 64
    assert receive(padded, len(packet)) == exact, "read past the end of the packet"


def seeds() -> list[bytes]:
    flow = SyntheticFlow(["AAPL", "MSFT"], seed=1)
    msgs = flow.preamble(0) + [flow.next_message(i) for i in range(40)]
    out = [itch.mold_packet(SESSION, 1, msgs[i : i + 4]) for i in range(0, len(msgs), 4)]
    out += [itch.mold_heartbeat(SESSION, 5), itch.mold_end_of_session(SESSION, 5)]
    out.append(b"\x01" + b"\n\n".join(msgs[:12]))
    out.append(itch.mold_packet(SESSION, 1, [msgs[3], b""]))  # the empty message of issue 9
    return out


if __name__ == "__main__":
    run("itch", seeds(), test_one_input)
