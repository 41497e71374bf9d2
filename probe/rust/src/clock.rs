//! Clocks: the TSC where it can be trusted, CLOCK_MONOTONIC where it cannot.
//!
//! Stamps are raw ticks; the collector converts them with the calibration pairs the writer stores
//! (least squares of CLOCK_MONOTONIC_RAW against the TSC), so the hot path is one `rdtsc`.

use crate::layout;
use crate::sys;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// The clock domain of a point's stamps (the values are the ring ABI's).
///
/// ```
/// use tickscope_probe::{native_clock, ClockDomain};
/// assert!(matches!(native_clock(), ClockDomain::Tsc | ClockDomain::Monotonic));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ClockDomain {
    /// Raw `rdtsc` ticks, converted by the collector with the ring's calibration pairs.
    Tsc = layout::CLOCK_TSC,
    /// `clock_gettime(CLOCK_MONOTONIC)` ns (Python's `perf_counter_ns`).
    Monotonic = layout::CLOCK_MONOTONIC,
    /// `CLOCK_REALTIME` ns, e.g. kernel `SO_TIMESTAMPING` stamps passed to `record_ts`.
    Realtime = layout::CLOCK_REALTIME,
}

impl ClockDomain {
    /// ns between two stamps of this clock (`later - earlier`, 0 if `later` is earlier): a plain
    /// difference for the ns clocks; for the TSC, ticks times this process's estimate of the
    /// rate, measured against CLOCK_MONOTONIC_RAW since the crate's first use (its error is
    /// about 100 ns over that baseline: 0.01 % after 1 ms, 0.1 ppm after a second). The
    /// collector's numbers do not use it: they come from the ring's calibration pairs.
    ///
    /// ```
    /// use tickscope_probe::{native_clock, ClockDomain};
    ///
    /// assert_eq!(ClockDomain::Monotonic.delta_ns(1_000, 3_500), 2_500);
    /// let clock = native_clock();
    /// let t0 = clock.now();
    /// std::thread::sleep(std::time::Duration::from_millis(2));
    /// let ns = clock.delta_ns(t0, clock.now());
    /// assert!(ns >= 1_900_000, "{ns}");
    /// ```
    pub fn delta_ns(self, earlier: u64, later: u64) -> u64 {
        let d = later.saturating_sub(earlier);
        match self {
            ClockDomain::Tsc => (d as f64 * ns_per_tick()) as u64,
            ClockDomain::Monotonic | ClockDomain::Realtime => d,
        }
    }

    /// This clock now (what a writer on it stamps).
    ///
    /// ```
    /// let clock = tickscope_probe::native_clock();
    /// assert!(clock.now() <= clock.now());
    /// ```
    #[inline(always)]
    pub fn now(self) -> u64 {
        read(self)
    }
}

/// The TSC↔CLOCK_MONOTONIC_RAW pair every rate estimate is measured from.
static ANCHOR: Mutex<Option<(u64, u64)>> = Mutex::new(None);
static RATE: AtomicU64 = AtomicU64::new(0); // f64 bits of ns per tick; 0: not measured yet
static RATE_FINAL: AtomicBool = AtomicBool::new(false);
const RATE_MIN_BASELINE_NS: u64 = 1_000_000;
const RATE_FINAL_BASELINE_NS: u64 = 1_000_000_000;

/// Takes the anchor if nobody has: called when a writer or probe opens, so a conversion later
/// has a baseline as long as the program has run.
pub(crate) fn anchor() {
    let mut a = ANCHOR.lock().unwrap_or_else(|e| e.into_inner());
    if a.is_none() {
        let [tsc, raw, _, _] = calibration_pair(true);
        *a = Some((tsc, raw));
    }
}

fn ns_per_tick() -> f64 {
    if RATE_FINAL.load(Ordering::Relaxed) {
        return f64::from_bits(RATE.load(Ordering::Relaxed));
    }
    anchor();
    let (tsc0, raw0) = ANCHOR.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or((0, 0));
    let mut pair = calibration_pair(true);
    // A conversion within the first millisecond of the crate's use waits for a baseline that
    // long, once: a rate over less would be off by more than 0.01 %.
    while pair[1].saturating_sub(raw0) < RATE_MIN_BASELINE_NS || pair[0] <= tsc0 {
        std::hint::spin_loop();
        pair = calibration_pair(true);
    }
    let rate = (pair[1] - raw0) as f64 / (pair[0] - tsc0) as f64;
    RATE.store(rate.to_bits(), Ordering::Relaxed);
    if pair[1] - raw0 >= RATE_FINAL_BASELINE_NS {
        RATE_FINAL.store(true, Ordering::Relaxed);
    }
    rate
}

/// Reads the TSC (x86-64), or CLOCK_MONOTONIC ns elsewhere.
///
/// ```
/// let a = tickscope_probe::rdtsc();
/// assert!(tickscope_probe::rdtsc() >= a);
/// ```
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // `_rdtsc` has no preconditions; it is declared unsafe on older toolchains only.
        #[allow(unused_unsafe)]
        // SAFETY: rdtsc reads a counter register; it touches no memory.
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        tsc
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        sys::clock_ns(sys::CLOCK_MONOTONIC)
    }
}

