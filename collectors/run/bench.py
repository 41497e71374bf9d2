"""``tickscope bench``: the probe's cost and the collector's throughput on this host.

Every figure is measured side by side in one run with its reference (perf_counter_ns alone,
rdtsc alone, hdrh's own record_value on the same values), so the ratios survive a noisy host
better than the absolute numbers do. Best of several rounds for the micro-benchmarks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tickscope.probe as probe_pkg
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.rings.incidents import IncidentPolicy
from tickscope.collectors.rings.reader import RingReader
from tickscope.collectors.run.cargo import find_cargo, stage
from tickscope.collectors.session.hdr import BulkRecorder, new_histogram
from tickscope.probe import TickWriter
from tickscope.probe.ring import PointWriter

TICKS_PER_ROUND = 1024
POINTS = 8
FANOUT_RECORDS = 14  # c_fanout_writer.c: 5 shared points + 3 legs x 3 points


def c_source(name: str) -> Path:
    return Path(probe_pkg.__file__).parent / "examples" / name


def build_c(name: str, out_dir: Path) -> Path | None:
    """Compile one of probe/examples/*.c against the header; None when there is no C compiler."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        return None
    exe = out_dir / Path(name).stem
    include = Path(probe_pkg.__file__).parent / "include"
    subprocess.run([cc, "-O2", "-Wall", "-pthread", "-I", str(include), "-o", str(exe), str(c_source(name))], check=True,
                   capture_output=True)  # fmt: skip
    return exe


def rust_crate() -> Path:
    """The Rust probe crate (``probe/rust``), shipped beside the C header."""
    return Path(probe_pkg.__file__).parent / "rust"


def build_rust(example: str, probes: bool = True) -> Path | None:
    """``cargo build --release --offline`` one of probe/rust/examples; None without cargo or crate.
    ``probes=False`` builds it with ``--no-default-features`` (the crate's ``enable`` off).

    Built on a copy in the per-user cache (``collectors.cargo``), so a rebuild is a no-op and an
    installed package builds as a checkout does; a build without probes gets its own target
    directory, or building one would evict the other's binary.
    """
    cargo, crate = find_cargo(), rust_crate()
    if cargo is None or not (crate / "Cargo.toml").is_file():
        return None
    manifest, target = stage(crate)
    if not probes:
        target = target / "no-probes"
    cmd = [cargo, "build", "--release", "--offline", "--quiet", "--manifest-path", str(manifest),
           "--target-dir", str(target), "--example", example]  # fmt: skip
    if not probes:
        cmd.append("--no-default-features")
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return target / "release" / "examples" / example


def _best(fn, rounds: int) -> float:
    return min(fn() for _ in range(rounds))


def bench_python_probe(rounds: int = 7, ticks: int = 20_000, directory: Path | None = None) -> dict:
    """ns per stamp: perf_counter_ns() alone vs TickWriter (stamp + amortised commit) vs PointWriter.

    Each round is cut into chunks of ``TICKS_PER_ROUND`` ticks (well under a millisecond), run
    bare, stamped, per-point in turn, and each figure is the best chunk: on a shared host a whole
    20 ms round is rarely left alone, a chunk often is, and all three see the same host. The rings
    go where a subject's do (``directory``: /dev/shm from ``run_all``), not onto a disk file system
    whose page writeback would add faults a subject never sees.
    """
    from time import perf_counter_ns as pc

    d = tempfile.mkdtemp(prefix="tickscope-bench-", dir=directory)
    per_chunk = TICKS_PER_ROUND * POINTS
    try:
        tick = TickWriter([f"p{i}" for i in range(POINTS)], name="bench", capacity=1 << 12, directory=d)
        point = PointWriter(
            [f"p{i}" for i in range(POINTS)], name="bench-point", capacity=1 << 15, directory=d
        )
        tick_reader, point_reader = RingReader(tick.path), RingReader(point.path)
        commit, record = tick.commit, point.record

        def bare():
            s = pc()
            for _k in range(TICKS_PER_ROUND):
                pc(); pc(); pc(); pc(); pc(); pc(); pc(); pc()  # fmt: skip
            return (pc() - s) / per_chunk

        def stamped():
            t = tick.stamps
            s = pc()
            for k in range(TICKS_PER_ROUND):
                t[0] = pc(); t[1] = pc(); t[2] = pc(); t[3] = pc()  # fmt: skip
                t[4] = pc(); t[5] = pc(); t[6] = pc(); t[7] = pc()  # fmt: skip
                t = commit(k)
            elapsed = pc() - s
            tick_reader.drain()  # the collector's work, outside the timed loop
            return elapsed / per_chunk

        def per_point():
            s = pc()
            for k in range(TICKS_PER_ROUND):
                for p in range(POINTS):
                    record(p, k)
            elapsed = pc() - s
            point_reader.drain()
            return elapsed / per_chunk

        pc_ns = stamp_ns = point_ns = float("inf")
        for _ in range(rounds * max(1, ticks // TICKS_PER_ROUND)):
            pc_ns = min(pc_ns, bare())
            stamp_ns = min(stamp_ns, stamped())
            point_ns = min(point_ns, per_point())
        dropped = tick.dropped + point.dropped
        tick.close()
        point.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {
        "perf_counter_ns_ns": round(pc_ns, 1),
        "probe_stamp_ns": round(stamp_ns, 1),
        "probe_stamp_ratio": round(stamp_ns / pc_ns, 2),
        "point_record_ns": round(point_ns, 1),
        "point_record_ratio": round(point_ns / pc_ns, 2),
        "probe_bench_dropped": dropped,
    }


def bench_c_probe(work: Path) -> dict:
    try:
        exe = build_c("c_bench.c", work)
    except subprocess.CalledProcessError as e:
        return {"c_probe_ns": None, "c_probe_error": e.stderr.decode(errors="replace")[:200]}
    if exe is None:
        return {"c_probe_ns": None, "rdtsc_ns": None, "c_probe_error": "no C compiler (install gcc)"}
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(work))
    out = subprocess.run([str(exe)], capture_output=True, text=True, env=env, check=True, timeout=60)
    import json

    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "c_probe_ns": r["record_ns"],
        "rdtsc_ns": r["rdtsc_ns"],
        "c_probe_ratio": round(r["record_ns"] / r["rdtsc_ns"], 2),
    }


def bench_rust_probe(work: Path) -> dict:
    """The Rust crate's ``record``, ``Probe::record`` and tick ``stamp`` next to a bare rdtsc +
    store, and the time to open a ring, one run."""
    missing = {"rust_probe_ns": None, "rust_tick_stamp_ns": None, "rdtsc_store_ns": None,
               "rust_probe_handle_ns": None, "rust_open_us": None}  # fmt: skip
    try:
        exe = build_rust("rust_bench")
    except subprocess.CalledProcessError as e:
        return missing | {"rust_probe_error": e.stderr.decode(errors="replace").strip()[-200:]}
    except OSError as e:  # the per-user cache the crate is copied to (collectors.cargo)
        return missing | {"rust_probe_error": f"cannot copy the crate to build it: {e}"}
    if exe is None:
        return missing | {"rust_probe_error": "no cargo (install Debian's cargo) or no probe/rust crate"}
    out = subprocess.run([str(exe), str(work)], capture_output=True, text=True, check=True, timeout=60)
    import json

    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "rust_probe_ns": r["record_ns"],
        "rust_tick_stamp_ns": r["tick_stamp_ns"],
        "rdtsc_store_ns": r["rdtsc_store_ns"],
        "rust_probe_ratio": round(r["record_ns"] / r["rdtsc_store_ns"], 2),
        "rust_tick_stamp_ratio": round(r["tick_stamp_ns"] / r["rdtsc_store_ns"], 2),
        # `Probe::record` from any thread (its ring found in a thread-local) against a direct record
        "rust_probe_handle_ns": r["probe_record_ns"],
        "rust_probe_handle_ratio": round(r["probe_record_ns"] / r["record_ns"], 2),
        "rust_open_us": r["open_us"],  # opening a ring (it used to sleep 20 ms)
    }


def latency_like_values(n: int, seed: int = 7) -> np.ndarray:
    """Log-normal around 20 us with a heavy tail: what stage latencies look like."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(20_000), 1.0, n), 1, 50e9).astype(np.int64)


# What a collector's process does before its first record: numba's import and every kernel loaded
# (load_kernels: the collector's, the hlog encoder's among them), in a fresh interpreter.
_LOAD_KERNELS = (
    "import sys, time\n"
    "t = time.perf_counter()\n"
    "from tickscope.collectors.rings.collector import load_kernels\n"
    "load_kernels()\n"
    "print(time.perf_counter() - t)\n"
)


def bench_kernels(work: Path, cold: bool = True) -> dict:
    """Seconds a fresh process takes to have the collector's compiled kernels ready: from numba's
    on-disk cache (every run after the first on a host) and, with ``cold``, compiled from scratch
    (the first run, or after an upgrade: an empty ``NUMBA_CACHE_DIR``)."""

    def once(env: dict) -> float:
        out = subprocess.run([sys.executable, "-c", _LOAD_KERNELS], env=env, capture_output=True, text=True)
        return round(float(out.stdout.strip().splitlines()[-1]), 3) if out.returncode == 0 else None

    out = {}
    if cold:
        cache = work / "numba-cache"
        out["kernels_compile_s"] = once(dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    once(dict(os.environ))  # the package's own cache filled, if this host never ran a collector
    loads = [t for t in (once(dict(os.environ)) for _ in range(3)) if t is not None]
    out["kernels_load_s"] = min(loads, default=None)
    return out


def bench_ingest(n: int = 4_000_000, n_ref: int = 100_000, rounds: int = 5) -> dict:
    values = latency_like_values(n)
    hist = new_histogram()
    rec = BulkRecorder(hist)

    def ours():
        s = time.perf_counter()
        rec.record(hist, values)
        return time.perf_counter() - s

    ours_s = _best(ours, rounds)
    ref = new_histogram()
    sample = [int(v) for v in values[:n_ref]]
    s = time.perf_counter()
    for v in sample:
        ref.record_value(v)
    ref_s = time.perf_counter() - s
    ours_rate, ref_rate = n / ours_s, n_ref / ref_s
    return {
        "ingest_values_per_s": round(ours_rate),
        "hdrh_record_value_per_s": round(ref_rate),
        "ingest_ratio": round(ours_rate / ref_rate, 1),
    }


DRAIN_PACE_RECORDS_PER_S = 30_000_000  # issue 26: zero loss against a C writer paced at 30 M records/s


def bench_drain(work: Path, traces: int = 7_500_000, rate: float = DRAIN_PACE_RECORDS_PER_S / POINTS) -> dict:
    """A C writer paced at ``rate`` traces/s (8 records each: 30 M records/s by default, 2 s)
    while the ring reader alone (``RingReader.drain``, no correlation) drains concurrently.

    ``drain_records_per_s`` is records per second of time spent inside ``drain()`` (what one core
    can sustain); the run also reports the pace, the achieved end-to-end rate and the loss, which
    must be 0.
    """
    exe = build_c("c_writer.c", work)
    if exe is None:
        return {"drain_records_per_s": None, "drain_error": "no C compiler (install gcc)"}
    ring_dir = work / "drain"
    ring_dir.mkdir()
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir))
    proc = subprocess.Popen(
        [str(exe), str(traces), str(rate), str(1 << 20)], env=env, stdout=subprocess.PIPE, text=True
    )
    reader = None
    deadline = time.monotonic() + 10
    while reader is None and time.monotonic() < deadline:
        rings = list(ring_dir.glob("*.ring"))
        if rings:
            try:
                reader = RingReader(rings[0])
            except Exception:
                time.sleep(0.001)
        else:
            time.sleep(0.001)
    if reader is None:
        proc.kill()
        return {"drain_records_per_s": None, "drain_error": "writer did not start"}
    busy, got = 0.0, 0
    start = time.perf_counter()
    while True:
        done = proc.poll() is not None
        s = time.perf_counter()
        batch = reader.drain(1 << 18)
        busy += time.perf_counter() - s
        got += batch.size
        if done and batch.size == 0 and reader.head == reader.tail:
            break
        if batch.size < 1 << 14:
            time.sleep(0.0005)
    wall = time.perf_counter() - start
    proc.communicate()
    produced, dropped = reader.produced, reader.dropped_full
    return {
        "drain_records_per_s": round(got / busy) if busy else None,
        "drain_paced_records_per_s": round(rate * POINTS),
        "drain_sustained_records_per_s": round(got / wall),
        "drain_records": got,
        "drain_produced": produced,
        "drain_dropped": dropped,
        "drain_zero_loss": dropped == 0 and got == produced,
    }


def _collect(
    work: Path,
    name: str,
    writers: list[list[str]],
    incidents: IncidentPolicy | None = None,
    floor: bool = False,
) -> dict:
    """The real Collector draining rings the ``writers`` (argv lists) filled first: records per
    second of wall time, CPU ns per record, and the trace accounting that proves nothing was lost
    (with ``incidents``: also the incident buffer's peak rows and bytes, and what it pushed out;
    with ``floor``: also ``_copy_floor`` of the same rings, first)."""
    ring_dir = work / name
    ring_dir.mkdir()
    env = dict(os.environ, TICKSCOPE_RING_DIR=str(ring_dir))
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE) for argv in writers]
    for w in procs:
        w.communicate()
    copied = _copy_floor(ring_dir) if floor else {}
    collector = Collector(ring_dir, None, interval_s=3600, incidents=incidents)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    records = 0
    while True:
        n = collector.poll()
        records += n
        if n == 0:
            break
    collector.finish()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    c = collector.counter_dict()
    kept = collector.incidents.to_meta() if collector.incidents is not None else None
    return {
        **(
            {
                "buffer_peak_rows": kept["buffer"]["peak_rows"],
                "buffer_peak_bytes": kept["buffer"]["peak_bytes"],
                "buffer_overflow_rows": kept["buffer"]["overflow_rows"],
                "check_ns_per_record": round(kept["check_cpu_s"] / records * 1e9, 1) if records else None,
            }
            if kept
            else {}
        ),  # fmt: skip
        "records_per_s": round(records / wall),
        "cpu_ns_per_record": round(cpu / records * 1e9, 1) if records else None,
        **copied,
        "records": records,
        "traces_complete": c["traces_complete"],
        "traces_incomplete": c["traces_incomplete"],
        "dropped": c["dropped_ring_full"],
    }


def _copy_floor(ring_dir: Path) -> dict:
    """The physical floor under any collector of these rings: a plain copy of the same record
    bytes out of each ring (as bytes: a copy of the structured records goes field by field,
    10x slower), ``Collector.BATCH`` records at a time into one buffer, the mapping's pages
    faulted in as the collector's are; nothing released (the rings stay full for the collector).
    CPU ns per record, records per second of wall time."""
    cpu0, wall0, records = time.process_time(), time.perf_counter(), 0
    buffer = np.empty(0, np.uint8)
    for path in sorted(ring_dir.iterdir()):
        reader = RingReader(path)
        try:
            ring = reader.peek()
            raw = ring.view(np.uint8)
            step = Collector.BATCH * ring.dtype.itemsize
            if buffer.size < step:
                buffer = np.empty(step, np.uint8)
            for at in range(0, raw.size, step):
                np.copyto(buffer[: min(step, raw.size - at)], raw[at : at + step])
            records += ring.size
            del ring, raw  # no view of the mapping may outlive it (RingReader.close)
        finally:
            reader.close()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "floor_records_per_s": round(records / wall) if wall else None,
        "floor_cpu_ns_per_record": round(cpu / records * 1e9, 1) if records else None,
        "floor_records": records,
    }


def _capacity(records: int) -> int:
    return 1 << int(np.ceil(np.log2(records)))


def bench_collect(work: Path, traces_per_writer: int = 400_000) -> dict:
    """Drain + correlate + ingest end to end, the real Collector, measured twice side by side:
    two C writers of 8 points per trace (one order per tick), and two that fan out (5 shared
    points, 3 legs of 3 points, 3 dimensions: 14 records per trace, ``c_fanout_writer.c``).

    The writers fill their rings first, so the figure is the collector's own throughput; CPU time
    per record is what profiling costs the measured host. A complete trace of the fan-out run is
    one leg (its own tick-to-trade sample): 3 per tick.
    """
    exe, fan = build_c("c_writer.c", work), build_c("c_fanout_writer.c", work)
    if exe is None or fan is None:
        return {"collect_records_per_s": None, "collect_error": "no C compiler (install gcc)"}
    bases = (1, 1 << 40)
    plain = _collect(work, "collect", [[str(exe), str(traces_per_writer), "0",
                                        str(_capacity(traces_per_writer * POINTS)), str(b)] for b in bases],
                     floor=True)  # fmt: skip
    fan_traces = traces_per_writer * POINTS // FANOUT_RECORDS  # about as many records as the plain run
    fanned = _collect(work, "collect-fanout", [[str(fan), str(fan_traces), str(_capacity(fan_traces * FANOUT_RECORDS)),
                                                str(b)] for b in bases])  # fmt: skip
    # The plain run again with --incident's buffer and a trigger that never fires: its cost per
    # record (checking each closed batch, keeping every closed trace's stamps for the window).
    # Rings filled first are denser in time than a live pipeline: the buffer meets its bounds.
    never = IncidentPolicy.parse(["tick_to_trade>10s"], None, None)
    kept = _collect(work, "collect-incident", [[str(exe), str(traces_per_writer), "0",
                                                str(_capacity(traces_per_writer * POINTS)), str(b)] for b in bases],
                    incidents=never)  # fmt: skip
    out = {f"collect_{k}": v for k, v in plain.items()}
    if plain["cpu_ns_per_record"] and plain["floor_cpu_ns_per_record"]:
        # how far the collector is from the memory traffic it cannot avoid (issue 26 asks <= 20 ns)
        out["collect_floor_ratio"] = round(plain["cpu_ns_per_record"] / plain["floor_cpu_ns_per_record"], 1)
    out |= {f"collect_incident_{k}": v for k, v in kept.items()}
    if plain["cpu_ns_per_record"] and kept["cpu_ns_per_record"]:
        out["collect_incident_cpu_ratio"] = round(kept["cpu_ns_per_record"] / plain["cpu_ns_per_record"], 2)
    out |= {f"collect_fanout_{k}": v for k, v in fanned.items()}
    if plain["records_per_s"] and fanned["records_per_s"]:
        out["collect_fanout_ratio"] = round(fanned["records_per_s"] / plain["records_per_s"], 2)
    return out


def run_all(quick: bool = False, progress=None) -> dict:
    say = progress or (lambda msg: None)
    work = Path(
        tempfile.mkdtemp(
            prefix="tickscope-bench-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        )
    )
    results: dict = {"quick": quick}
    try:
        say("python probe ...")
        results |= bench_python_probe(
            rounds=3 if quick else 7, ticks=4096 if quick else 20_480, directory=work
        )
        say("C probe ...")
        results |= bench_c_probe(work)
        say("Rust probe ...")
        results |= bench_rust_probe(work)
        say("HDR ingestion ...")
        results |= bench_ingest(
            n=200_000 if quick else 4_000_000, n_ref=10_000 if quick else 100_000, rounds=2 if quick else 5
        )
        say("ring drain (C writer, concurrent) ...")
        results |= bench_drain(work, **({"traces": 50_000} if quick else {}))
        say("compiled kernels: load from cache" + ("" if quick else ", compile cold") + " ...")
        results |= bench_kernels(work, cold=not quick)
        say("collector end to end: plain, with --incident's buffer, with fan-out ...")
        results |= bench_collect(work, traces_per_writer=20_000 if quick else 400_000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
