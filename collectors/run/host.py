"""Host facts for meta.json: enough to explain a latency number months later.

Every field degrades to None when the host does not tell (containers, VMs, permissions).
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
from pathlib import Path

from tickscope.collectors.rings.clocks import cpu_flags, read_text, tsc_facts


def _first(path: str) -> str | None:
    text = read_text(path)
    return text.strip() if text else None


def cpu_model() -> str | None:
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def governors() -> dict[str, str]:
    out = {}
    for p in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")):
        out[p.parts[-3]] = p.read_text().strip()
    return out


def cpu_mhz() -> list[float]:
    return [
        float(line.split(":")[1])
        for line in (read_text("/proc/cpuinfo") or "").splitlines()
        if line.startswith("cpu MHz")
    ]


def cmdline_value(key: str) -> str | None:
    for token in (read_text("/proc/cmdline") or "").split():
        if token.startswith(key + "="):
            return token.split("=", 1)[1]
    return None


def nic_irq_affinity() -> dict[str, str]:
    """IRQ -> CPUs for interrupts that look like network queues (where /proc shows them)."""
    out = {}
    for line in (read_text("/proc/interrupts") or "").splitlines()[1:]:
        parts = line.split()
        if not parts or not parts[0].rstrip(":").isdigit():
            continue
        name = parts[-1]
        if any(k in name for k in ("eth", "ens", "enp", "mlx", "virtio", "ixgbe", "i40e", "ice")):
            irq = parts[0].rstrip(":")
            aff = _first(f"/proc/irq/{irq}/smp_affinity_list")
            if aff is not None:
                out[f"{irq}:{name}"] = aff
    return out


def thread_context_switches(pid: int) -> dict[str, dict]:
    """Per thread of ``pid``: name, voluntary and involuntary context switches (from /proc)."""
    out = {}
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")) if Path(f"/proc/{pid}/task").exists() else []:
        status = read_text(str(task / "status")) or ""
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        try:
            out[task.name] = {"name": fields.get("Name", "").strip(),
                              "voluntary": int(fields.get("voluntary_ctxt_switches", 0)),
                              "nonvoluntary": int(fields.get("nonvoluntary_ctxt_switches", 0))}  # fmt: skip
        except ValueError:
            continue
    return out


class _Timex(ctypes.Structure):
    # The head of struct timex (linux/timex.h) on 64-bit Linux; the tail is reserved padding.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]  # fmt: skip


_STA_UNSYNC, _STA_NANO = 0x0040, 0x2000


def clock_sync() -> dict | None:
    """The kernel's own view of its REALTIME clock discipline (adjtimex, read-only): whether NTP/PTP
    keeps it synchronised, the offset still being slewed and the estimated/maximum error. A merge
    of sessions from several hosts uses it to say how far their clocks may disagree."""
    try:
        tx = _Timex()
        state = ctypes.CDLL(None, use_errno=True).adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    unit = 1 if tx.status & _STA_NANO else 1000  # offset is in ns with STA_NANO, else us
    return {
        "synchronised": not (tx.status & _STA_UNSYNC) and state != 5,  # 5 = TIME_ERROR
        "offset_ns": int(tx.offset) * unit,
        "esterror_ns": int(tx.esterror) * 1000,
        "maxerror_ns": int(tx.maxerror) * 1000,
    }


def host_facts() -> dict:
    govs = governors()
    mhz = cpu_mhz()
    return {
        "hostname": socket.gethostname(),
        "boot_id": _first("/proc/sys/kernel/random/boot_id"),
        "clock_sync": clock_sync(),
        "kernel": platform.release(),
        "os": _first("/etc/os-release")
        and next(
            (
                line.split("=", 1)[1].strip('"')
                for line in (read_text("/etc/os-release") or "").splitlines()
                if line.startswith("PRETTY_NAME=")
            ),
            None,
        ),  # fmt: skip
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "smt": _first("/sys/devices/system/cpu/smt/active"),
        "clocksource": _first("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "clocksources_available": _first(
            "/sys/devices/system/clocksource/clocksource0/available_clocksource"
        ),
        "tsc": tsc_facts(),
        "governors": sorted(set(govs.values())) or None,
        "cpu_mhz": [round(x) for x in mhz] or None,
        "isolcpus": cmdline_value("isolcpus") or _first("/sys/devices/system/cpu/isolated") or None,
        "nohz_full": cmdline_value("nohz_full"),
        "load_avg": list(os.getloadavg()),
        "perf_event_paranoid": _first("/proc/sys/kernel/perf_event_paranoid"),
        "ptrace_scope": _first("/proc/sys/kernel/yama/ptrace_scope"),
        "transparent_hugepages": _first("/sys/kernel/mm/transparent_hugepage/enabled"),
        "numa_nodes": len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))) or None,
        "nic_irq_affinity": nic_irq_affinity() or None,
        "python": platform.python_version(),
        "hypervisor": "hypervisor" in cpu_flags(),
    }
