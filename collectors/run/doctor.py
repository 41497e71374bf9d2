"""``tickscope doctor``: is this host fit to measure latency? Each finding comes with its fix.

Like pyperf's ``system show``: what on this host spoils measurements, and what to do about it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass

from tickscope.collectors.rings.clocks import tsc_facts
from tickscope.collectors.run.host import cmdline_value, governors, host_facts


@dataclass
class Finding:
    name: str
    status: str  # ok | warn | fail
    value: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def timer_cost_ns(n: int = 200_000) -> float:
    clock = time.perf_counter_ns
    best = float("inf")
    for _ in range(3):
        t0 = clock()
        for _ in range(n):
            clock()
        best = min(best, (clock() - t0) / n)
    return best


def perf_hardware_counters() -> tuple[bool | None, str]:
    """(hardware counters usable?, what perf said). None when perf is absent."""
    perf = shutil.which("perf")
    if perf is None:
        return None, "perf not found"
    try:
        out = subprocess.run(
            [perf, "stat", "-x,", "-e", "instructions", "true"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    text = out.stderr.strip().splitlines()
    line = text[-1] if text else ""
    if out.returncode != 0:
        return False, line or f"exit code {out.returncode}"
    fields = line.split(",")  # perf stat -x, CSV: value,unit,event,run time,percentage,...
    if fields and fields[0] in ("<not supported>", "<not counted>"):
        event = fields[2] if len(fields) > 2 and fields[2] else "instructions"
        return False, f"perf stat: {event} {fields[0].strip('<>')}"  # a phrase, not the raw CSV row
    return True, line


def run_checks(quick: bool = False) -> list[Finding]:
    facts = host_facts()
    tsc = tsc_facts()
    out: list[Finding] = []
    cs = facts["clocksource"] or "unknown"
    out.append(Finding("clocksource", "ok" if cs == "tsc" else "warn", cs,
                       "" if cs == "tsc" else "boot with clocksource=tsc tsc=reliable (vDSO clock reads stay in user space)"))  # fmt: skip
    out.append(Finding("invariant TSC", "ok" if tsc["invariant"] else "warn",
                       f"constant_tsc={tsc['constant_tsc']} nonstop_tsc={tsc['nonstop_tsc']}",
                       "" if tsc["invariant"] else "TSC stamps drift with frequency/C-states here: prefer CLOCK_MONOTONIC probes"))  # fmt: skip
    govs = sorted(set(governors().values()))
    if not govs:
        out.append(Finding("CPU governor", "warn", "not visible (VM or no cpufreq)",
                           "on bare metal: cpupower frequency-set -g performance"))  # fmt: skip
    else:
        ok = govs == ["performance"]
        out.append(Finding("CPU governor", "ok" if ok else "warn", ",".join(govs),
                           "" if ok else "cpupower frequency-set -g performance"))  # fmt: skip
    iso = facts["isolcpus"]
    out.append(Finding("isolated CPUs", "ok" if iso else "warn", iso or "none",
                       "" if iso else "boot with isolcpus=<cpus> nohz_full=<cpus> and pin the trader there (taskset -c)"))  # fmt: skip
    paranoid = facts["perf_event_paranoid"]
    is_root = __import__("os").geteuid() == 0  # CAP_PERFMON / CAP_SYS_ADMIN: paranoia does not apply
    p_ok = is_root or (paranoid is not None and int(paranoid) <= 1)
    out.append(Finding("perf_event_paranoid", "ok" if p_ok else "warn", f"{paranoid}{' (root)' if is_root else ''}",
                       "" if p_ok else "sysctl kernel.perf_event_paranoid=1 (or run as root) for perf stat"))  # fmt: skip
    hw, said = perf_hardware_counters()
    if hw is None:
        out.append(Finding("perf", "warn", "not installed", "apt-get install linux-perf"))
    else:
        out.append(Finding("perf hardware counters", "ok" if hw else "warn", "supported" if hw else said[:80],
                           "" if hw else "a VM without a virtual PMU: software counters only (cycles/instructions unavailable)"))  # fmt: skip
    scope = facts["ptrace_scope"]
    pyspy = shutil.which("py-spy")
    root = __import__("os").geteuid() == 0
    ok = pyspy is not None and (root or scope in (None, "0"))
    out.append(Finding("py-spy", "ok" if ok else "warn",
                       f"{'found' if pyspy else 'missing'}, ptrace_scope={scope}, {'root' if root else 'not root'}",
                       "" if ok else ("pip install py-spy" if not pyspy else "sysctl kernel.yama.ptrace_scope=0 or run as root")))  # fmt: skip
    cost = timer_cost_ns(50_000 if quick else 200_000)
    out.append(Finding("timer cost", "ok" if cost < 100 else "warn", f"{cost:.0f} ns per perf_counter_ns()",
                       "" if cost < 100 else "slow clock reads: check the clocksource (hpet/acpi_pm are slow)"))  # fmt: skip
    res = time.clock_getres(time.CLOCK_MONOTONIC)
    out.append(Finding("clock resolution", "ok" if res <= 1e-6 else "warn", f"{res * 1e9:.0f} ns", ""))
    thp = facts["transparent_hugepages"] or ""
    out.append(Finding("transparent hugepages", "ok" if "[always]" not in thp else "warn", thp or "unknown",
                       "" if "[always]" not in thp else "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (khugepaged stalls)"))  # fmt: skip
    nohz = cmdline_value("nohz_full")
    out.append(Finding("nohz_full", "ok" if nohz else "warn", nohz or "none",
                       "" if nohz else "boot with nohz_full=<isolated cpus> to stop the tick on them"))  # fmt: skip
    if facts.get("hypervisor"):
        out.append(Finding("virtualisation", "warn", "running under a hypervisor",
                           "steal time and virtual timers add tail latency: measure on bare metal for production numbers"))  # fmt: skip
    return out
