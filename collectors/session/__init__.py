"""The session package: the one hinge between collecting and reporting, and all that ``reports/`` imports.

- ``files``: the session directory (file names, format version, the hlog reader and writer,
  ``Session``, ``SessionWriter``, the meta checks, the trace accounting);
- ``hdr``: HDR histograms (bulk ingest bit-exact with ``hdrh``, decode with limits, percentiles);
- ``snapshot``: the per-interval ``Snapshot`` a collector publishes to its observers;
- ``sweep``: a sweep's ``sweep.json`` (its steps, their SLA verdicts, the knee);
- ``units``: the one grammar of rates, durations and latencies, and how a latency is printed.

It imports nothing of ours but itself (pinned by tests/cli/test_layers.py), so a renderer reaching it
reaches nothing of the collector.
"""

from .files import (
    FORMAT_VERSION,
    HICCUP_LOG,
    LATENCY_LOG,
    META,
    PERF_CSV,
    PROFILE,
    SLOWEST,
    SUMMARY,
    WARMUP_LOG,
    HistogramLogWriter,
    Interval,
    Session,
    SessionCounters,
    SessionError,
    SessionWriter,
    check_meta,
    check_slowest,
    check_summary,
    log_anchor,
    parse_hlog,
    read_hlog,
    trace_accounting,
    write_json_atomic,
)
from .snapshot import Snapshot

__all__ = [
    "FORMAT_VERSION",
    "HICCUP_LOG",
    "LATENCY_LOG",
    "META",
    "PERF_CSV",
    "PROFILE",
    "SLOWEST",
    "SUMMARY",
    "WARMUP_LOG",
    "HistogramLogWriter",
    "Interval",
    "Session",
    "SessionCounters",
    "SessionError",
    "SessionWriter",
    "Snapshot",
    "check_meta",
    "check_slowest",
    "check_summary",
    "log_anchor",
    "parse_hlog",
    "read_hlog",
    "trace_accounting",
    "write_json_atomic",
]
