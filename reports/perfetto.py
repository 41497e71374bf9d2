"""The slowest traces as Chrome trace-event JSON, which Perfetto's UI (ui.perfetto.dev) opens.

Trace-event ``ts``/``dur`` are always microseconds: they are written relative to the session
start with 3 decimals, which keeps nanoseconds. Each trace gets its own small sequential ``tid``
lane (named by an ``M`` event) in the process of the writer that stamped it, so slices of
different traces never overlap on a lane and the stage slices nest inside their trace's slice.
Flow events link a trace's consecutive stages, also across processes.
"""

from __future__ import annotations

import json

from tickscope.collectors.session import Session


def _us(ns: int) -> float:
    return round(ns / 1000.0, 3)


def trace_events(session: Session) -> dict:
    stages = {s["to"]: s["name"] for s in session.meta.get("stages", [])}
    trade_point = session.meta.get("trade_point")
    events: list[dict] = []
    named_pids: set[int] = set()
    flow_id = 1
    for lane, trace in enumerate(session.slowest, start=1):
        stamps = [s for s in trace["stamps"] if s.get("t_rel_ns") is not None]
        if len(stamps) < 2:
            continue
        for s in stamps:
            pid = int(s.get("pid") or 1)
            if pid not in named_pids:
                named_pids.add(pid)
                events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                               "args": {"name": f"{s.get('writer') or 'writer'} (pid {pid})"}})  # fmt: skip
        first_pid = int(stamps[0].get("pid") or 1)
        lanes = {int(s.get("pid") or 1) for s in stamps}
        for pid in lanes:
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": lane,
                           "args": {"name": f"#{lane} trace {trace['trace_id']}"}})  # fmt: skip
            events.append(
                {
                    "ph": "M",
                    "name": "thread_sort_index",
                    "pid": pid,
                    "tid": lane,
                    "args": {"sort_index": lane},
                }
            )
        t0 = stamps[0]["t_rel_ns"]
        end = next((s["t_rel_ns"] for s in stamps if s["point"] == trade_point), stamps[-1]["t_rel_ns"])
        events.append({"ph": "X", "name": f"tick_to_trade {trace['trace_id']}", "cat": "trace", "pid": first_pid,
                       "tid": lane, "ts": _us(t0), "dur": _us(end - t0),
                       "args": {"trace_id": trace["trace_id"], "tick_to_trade_ns": trace.get("tick_to_trade_ns")}})  # fmt: skip
        prev_slice = None
        for a, b in zip(stamps, stamps[1:], strict=False):
            pid = int(b.get("pid") or 1)
            slice_ev = {"ph": "X", "name": stages.get(b["point"], b["point"]), "cat": "stage", "pid": pid, "tid": lane,
                        "ts": _us(a["t_rel_ns"]), "dur": _us(b["t_rel_ns"] - a["t_rel_ns"]),
                        "args": {"from": a["point"], "to": b["point"], "ns": b["t_rel_ns"] - a["t_rel_ns"]}}  # fmt: skip
            events.append(slice_ev)
            if prev_slice is not None:
                events.append({"ph": "s", "name": "trace", "cat": "flow", "id": flow_id, "pid": prev_slice["pid"],
                               "tid": lane, "ts": prev_slice["ts"]})  # fmt: skip
                events.append({"ph": "f", "bp": "e", "name": "trace", "cat": "flow", "id": flow_id, "pid": pid,
                               "tid": lane, "ts": slice_ev["ts"]})  # fmt: skip
                flow_id += 1
            prev_slice = slice_ev
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"session": session.name, "source": "tickscope"}}  # fmt: skip


def render(session: Session) -> str:
    return json.dumps(trace_events(session))