/// `rdtscp`: waits for earlier instructions to retire, so it stamps the *end* of a stage.
///
/// ```
/// let begin = tickscope_probe::rdtsc();
/// let end = tickscope_probe::rdtscp();
/// assert!(end >= begin);
/// ```
#[inline(always)]
pub fn rdtscp() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut aux = 0u32;
        // SAFETY: `aux` is a valid u32 the instruction writes the processor id into.
        unsafe { core::arch::x86_64::__rdtscp(&mut aux) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        rdtsc()
    }
}

/// Whether the host's TSC is invariant: `constant_tsc` (fixed rate across frequency changes) and
/// `nonstop_tsc` (keeps ticking in deep C-states), as `/proc/cpuinfo` lists them. Read once.
///
/// ```
/// if !tickscope_probe::tsc_invariant() {
///     eprintln!("no invariant TSC: writers stamp CLOCK_MONOTONIC");
/// }
/// ```
pub fn tsc_invariant() -> bool {
    static INVARIANT: AtomicU8 = AtomicU8::new(UNREAD);
    read_once(&INVARIANT, || {
        flags_say_invariant(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
    })
}

/// Whether writers stamp with the TSC: x86-64, an invariant TSC (`tsc_invariant`), and the kernel
/// still lists `tsc` among its clocksources. The kernel drops it from that list when its watchdog
/// finds the counters of two CPUs apart or the rate unstable, which the CPU flags cannot tell (it
/// is the check that covers multi-socket hosts; minstant trusts the TSC on the same condition, and
/// the collector decides its host TSC domain by it too). An unreadable list (no /sys in a
/// container) leaves the flags to decide, as the collector does. Read once.
///
/// ```
/// assert!(!tickscope_probe::tsc_trusted() || tickscope_probe::tsc_invariant());
/// ```
pub fn tsc_trusted() -> bool {
    static TRUSTED: AtomicU8 = AtomicU8::new(UNREAD);
    read_once(&TRUSTED, || {
        cfg!(target_arch = "x86_64")
            && tsc_invariant()
            && kernel_keeps_tsc(&std::fs::read_to_string(CLOCKSOURCES).unwrap_or_default())
    })
}

const CLOCKSOURCES: &str = "/sys/devices/system/clocksource/clocksource0/available_clocksource";
const UNREAD: u8 = 0;

/// A host fact that cannot change while the process runs, read on first use: 0 not read yet,
/// 1 false, 2 true. Two threads racing the first read both read the same answer.
fn read_once(cell: &AtomicU8, read: impl FnOnce() -> bool) -> bool {
    match cell.load(Ordering::Relaxed) {
        UNREAD => {
            let fact = read();
            cell.store(1 + fact as u8, Ordering::Relaxed);
            fact
        }
        known => known == 2,
    }
}

pub(crate) fn flags_say_invariant(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, flags)| {
            let mut constant = false;
            let mut nonstop = false;
            for f in flags.split_whitespace() {
                constant |= f == "constant_tsc";
                nonstop |= f == "nonstop_tsc";
            }
            constant && nonstop
        })
        .unwrap_or(false)
}

/// `available_clocksource` names `tsc`, or could not be read (empty).
pub(crate) fn kernel_keeps_tsc(available_clocksources: &str) -> bool {
    let mut sources = available_clocksources.split_whitespace().peekable();
    sources.peek().is_none() || sources.any(|s| s == "tsc")
}

/// The clock a writer stamps with: the TSC where `tsc_trusted`, else CLOCK_MONOTONIC (a TSC whose
/// rate changes under the probe would turn frequency scaling into latency, and one that differs
/// between CPUs would turn a thread migration into latency).
/// `TICKSCOPE_CLOCK=monotonic` chooses CLOCK_MONOTONIC anyway (e.g. a VM that migrates between
/// hosts). Read when a writer opens; the ring declares the choice, so the session shows it.
///
/// ```
/// let clock = tickscope_probe::native_clock();
/// println!("writers stamp with {clock:?}");
/// ```
pub fn native_clock() -> ClockDomain {
    let forced_monotonic = std::env::var_os("TICKSCOPE_CLOCK").map_or(false, |v| v == "monotonic");
    if tsc_trusted() && !forced_monotonic {
        ClockDomain::Tsc
    } else {
        ClockDomain::Monotonic
    }
}

/// Reads `clock` now: the writer's hot-path clock read.
#[inline(always)]
pub(crate) fn read(clock: ClockDomain) -> u64 {
    match clock {
        ClockDomain::Tsc => rdtsc(),
        ClockDomain::Monotonic => sys::clock_ns(sys::CLOCK_MONOTONIC),
        ClockDomain::Realtime => sys::clock_ns(sys::CLOCK_REALTIME),
    }
}

/// Clock-read sequences per calibration entry, at most; the one with the narrowest bracket is kept.
pub(crate) const PAIR_TRIES: usize = 5;
/// A bracket this narrow ends the tries: nothing ran in between (a sequence reads in ~150 ns, a
/// preemption or a hypervisor exit takes microseconds), so a heartbeat stays one sequence long.
pub(crate) const PAIR_NARROW_NS: u64 = 1_000;

