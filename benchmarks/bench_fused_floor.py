"""How low a fused collector core goes on this host: ``python benchmarks/bench_fused_floor.py``.

An experiment, not a collector: one numba pass per batch over the plain bench's rings (2 C
writers x 400,000 traces x 8 TSC points, ``c_writer.c``), fused as far as it goes. Each 32-byte
point record is decoded in place, joined to its trace by an open-addressing hash, the trace
closed at its 8th point, its 7 spans and tick-to-trade converted from ticks and counted into HDR
counts. None of the collector's other rules (linger, out-of-order arrival, legs, dimensions, the
late index, attribution, slowest traces): a floor under any core that keeps them.

Run twice per round, with the join's hash at ``--large`` positions (the size a table keeping
thousands of traces open needs) and at ``--small`` (a pass that closes each trace in place keeps
one or two open), each beside the real ``Collector`` on the same rings: CPU ns per record, and
the ratios. docs/performance.md ("How low a fused core goes") says what it showed.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from tickscope.collectors.rings.collector import load_kernels
from tickscope.collectors.rings.pending import _home, _shifts_back  # the open-trace table's hash and deletion
from tickscope.collectors.rings.reader import RingReader
from tickscope.collectors.run import bench as B
from tickscope.collectors.session.hdr import new_histogram
from tickscope.collectors.session.hdr_kernels import counts_index

POINTS = 8
NS_PER_TICK = 0.4  # any constant: the cost is the figure here, not the spans


@njit(nogil=True)
def fused(words, n, h_key, h_slot, stamps, got, free, nfree, counts, scale, mask_b, um, hm):
    """``words``: n records as u64 words (ts, trace id, point | leg << 16 | tid << 32, dims)."""
    hmask = h_key.size - 1
    closed = 0
    for k in range(n):
        ts, tid = words[4 * k], words[4 * k + 1]
        p = np.int64(words[4 * k + 2] & np.uint64(0xFFFF))
        i = _home(tid, hmask)
        while h_slot[i] >= 0 and h_key[i] != tid:
            i = (i + 1) & hmask
        s = h_slot[i]
        if s < 0:
            nfree -= 1
            s = free[nfree]
            h_slot[i], h_key[i] = s, tid
            got[s] = 0
        stamps[s, p] = ts
        got[s] += 1
        if got[s] < POINTS:
            continue
        for j in range(1, POINTS):
            v = np.int64(np.rint((np.int64(stamps[s, j]) - np.int64(stamps[s, j - 1])) * scale))
            if v >= 0:
                counts[j - 1, counts_index(v, mask_b, um, hm)] += 1
        v = np.int64(np.rint((np.int64(stamps[s, POINTS - 2]) - np.int64(stamps[s, 0])) * scale))
        counts[POINTS - 1, counts_index(v, mask_b, um, hm)] += 1
        free[nfree] = s
        nfree += 1
        j = i  # out of the hash by backward shift, as pending.py's table does
        while True:
            j = (j + 1) & hmask
            u = h_slot[j]
            if u < 0:
                break
            home = _home(h_key[j], hmask)
            if _shifts_back(i, home, j):
                h_slot[i], h_key[i] = u, h_key[j]
                i = j
        h_slot[i] = -1
        closed += 1
    return nfree, closed


def fused_pass(ring_dir: Path, positions: int) -> tuple[float, int]:
    """CPU ns per record of the fused pass over every ring in ``ring_dir``, and traces closed."""
    layout = new_histogram()
    counts = np.zeros((POINTS, layout.counts_len), np.int64)
    slots = positions // 4
    h_key, h_slot = np.zeros(positions, np.uint64), np.full(positions, -1, np.int64)
    stamps, got = np.zeros((slots, POINTS), np.uint64), np.zeros(slots, np.int64)
    free, nfree = np.arange(slots - 1, -1, -1, dtype=np.int64), slots
    hdr = (layout.sub_bucket_mask, layout.unit_magnitude, layout.sub_bucket_half_count_magnitude)
    table = (h_key, h_slot, stamps, got, free)
    fused(np.zeros(4, np.uint64), 0, *table, nfree, counts, NS_PER_TICK, *hdr)  # compiled before the clock
    readers = [RingReader(p) for p in sorted(ring_dir.iterdir())]
    closed = records = 0
    cpu0 = time.process_time()
    for reader in readers:
        while (m := int((batch := reader.peek(1 << 16)).size)) > 0:
            words = batch.view(np.uint64).reshape(-1)
            nfree, c = fused(words, m, *table, nfree, counts, NS_PER_TICK, *hdr)
            del words
            del batch  # no view of the mapping may outlive it
            reader.release(m)
            closed, records = closed + c, records + m
        del batch
    cpu = time.process_time() - cpu0
    for reader in readers:
        reader.close()
    return cpu / records * 1e9, closed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=400_000, help="traces per writer")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large", type=int, default=1 << 18, help="hash positions, the large table")
    ap.add_argument("--small", type=int, default=1 << 12, help="hash positions, the small table")
    args = ap.parse_args()
    load_kernels()
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    work = Path(tempfile.mkdtemp(prefix="tickscope-fused-", dir=shm))
    try:
        exe = B.build_c("c_writer.c", work)
        if exe is None:
            raise SystemExit("bench_fused_floor: no C compiler (install gcc)")
        writers = [[str(exe), str(args.traces), "0", str(B._capacity(args.traces * POINTS)), str(b)]
                   for b in (1, 1 << 40)]  # fmt: skip
        for r in range(args.rounds):
            real = B._collect(work, f"collector{r}", writers)["cpu_ns_per_record"]
            row = [f"round {r + 1}: collector {real:.1f} ns a record"]
            for name, positions in (("large", args.large), ("small", args.small)):
                ring_dir = work / f"{name}{r}"
                ring_dir.mkdir()
                env = dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir))
                for w in [subprocess.Popen(a, env=env, stdout=subprocess.PIPE) for a in writers]:
                    w.communicate()
                ns, closed = fused_pass(ring_dir, positions)
                if closed != 2 * args.traces:
                    raise SystemExit(f"bench_fused_floor: closed {closed} traces of {2 * args.traces}")
                row.append(f"fused, {positions:,}-position hash {ns:.1f} ns ({real / ns:.1f}x less)")
            print("; ".join(row))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
