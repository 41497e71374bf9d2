"""Coverage-guided fuzzing (atheris) of what ``tickscope report`` and ``compare`` read from disk:
the HdrHistogram interval log (lines, headers, base64/zlib/varint payloads) and the session's
JSON files (meta.json, summary.json, slowest.json), and two logs compared tag by tag.

    pip install atheris
    python fuzz/fuzz_hlog.py -max_total_time=300 /tmp/tickscope-fuzz-hlog   # a 5-minute campaign

The only exception allowed out is the documented one (SessionError, which the CLI prints as one
line, exit 2); anything else is a crash that atheris reports with the input that caused it. The
first input byte picks the target, so one corpus covers all four. Not run in CI: the bounded
property tests in tests/collectors/test_hlog_properties.py are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports():
    from tickscope.collectors import session
    from tickscope.collectors.session import hdr
    from tickscope.reports import compare, console, perfetto

from hdrh.histogram import HdrHistogram
from rich.console import Console

SEED_LOG = Path("fuzzed.hlog")  # named in error messages only: nothing is written


def seed_log() -> str:
    """A valid two-tag log in two layouts: mutations start from something that parses."""
    rec = hdr.BulkRecorder(hdr.new_histogram())
    out = [
        "#[Histogram log format version 1.3]",
        "#[StartTime: 1700000000.000 (seconds since epoch), 2023-11-14T22:13:20+00:00]",
        "#[BaseTime: 1700000000.000 (seconds since epoch)]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for i in range(3):
        h = hdr.new_histogram()
        rec.record(h, np.array([900 + i, 1_500, 70_000, 3_000_000]))
        out.append(f"Tag=feed,{i}.000,1.000,3.000,{h.encode().decode()}")
        other = HdrHistogram(1000, 3_600 * 10**9, 2)
        other.record_value(100 * 10**9)
        out.append(f"{i}.000,1.000,100000.0,{other.encode().decode()}")
    return "\n".join(out) + "\n"


def check_log(text: str) -> None:
    try:
        intervals, _ = session.parse_hlog(text, SEED_LOG)
        s = session.Session(SEED_LOG, {"name": "fuzz"}, intervals, {}, None, [], [])
        for tag in s.tags:
            hdr.summarize(s.total(tag))
    except session.SessionError as e:
        assert "\n" not in str(e), "an error message must be one line"


def check_compare(text: str) -> None:
    """Two logs (split at a form feed) compared tag by tag, as ``tickscope compare a.hlog b.hlog``."""
    compare.RESAMPLES = 50  # the statistics are not under test here, the reading is
    base_text, _, cand_text = text.partition("\f")
    try:
        sides = []
        for part in (base_text, cand_text):
            intervals, _ = session.parse_hlog(part, SEED_LOG)
            sides.append([session.Session(SEED_LOG, {"name": "fuzz"}, intervals, {}, None, [], [])])
        common = [t for t in sides[0][0].tags if t in sides[1][0].intervals]
        for tag in common:
            compare.compare_tag(sides[0], sides[1], tag, compare.DEFAULT_THRESHOLDS, np.random.default_rng(1))
    except session.SessionError as e:
        assert "\n" not in str(e), "an error message must be one line"


def check_payload(data: bytes) -> None:
    try:
        h = hdr.decode_histogram(data)
    except hdr.HistogramDecodeError:
        return
    hdr.summarize(h)
    h.encode()


def check_json(data: bytes) -> None:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return
    warnings: list[str] = []
    meta = session.check_meta(raw, warnings)
    summary = session.check_summary(raw if isinstance(raw, dict) else None, warnings)
    slowest = session.check_slowest(raw if isinstance(raw, list) else None, warnings)
    s = session.Session(SEED_LOG, meta, {}, {}, summary, slowest, warnings)
    Console(file=open("/dev/null", "w"), width=100).print(console.render(s))  # noqa: SIM115
    json.dumps(perfetto.trace_events(s))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target, body = data[0] % 4, data[1:]
    if target == 0:
        check_log(body.decode("utf-8", errors="replace"))
    elif target == 1:
        check_payload(body)
    elif target == 2:
        check_json(body)
    else:
        check_compare(body.decode("utf-8", errors="replace"))


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and not any(corpus.glob("*")):
        corpus.mkdir(parents=True, exist_ok=True)
        log = seed_log()
        (corpus / "log").write_bytes(b"\x00" + log.encode())
        payload = log.split("\n")[4].rsplit(",", 1)[1]
        (corpus / "payload").write_bytes(b"\x01" + payload.encode())
        (corpus / "compare").write_bytes(b"\x03" + (log + "\f" + log.replace("Tag=feed", "Tag=x")).encode())
        (corpus / "meta").write_bytes(b"\x02" + json.dumps({"stages": [{"name": "a", "from": "x", "to": "y"}],
                                                              "counters": {"produced": 1}}).encode())  # fmt: skip
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