/// One calibration entry `(tsc, monotonic_raw, monotonic, realtime)`, built as the C header does:
/// the TSC read between two CLOCK_MONOTONIC_RAW reads, RAW taken at their midpoint and MONOTONIC
/// moved back by the same half-width. A writer without a TSC stores 0 there (as Python does).
///
/// Each sequence is bracketed by a third RAW read after the REALTIME one, and a preemption
/// anywhere in it widens the bracket: the first bracket under `PAIR_NARROW_NS` is kept, else the
/// narrowest of `PAIR_TRIES`. A single sequence preempted for 180 µs put the rate `delta_ns`
/// measures over its first millisecond 9 % off (a CI run whose doctest saw a 2 ms sleep as
/// 1.83 ms), and a ring that never heartbeats has only its two pairs 20 ms apart for the
/// collector's fit.
pub(crate) fn calibration_pair(tsc_clock: bool) -> [u64; 4] {
    tightest(|| {
        let raw0 = sys::clock_ns(sys::CLOCK_MONOTONIC_RAW);
        let tsc = if tsc_clock { rdtscp() } else { 0 };
        let raw1 = sys::clock_ns(sys::CLOCK_MONOTONIC_RAW);
        let mono = sys::clock_ns(sys::CLOCK_MONOTONIC);
        let real = sys::clock_ns(sys::CLOCK_REALTIME);
        let raw2 = sys::clock_ns(sys::CLOCK_MONOTONIC_RAW);
        [raw0, tsc, raw1, mono, real, raw2]
    })
}

/// The entry of the first sequence `[raw0, tsc, raw1, mono, real, raw2]` narrower than
/// `PAIR_NARROW_NS`, else of the narrowest of `PAIR_TRIES`.
pub(crate) fn tightest(mut read: impl FnMut() -> [u64; 6]) -> [u64; 4] {
    let mut best = [0; 4];
    let mut best_width = u64::MAX;
    for _ in 0..PAIR_TRIES {
        let [raw0, tsc, raw1, mono, real, raw2] = read();
        let width = raw2.saturating_sub(raw0);
        if width < best_width {
            let half = raw1.saturating_sub(raw0) / 2;
            best = [tsc, raw0 + half, mono.saturating_sub(half), real];
            best_width = width;
        }
        if width < PAIR_NARROW_NS {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_needs_both_flags() {
        assert!(flags_say_invariant("processor: 0\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n"));
        assert!(!flags_say_invariant("flags\t\t: fpu tsc constant_tsc\n"));
        assert!(!flags_say_invariant("flags\t\t: fpu tsc nonstop_tsc_x constant_tsc\n"));
        assert!(!flags_say_invariant(""));
    }

    #[test]
    fn the_tsc_is_trusted_only_while_the_kernel_lists_it() {
        assert!(kernel_keeps_tsc("tsc hpet acpi_pm \n"));
        assert!(kernel_keeps_tsc("kvm-clock tsc\n"));
        assert!(!kernel_keeps_tsc("hpet acpi_pm\n"), "the watchdog dropped tsc: not one clock");
        assert!(!kernel_keeps_tsc("kvm-clock tsc_early\n"));
        assert!(kernel_keeps_tsc(""), "no /sys to read: the CPU flags decide");
    }

    #[test]
    fn the_narrowest_bracket_is_kept() {
        // Sequences [raw0, tsc, raw1, mono, real, raw2], none under PAIR_NARROW_NS: the first was
        // preempted after its TSC read (raw1 late), the second before REALTIME (raw2 late); the
        // third is the narrowest.
        let reads = [
            [2_000, 20, 182_000, 186_000, 190_000, 182_100],
            [4_000, 40, 4_040, 8_040, 12_040, 184_000],
            [3_000, 30, 3_040, 7_040, 11_040, 5_100],
            [1_000, 10, 1_300, 5_300, 9_300, 7_600],
            [5_000, 50, 5_040, 9_040, 13_040, 8_200],
        ];
        let mut next = reads.iter();
        assert_eq!(tightest(|| *next.next().unwrap()), [30, 3_020, 7_020, 11_040]);
        assert!(next.next().is_none(), "no bracket under {PAIR_NARROW_NS} ns: all sequences read");
        let mut next = reads[..2].iter().chain([[6_000, 60, 6_040, 9_040, 13_040, 6_150]].iter());
        assert_eq!(tightest(|| *next.next().unwrap()), [60, 6_020, 9_020, 13_040]);
        assert!(next.next().is_none(), "the first narrow bracket ends the tries");
    }

    #[test]
    fn successive_pairs_move_forward() {
        let [tsc, raw, mono, _] = calibration_pair(true);
        let [tsc2, raw2, mono2, _] = calibration_pair(true);
        assert!(tsc2 > tsc && raw2 > raw && mono2 > mono);
    }

    #[test]
    fn tsc_moves_forward() {
        let a = rdtsc();
        let b = rdtscp();
        assert!(b > a);
    }
}
