"""Coverage-guided fuzzing (atheris) of ``tickscope merge``: the session loader it shares with
``report`` and ``compare`` (``Session.load``: meta.json, latency.hlog, warmup.hlog, slowest.json,
summary.json) and what merge does with what it loaded (StartTime/BaseTime anchors, layouts, clock
offsets, counters, slowest traces), written into a merged session that must load again.

    pip install atheris
    python fuzz/fuzz_merge.py -max_total_time=300

One input is one session directory: its files are the input split at form feeds (\\f), in the
order of ``FILES``; it is merged with a clean session of another host (``a=`` / ``b=`` labels, so
overlap refusals do not hide the rest). The only exception allowed out is SessionError (MergeError
is one), which the CLI prints as one line, exit 2; anything else is a crash that atheris reports
with the input that caused it. Not run in CI: tests/collectors/test_damaged_files.py holds the known shapes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import atheris
import numpy as np
from _harness import run

with atheris.instrument_imports():
    from tickscope.collectors.session import hdr, merge, session

FILES = ("meta.json", "latency.hlog", "slowest.json", "summary.json", "warmup.hlog")
WORK = Path(tempfile.mkdtemp(prefix="tickscope-fuzz-merge-"))


def seed_log(tags=("feed", "tick_to_trade"), digits=3) -> str:
    rec = hdr.BulkRecorder(hdr.new_histogram(digits=digits))
    out = [
        "#[Histogram log format version 1.3]",
        "#[StartTime: 1700000000.000 (seconds since epoch), 2023-11-14T22:13:20+00:00]",
        "#[BaseTime: 1700000000.000 (seconds since epoch)]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for i in range(3):
        for tag in tags:
            h = hdr.new_histogram(digits=digits)
            rec.record(h, np.array([900 + i, 1_500, 70_000, 3_000_000]))
            out.append(f"Tag={tag},{i}.000,1.000,3.000,{h.encode().decode()}")
    return "\n".join(out) + "\n"


def seed_meta(host: str) -> dict:
    return {
        "name": host,
        "status": "complete",
        "interval_s": 1.0,
        "start_epoch_s": 1_700_000_000.0,
        "host": {"hostname": host, "boot_id": "boot-" + host,
                 "clock_sync": {"synchronised": True, "offset_ns": 1000, "esterror_ns": 10, "maxerror_ns": 20}},
        "clocks": {"realtime_minus_monotonic_ns": 10**18, "realtime_offset_uncertainty_ns": 1000},
        "points": ["md.rx", "order.tx"],
        "stages": [{"name": "feed", "from": "md.rx", "to": "order.tx"}],
        "trade_point": "order.tx",
        "counters": {"produced": 12, "drained": 12},
    }  # fmt: skip


SLOWEST = [
    {"trace_id": 7, "tick_to_trade_ns": 5000, "stamps": [{"point": "md.rx", "ts_ns": 1, "t_rel_ns": 0}]}
]


def seed_files(host: str) -> list[bytes]:
    return [json.dumps(seed_meta(host)).encode(), seed_log().encode(), json.dumps(SLOWEST).encode(), b"",
            seed_log(("tick_to_trade",), 2).encode()]  # fmt: skip


CLEAN = WORK / "clean"
CLEAN.mkdir()
for name, body in zip(FILES, seed_files("clean"), strict=True):
    (CLEAN / name).write_bytes(body)


def test_one_input(data: bytes) -> None:
    d, out = WORK / "damaged", WORK / "merged"
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    d.mkdir()
    for name, body in zip(FILES, data.split(b"\f"), strict=False):
        if body:  # an empty part: that file is absent
            (d / name).write_bytes(body)
    try:
        merge.merge([f"a={CLEAN}", f"b={d}"], out)
    except session.SessionError as e:
        assert "\n" not in str(e), "an error message must be one line"
        assert not out.exists(), "a refused merge leaves no directory behind"
        return
    s = session.Session.load(out)  # what merge wrote is a session every command reads
    for tag in s.tags:
        hdr.summarize(s.total(tag))


def main() -> None:
    run("merge", [b"\f".join(seed_files("fuzzed"))], test_one_input)


if __name__ == "__main__":
    main()
