# ruff: noqa: E702  (unrolled stamp loops: one statement per line would measure the loop, not the probe)
"""The Python stamp's options side by side: ``python benchmarks/bench_stamp.py [--rounds N]``.

Why ``TickWriter`` stamps into u64 memoryviews of format "L" and commits the way it does. Two
tables, every row measured in the same run with rounds interleaved (best of N, ns per stamp):

Each figure is the best chunk of 1024 ticks (interleaved with the others), as in
``tickscope bench``, so a loaded host still measures the code.

1. the stamp container alone: ``t[i] = perf_counter_ns()`` into a list, a memoryview cast "Q" or
   "L", an ``array('L')``, a ctypes ``c_uint64`` array;
2. whole ticks (8 stamps + one commit, the ring drained between rounds as in ``tickscope bench``):
   the shipped ``TickWriter``; the same commit through "Q" views (the writer before this change);
   stamps into a private vector copied into the slot at commit; stamps into a list packed with
   ``struct`` at commit.

Prints both tables and one JSON line.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import json
import mmap
import shutil
import struct
import tempfile
from time import perf_counter_ns as pc

from tickscope.collectors.rings.reader import RingReader
from tickscope.probe import TickWriter
from tickscope.probe import layout as L

N = 8
TICKS = 1024


def bare():
    s = pc()
    for _ in range(TICKS):
        pc(); pc(); pc(); pc(); pc(); pc(); pc(); pc()  # fmt: skip
    return (pc() - s) / (TICKS * N)


def stores_into(t):
    s = pc()
    for _ in range(TICKS):
        t[0] = pc(); t[1] = pc(); t[2] = pc(); t[3] = pc()  # fmt: skip
        t[4] = pc(); t[5] = pc(); t[6] = pc(); t[7] = pc()  # fmt: skip
    return (pc() - s) / (TICKS * N)


def ticks_through(first, commit, reader):
    t = first()
    s = pc()
    for k in range(TICKS):
        t[0] = pc(); t[1] = pc(); t[2] = pc(); t[3] = pc()  # fmt: skip
        t[4] = pc(); t[5] = pc(); t[6] = pc(); t[7] = pc()  # fmt: skip
        t = commit(k)
    elapsed = pc() - s
    reader.drain()
    return elapsed / (TICKS * N)


def slot_commit(w: TickWriter, fmt: str):
    """The shipped commit's fast path with views of ``fmt`` (no full-ring handling: the bench drains)."""
    ring = w._ring
    capacity, mask, rsize = ring.capacity, ring.capacity - 1, ring.record_size
    whole = memoryview(ring.mm)
    slots = [
        whole[L.DATA_OFFSET + i * rsize : L.DATA_OFFSET + (i + 1) * rsize].cast(fmt) for i in range(capacity)
    ]
    head_v = whole[L.OFF_HEAD : L.OFF_HEAD + 8].cast(fmt)
    head, current = 0, slots[0]

    def commit(trace_id, aux=0):
        nonlocal head, current
        v = current
        v[N] = trace_id
        if aux:
            v[N + 1] = aux
        h = head + 1
        head = h
        head_v[0] = h
        current = v = slots[h & mask]
        return v

    return (lambda: current), commit


def private_commit(w: TickWriter):
    """Stamps into one private vector; commit copies it into the slot and zeroes it."""
    ring = w._ring
    mask, rsize = ring.capacity - 1, ring.record_size
    whole = memoryview(ring.mm)
    offsets = [L.DATA_OFFSET + i * rsize for i in range(ring.capacity)]
    buf = bytearray(rsize)
    t = memoryview(buf).cast("L")
    zero = bytes(rsize)
    head_v = whole[L.OFF_HEAD : L.OFF_HEAD + 8].cast("L")
    head = 0

    def commit(trace_id, aux=0):
        nonlocal head
        t[N] = trace_id
        t[N + 1] = aux
        o = offsets[head & mask]
        whole[o : o + rsize] = buf
        buf[:] = zero
        head += 1
        head_v[0] = head
        return t

    return (lambda: t), commit


def list_commit(w: TickWriter):
    """Stamps into a list (the cheapest store); commit packs it into the slot with struct."""
    ring = w._ring
    mask, rsize = ring.capacity - 1, ring.record_size
    offsets = [L.DATA_OFFSET + i * rsize for i in range(ring.capacity)]
    pack = struct.Struct(f"@{N + 2}L").pack_into
    mm = ring.mm
    t, zeros = [0] * (N + 2), [0] * (N + 2)
    head_v = memoryview(mm)[L.OFF_HEAD : L.OFF_HEAD + 8].cast("L")
    head = 0

    def commit(trace_id, aux=0):
        nonlocal head
        t[N] = trace_id
        t[N + 1] = aux
        pack(mm, offsets[head & mask], *t)
        t[:] = zeros
        head += 1
        head_v[0] = head
        return t

    return (lambda: t), commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=150, help="chunks per figure")
    rounds = ap.parse_args().rounds
    work = tempfile.mkdtemp(prefix="tickscope-bench-stamp-", dir="/dev/shm")
    try:
        scratch = mmap.mmap(-1, 4096)
        containers = {
            "list": [0] * (N + 2),
            "memoryview 'Q'": memoryview(scratch)[0:80].cast("Q"),
            "memoryview 'L'": memoryview(scratch)[0:80].cast("L"),
            "array('L')": array.array("L", [0] * (N + 2)),
            "ctypes c_uint64[]": (ctypes.c_uint64 * (N + 2)).from_buffer(scratch, 1024),
        }
        writers = []

        def ring():
            w = TickWriter([f"p{i}" for i in range(N)], name="bench", capacity=1 << 14, directory=work)
            writers.append(w)
            return w, RingReader(w.path)

        w, r = ring()
        shipped = (lambda w=w: w.stamps, w.commit, r)
        ticks = {"TickWriter (shipped)": shipped}
        for label, make in (
            ("slot views 'Q' (before)", lambda w: slot_commit(w, "Q")),
            ("slot views 'L'", lambda w: slot_commit(w, "L")),
            ("private vector + copy", private_commit),
            ("list + struct pack", list_commit),
        ):
            w, r = ring()
            ticks[label] = (*make(w), r)
        res: dict[str, list[float]] = {"perf_counter_ns() alone": []}
        for _ in range(rounds):
            res["perf_counter_ns() alone"].append(bare())
            for label, t in containers.items():
                res.setdefault(f"store: {label}", []).append(stores_into(t))
            for label, (first, commit, reader) in ticks.items():
                res.setdefault(f"tick: {label}", []).append(ticks_through(first, commit, reader))
        for w in writers:
            w.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: min(v) for k, v in res.items()}
    base = best["perf_counter_ns() alone"]
    for k, v in best.items():
        print(f"{k:40s} {v:7.1f} ns/stamp  {v / base:5.2f}x")
    print(json.dumps({k: round(v, 1) for k, v in best.items()} | {"rounds": rounds}))


if __name__ == "__main__":
    main()
