"""A window of traces as Chrome trace-event JSON (Perfetto's UI opens it): one track per writer
thread, each stage a slice on the thread that stamped its end, each trace an async slice on its
own, and counter tracks (hiccups, context switches). Written by the collector for an incident
(collectors/rings/incidents.py); a session-level helper so that reports could render the same.

``ts``/``dur`` are microseconds relative to the session start, with 3 decimals (nanoseconds kept).
"""

from __future__ import annotations


def _us(ns: int) -> float:
    return round(ns / 1000.0, 3)


COUNTER_PID = 0  # the process the counter tracks sit in (no writer has pid 0)


def window_trace_events(traces: list[dict], counters: dict[str, list[tuple[int, float]]], title: str,
                        pause=lambda: None) -> dict:  # fmt: skip
    """``traces``: dicts as in slowest.json (stamps with point, t_rel_ns, writer, pid, tid; the
    first is the breaching one); ``counters``: name -> (t_rel_ns, value) samples; ``pause`` is
    called once per trace (a writer thread gives the GIL back there)."""
    events: list[dict] = []
    threads: set[tuple[int, int]] = set()
    for k, trace in enumerate(traces):
        pause()
        stamps = [s for s in trace["stamps"] if s.get("t_rel_ns") is not None]
        for s in stamps:
            pid, tid = int(s.get("pid") or 1), int(s.get("tid") or s.get("pid") or 1)
            if (pid, tid) not in threads:
                if pid not in {p for p, _ in threads}:
                    events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                                   "args": {"name": f"{s.get('writer') or 'writer'} (pid {pid})"}})  # fmt: skip
                threads.add((pid, tid))
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                               "args": {"name": f"{s.get('writer') or 'writer'} thread {tid}"}})  # fmt: skip
        if not stamps:
            continue
        pid0 = int(stamps[0].get("pid") or 1)
        label = f"{'BREACH ' if k == 0 else ''}trace {trace['trace_id']}"
        args = {"trace_id": trace["trace_id"], "tick_to_trade_ns": trace.get("tick_to_trade_ns")}
        events.append({"ph": "b", "cat": "trace", "name": label, "id": k + 1, "pid": pid0, "tid": 0,
                       "ts": _us(stamps[0]["t_rel_ns"]), "args": args})  # fmt: skip
        events.append({"ph": "e", "cat": "trace", "name": label, "id": k + 1, "pid": pid0, "tid": 0,
                       "ts": _us(stamps[-1]["t_rel_ns"])})  # fmt: skip
        for a, b in zip(stamps, stamps[1:], strict=False):
            pid, tid = int(b.get("pid") or 1), int(b.get("tid") or b.get("pid") or 1)
            events.append({"ph": "X", "cat": "stage", "name": b["point"], "pid": pid, "tid": tid,
                           "ts": _us(a["t_rel_ns"]), "dur": _us(b["t_rel_ns"] - a["t_rel_ns"]),
                           "args": {"trace_id": trace["trace_id"], "from": a["point"], "to": b["point"],
                                    "ns": b.get("stage_ns", b["t_rel_ns"] - a["t_rel_ns"])}})  # fmt: skip
    if counters:
        events.append(
            {"ph": "M", "name": "process_name", "pid": COUNTER_PID, "tid": 0, "args": {"name": "host"}}
        )
    for name, samples in counters.items():
        for t, v in samples:
            events.append(
                {"ph": "C", "name": name, "pid": COUNTER_PID, "tid": 0, "ts": _us(t), "args": {name: v}}
            )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {"title": title, "source": "tickscope"},
    }
