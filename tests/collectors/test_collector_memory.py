"""The collector keeps the pages of its per-flush temporaries (``keep_freed_memory``): a flush's
arrays of megabytes are not faulted in afresh at every flush."""

import os
import subprocess
import sys

import pytest

from support.native import c_example

TRACES = 200_000  # 8 points each: 25 full batches of one ring
# A collector draining one filled ring to the end: the page faults of its process meanwhile (the
# ring's own pages, 1.6 M records of 32 bytes, are faulted in by either).
DRAIN = """
import resource, sys
import tickscope.collectors.rings.collector as C
if sys.argv[2] == "default":
    C.keep_freed_memory = lambda: False
C.load_kernels()
collector = C.Collector(sys.argv[1], None, interval_s=3600)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
drained = 0
while n := collector.poll():
    drained += n
collector.finish()
print(drained, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def drain_faults(ring_dir, allocator: str) -> int:
    out = subprocess.run([sys.executable, "-c", DRAIN, str(ring_dir), allocator], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    drained, faults = map(int, out.stdout.split())
    assert drained == TRACES * 8
    return faults


def test_a_collectors_flushes_reuse_their_temporaries_pages_instead_of_faulting_them_in_again(tmp_path):
    from tickscope.collectors.rings.collector import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("this C library has no mallopt (not glibc): the allocator is left as it is")
    writer = c_example("c_writer.c", tmp_path)
    faults = {}
    for allocator in ("default", "kept"):
        ring_dir = tmp_path / allocator
        ring_dir.mkdir()
        env = dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir))
        subprocess.run([str(writer), str(TRACES), "0", str(1 << 21)], env=env, check=True, capture_output=True,
                       timeout=120)  # fmt: skip
        faults[allocator] = drain_faults(ring_dir, allocator)
    # Measured: 19,400 faults with glibc's defaults, 6,800 kept.
    assert faults["kept"] * 2 < faults["default"], faults
