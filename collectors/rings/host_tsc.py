"""The host's TSC as the collector sees it: whether it is one clock for every ring, and the
collector's own calibration pairs for it.

On a host whose TSC is invariant and which the kernel keeps among its clocksources, every TSC
stamp of every thread and process of one boot reads one counter: a span between stamps of two
rings is their tick difference times one rate, exactly as within one ring. The collector fits
that rate from the pairs of all such rings *and* from pairs it takes itself, so a writer that
never heartbeats still gets a fit over the whole session.

Python cannot execute ``rdtsc``; ten bytes of machine code in an executable page can, called
through ctypes (~0.2 us). Where that is refused (no x86-64, W^X policy, ``PR_SET_TSC`` making the
instruction fault) the collector simply takes no pairs of its own and says so.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import time
from collections.abc import Callable

from tickscope.collectors.rings.clocks import read_text
from tickscope.probe.clock import narrowest

# rdtsc; shl rdx, 32; or rax, rdx; ret  -- the 64-bit counter in rax, as the C probe's tsp_rdtsc.
_RDTSC_X86_64 = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])
PR_GET_TSC, PR_TSC_ENABLE = 25, 1


def available_clocksources() -> list[str]:
    text = read_text("/sys/devices/system/clocksource/clocksource0/available_clocksource") or ""
    return text.split()


def host_tsc_domain(facts: dict) -> tuple[bool, str]:
    """(one clock for every ring?, why not). Invariant (constant_tsc and nonstop_tsc) and listed
    by the kernel as a clocksource: the kernel drops ``tsc`` from that list when it finds the
    counters of two CPUs apart or the rate unstable, which is the check that covers sockets."""
    if not facts.get("invariant"):
        missing = [f for f in ("constant_tsc", "nonstop_tsc") if not facts.get(f)]
        return False, f"TSC not invariant ({' and '.join(missing) or 'constant_tsc/nonstop_tsc'} missing)"
    sources = facts.get("available_clocksources")
    if sources is None:
        sources = available_clocksources()
    if sources and "tsc" not in sources:
        return False, "the kernel does not list tsc among its clocksources (found unstable or unsynchronised)"
    return True, ""


def _tsc_enabled_for_this_process() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        state = ctypes.c_int(0)
        if libc.prctl(PR_GET_TSC, ctypes.byref(state), 0, 0, 0) != 0:
            return True  # no answer (an older kernel): rdtsc is allowed unless someone said otherwise
        return state.value == PR_TSC_ENABLE
    except (OSError, AttributeError):
        return False


def tsc_reader() -> Callable[[], int] | None:
    """A function returning the TSC now, or None where this process cannot read it."""
    if platform.machine() not in ("x86_64", "AMD64") or not _tsc_enabled_for_this_process():
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None  # a W^X policy refuses writable code: no pairs of our own
    page.write(_RDTSC_X86_64)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    read = ctypes.CFUNCTYPE(ctypes.c_uint64)(address)
    read._page = page  # the code lives as long as the function object
    return read


def collector_pair(read: Callable[[], int], tries: int = 7) -> tuple[int, int, int, int]:
    """One (tsc, monotonic_raw, monotonic, realtime) pair as the C probe takes it (the TSC read
    between two MONOTONIC_RAW reads, the midpoint as its time), chosen as the writers choose
    theirs (``probe.clock.narrowest``, up to ``tries``): a third RAW read closes each sequence, so
    a preemption anywhere in it, the MONOTONIC and REALTIME reads included, widens its bracket."""
    raw_ns, mono_ns, real_ns = time.CLOCK_MONOTONIC_RAW, time.CLOCK_MONOTONIC, time.CLOCK_REALTIME

    def sequence():
        raw0 = time.clock_gettime_ns(raw_ns)
        tsc = read()
        raw1 = time.clock_gettime_ns(raw_ns)
        return (
            raw0,
            tsc,
            raw1,
            time.clock_gettime_ns(mono_ns),
            time.clock_gettime_ns(real_ns),
            time.clock_gettime_ns(raw_ns),
        )

    raw0, tsc, raw1, mono, real, _ = narrowest(sequence, tries)
    half = (raw1 - raw0) // 2
    return tsc, raw0 + half, mono - half, real
