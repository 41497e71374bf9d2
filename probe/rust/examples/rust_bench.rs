//! Cost of the Rust probe on this host, measured side by side in one run: a bare `rdtsc` + one
//! store into a ring-sized buffer, `PointWriter::record` (rdtsc + 32-byte record + release store
//! of head) and `TickWriter::stamp` (rdtsc + one store; the commit amortised over 8 stamps).
//! A `Probe`'s `record` (the thread's ring looked up in a thread-local, then the same store) is
//! timed beside them, and so is opening a writer (no sleep since the calibrator thread).
//! Prints one JSON line. The bench plays the collector between rounds, outside the timed loops:
//! it zeroes drained tick slots and advances `tail` through the file.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tickscope_probe::layout as L;
use tickscope_probe::{points, rdtsc, PointWriter, Probe, TickWriter};

points! {
    /// The bench's eight points, as `p0`..`p7` of the writers.
    enum P { P0 = "p0", P1 = "p1", P2 = "p2", P3 = "p3", P4 = "p4", P5 = "p5", P6 = "p6", P7 = "p7" }
}

const BY_ID: [P; 8] = [P::P0, P::P1, P::P2, P::P3, P::P4, P::P5, P::P6, P::P7];

const ROUNDS: usize = 9;
const PER_ROUND: u64 = 1 << 16; // records or stamps per timed loop
const POINTS: u32 = 8;

/// ns since `start` (std's Instant is CLOCK_MONOTONIC on Linux).
fn mono_ns(start: std::time::Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Releases everything written so far, as the collector would after draining.
fn consume(path: &Path, head: u64, zero_bytes: usize) {
    let f = OpenOptions::new().write(true).open(path).expect("ring file");
    if zero_bytes > 0 {
        f.write_all_at(&vec![0u8; zero_bytes], L::DATA_OFFSET as u64).expect("zero slots");
    }
    f.write_all_at(&head.to_le_bytes(), L::OFF_TAIL as u64).expect("tail");
}

fn main() {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(tickscope_probe::ring_dir);
    let names: Vec<String> = (0..POINTS).map(|i| format!("p{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Opening: the best of a few opens (each creates, sizes, maps and fills a header, and stores
    // one calibration pair; it used to sleep 20 ms for the second).
    let mut open_us = f64::MAX;
    for _ in 0..5 {
        let opened = std::time::Instant::now();
        let w = PointWriter::open_in(&dir, "rust-bench-open", &names, PER_ROUND).expect("open ring");
        open_us = open_us.min(opened.elapsed().as_secs_f64() * 1e6);
        let path = w.path().to_path_buf();
        w.close();
        let _ = std::fs::remove_file(path);
    }
    let mut point =
        PointWriter::open_in(&dir, "rust-bench-point", &names, PER_ROUND).expect("open point ring");
    let probe = Probe::<P>::builder("rust-bench-probe").dir(&dir).capacity(PER_ROUND).build().expect("probe");
    probe.record(P::P0, 0); // opens this thread's ring
    let probe_ring = std::fs::read_dir(&dir)
        .expect("ring dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().map_or(false, |n| n.to_string_lossy().starts_with("rust-bench-probe")))
        .expect("the probe's ring");
    let mut probe_written = 1u64;
    let ticks = PER_ROUND / POINTS as u64;
    let mut tick = TickWriter::open_in(&dir, "rust-bench-tick", &names, ticks).expect("open tick ring");
    let mut buf = vec![0u64; PER_ROUND as usize];
    let mask = PER_ROUND - 1;
    let start = std::time::Instant::now();
    let mut checksum = 0u64; // the bare loop's stores are read back, so they cannot be optimised away
    let (mut best_bare, mut best_point, mut best_tick, mut best_probe) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        // Interleaved, so host noise hits all three alike; best of the rounds.
        let t0 = mono_ns(start);
        for i in 0..PER_ROUND {
            buf[(i & mask) as usize] = rdtsc();
        }
        let t1 = mono_ns(start);
        checksum = buf.iter().fold(checksum, |a, &t| a.wrapping_add(t));
        best_bare = best_bare.min((t1 - t0) as f64 / PER_ROUND as f64);

        let t0 = mono_ns(start);
        for i in 0..PER_ROUND {
            point.record((i & 7) as u32, i, 0, 0);
        }
        let t1 = mono_ns(start);
        best_point = best_point.min((t1 - t0) as f64 / PER_ROUND as f64);
        consume(point.path(), point.written(), 0);

        consume(&probe_ring, probe_written, 0);
        let t0 = mono_ns(start);
        for i in 0..PER_ROUND {
            probe.record(BY_ID[(i & 7) as usize], i);
        }
        let t1 = mono_ns(start);
        best_probe = best_probe.min((t1 - t0) as f64 / PER_ROUND as f64);
        probe_written += PER_ROUND;
        consume(&probe_ring, probe_written, 0);

        let t0 = mono_ns(start);
        for k in 0..ticks {
            tick.stamp(0);
            tick.stamp(1);
            tick.stamp(2);
            tick.stamp(3);
            tick.stamp(4);
            tick.stamp(5);
            tick.stamp(6);
            tick.stamp(7);
            tick.commit(k, 0, 0);
        }
        let t1 = mono_ns(start);
        best_tick = best_tick.min((t1 - t0) as f64 / PER_ROUND as f64);
        consume(tick.path(), tick.written(), ticks as usize * L::tick_record_size(POINTS as usize));
    }
    drop(probe);
    let _ = std::fs::remove_file(&probe_ring);
    let dropped = point.dropped() + tick.dropped();
    let paths = [point.path().to_path_buf(), tick.path().to_path_buf()];
    point.close();
    tick.close();
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
    println!(
        "{{\"rdtsc_store_ns\": {best_bare:.2}, \"record_ns\": {best_point:.2}, \"probe_record_ns\": {best_probe:.2}, \"tick_stamp_ns\": {best_tick:.2}, \"open_us\": {open_us:.1}, \"dropped\": {dropped}, \"checksum\": {checksum}}}"
    );
}
