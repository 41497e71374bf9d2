"""Live export of stage latencies to Prometheus: native histograms (protobuf) and a text fallback.

``GET /metrics`` serves, per stage and for tick_to_trade, ``tickscope_latency_seconds`` labelled
``host``, ``pipeline``, ``stage``, plus the counters and gauges the shipped alerting rules and
dashboard need (``collectors/side/alerting.py``, ``dashboard.py``). Per dimension value (venue,
symbol, ...), ``tickscope_dimension_latency_seconds`` with the same labels plus ``dimension`` (the
slicing) and one label per dimension: its series are the collector's own per-value histograms, so
the cardinality is the collector's cap (``--dimension-cap``: that many values per slicing, the
most frequent of the warm-up, then first come; the rest one series, value ``other``). A value
never moves between its own series and ``other``, so every series' counts only grow. The histograms are the
session's cumulative (post-warm-up) totals, so Prometheus's ``histogram_quantile`` over the latest
sample is the session's percentile, and ``rate()``/``increase()`` windows work as for any counter.

Series identity. ``host`` and ``pipeline`` (the run's name: ``--name``, else the command's or the
bundled pipeline's) stay the same when the pipeline is restarted, so a restart continues the same
series (counters reset, which ``rate``/``increase`` handle) instead of starting new ones: a label
whose value changes every run would grow Prometheus's index by a series set per run and break
every panel and alert at each restart. The session that is running is told by an info metric,
``tickscope_session_info{session=...} 1``, joined on ``host``/``pipeline`` when wanted.

Precision. Schema 8 is the finest Prometheus allows: bucket ``i`` is ``(2^((i-1)/256), 2^(i/256)]``
seconds, 0.271 % wide, against HDR's 0.1 % at 3 significant digits. Each HDR bucket's count moves
whole into the exponential bucket that holds the HDR bucket's highest equivalent value (the value
tickscope reports as a percentile); nothing is split or interpolated. Counts keep their order, so
the sample at any rank lies in the same exponential bucket as tickscope's value for that rank, and
``histogram_quantile`` (which interpolates inside that bucket) is within 2^(1/256) - 1 = 0.271 %
of it. Both rank at ceil(q*N) (``hdr.percentile_rank``), so that value is the summary's pXX.

Why hand-encoded protobuf: the exposition needs five small messages (MetricFamily, Metric,
LabelPair, Counter, Histogram with BucketSpan), a page of varint code; the ``protobuf`` package
would add a compiled dependency (and version conflicts in users' environments) for that.
Field numbers are those of io.prometheus.client's metrics.proto.

Cost to the collector: once per interval its thread copies the totals' counts (``after_poll``), a
memcpy per stage; converting to exponential buckets and encoding happen at scrape time in the
server's threads, once per published snapshot, and not at all if nobody scrapes.

Clients are strangers: each connection is served in a thread of its own, at most
``MAX_CONNECTIONS`` at once and each for at most ``CONNECTION_DEADLINE_S`` (request in, response
out). A client that sends half a request holds one slot until its deadline, never the server, and
the end of the run hangs up on every connection still open, so the run ends on time whatever
clients do. Bursts wait in the kernel's listen queue (``LISTEN_BACKLOG``); a connection that finds
no free slot within ``SLOT_WAIT_S`` is closed unserved. Both are counted in meta.json.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
from hdrh.histogram import HdrHistogram

from tickscope.collectors.run.host import clock_sync
from tickscope.collectors.session.dimensions import parse_tag, shown
from tickscope.collectors.session.hdr import bucket_values, counts_view, highest_equivalent_values
from tickscope.collectors.side import Conclusion, SideCollectorBase, SideError

SCHEMA = 8
BUCKET_GROWTH = 2.0 ** (2.0**-SCHEMA)  # 1.00271
RELATIVE_ERROR_BOUND = BUCKET_GROWTH - 1.0
SPAN_GAP = 4  # empty buckets sent as zeros rather than starting a new span
PROTOBUF_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Classic buckets for text-only scrapers: a fixed 1-2-5 ladder, so rate() sees stable series.
CLASSIC_BOUNDS_NS = [m * 10**e for e in range(2, 10) for m in (1, 2, 5)] + [10**10]

COUNTERS = (  # (metric, counter key in SessionCounters/extra, help)
    ("tickscope_records_produced_total", "produced", "Probe records written by the subject."),
    ("tickscope_records_drained_total", "drained", "Probe records read by the collector."),
    ("tickscope_records_dropped_total", "dropped_ring_full", "Records dropped on a full ring."),
    ("tickscope_traces_complete_total", "traces_complete", "Traces with every stamp."),
    ("tickscope_traces_incomplete_total", "traces_incomplete", "Traces missing stamps."),
    ("tickscope_traces_seen_total", "traces_seen", "Traces closed by the correlator: recorded or set aside."),
    ("tickscope_traces_clock_skew_total", "traces_clock_skew", "Traces set aside: a negative stage."),
    ("tickscope_feed_gaps_total", "feed_gaps", "Market-data sequence gaps seen by the feed handler."),
    ("tickscope_orders_sent_total", "orders_sent", "Orders sent by the trader."),
    ("tickscope_orders_acked_total", "orders_acked", "Orders acknowledged by the venue."),
    ("tickscope_orders_rejected_total", "orders_rejected", "Orders rejected (venue or risk)."),
    ("tickscope_writers_died_total", "writers_died", "Ring writers that ended without closing their ring."),
    ("tickscope_order_stalls_total", "order_stalls", "Order sessions stalled: orders unanswered while the venue still sends."),
    ("tickscope_orders_gap_filled_total", "orders_gap_filled",
     "Orders the venue never got: their FIX numbers were gap-filled at its ResendRequest."),
)  # fmt: skip
SESSION_INFO = "tickscope_session_info"
SESSION_START = "tickscope_session_start_time_seconds"
CLOCK_SYNCHRONISED = "tickscope_clock_synchronised"
CLOCK_ERROR = "tickscope_clock_estimated_error_seconds"
GAUGE_HELP = {
    SESSION_INFO: "The session this collector is writing (its name in the session label); always 1.",
    SESSION_START: "When the session started, Unix seconds: a restart shows as a step.",
    CLOCK_SYNCHRONISED: "1 when the kernel says NTP/PTP keeps REALTIME synchronised (adjtimex), else 0.",
    CLOCK_ERROR: "The kernel's estimated error of REALTIME (adjtimex esterror), seconds.",
}


class ExporterError(SideError):
    """The endpoint cannot be served: one line naming the address and what to do."""


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); a bare port listens on all addresses."""
    host, port = "0.0.0.0", text.strip()
    if port.startswith("["):
        host, _, port = port[1:].partition("]:")
    elif ":" in port:
        host, _, port = port.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ExporterError(
            f"--prometheus {text!r} is not an address (expected [HOST:]PORT, e.g. 9464 or 127.0.0.1:9464)"
        )
    return host or "0.0.0.0", int(port)


# -- HDR -> exponential buckets ------------------------------------------------------------------------
_NATIVE_INDEX_CACHE: dict = {}


def native_index_of_hdr(hist: HdrHistogram) -> np.ndarray:
    """For every HDR counts index: the schema-8 bucket index (of seconds) holding its highest
    equivalent value. Cached per layout: the only per-interval work is a gather and a bincount."""
    key = (hist.counts_len, hist.unit_magnitude, hist.sub_bucket_half_count_magnitude)
    if key not in _NATIVE_INDEX_CACHE:
        seconds = np.maximum(highest_equivalent_values(hist), 1).astype(np.float64) / 1e9
        _NATIVE_INDEX_CACHE[key] = native_index(seconds)
    return _NATIVE_INDEX_CACHE[key]


def native_index(seconds: np.ndarray) -> np.ndarray:
    """Schema-8 bucket index of each value: the i with 2^((i-1)/256) < v <= 2^(i/256)."""
    idx = np.ceil(np.log2(seconds) * (1 << SCHEMA)).astype(np.int64)
    # log2 rounding can put a value one bucket off at a boundary: correct against the exact bounds.
    upper = np.exp2(idx / (1 << SCHEMA))
    idx = np.where(seconds > upper, idx + 1, idx)
    lower = np.exp2((idx - 1) / (1 << SCHEMA))
    return np.where(seconds <= lower, idx - 1, idx)


def native_bucket_bounds(index: int) -> tuple[float, float]:
    return 2.0 ** ((index - 1) / (1 << SCHEMA)), 2.0 ** (index / (1 << SCHEMA))


@dataclass(frozen=True)
class NativeHistogram:
    """A histogram in schema-8 buckets: sorted indexes with their counts (non-zero only)."""

    indexes: np.ndarray
    counts: np.ndarray
    count: int
    sum_s: float
    classic: list[int]  # cumulative counts at CLASSIC_BOUNDS_NS (then +Inf = count)


_TABLES: dict = {}


def _layout_tables(hist: HdrHistogram):
    key = (hist.counts_len, hist.unit_magnitude, hist.sub_bucket_half_count_magnitude)
    if key not in _TABLES:
        lowest, size = bucket_values(hist)
        _TABLES[key] = (native_index_of_hdr(hist), highest_equivalent_values(hist),
                        (lowest + (size >> 1)).astype(np.float64) / 1e9)  # fmt: skip
    return _TABLES[key]


def to_native(
    hist: HdrHistogram, counts: np.ndarray | None = None, total: int | None = None
) -> NativeHistogram:
    """``hist`` in schema-8 buckets (``counts``/``total``: a copy of its counts taken earlier)."""
    counts = counts_view(hist) if counts is None else counts
    total = hist.total_count if total is None else total
    nz = np.flatnonzero(counts)
    c = counts[nz]
    native_map, highest_all, middle_s = _layout_tables(hist)
    native = native_map[nz]  # non-decreasing: the map is monotonic
    start = np.flatnonzero(np.diff(native, prepend=-(1 << 62)))
    uniq = native[start]
    summed = np.add.reduceat(c, start) if c.size else c
    sum_s = float(np.dot(middle_s[nz], c))  # hdrh's mean convention: each value at its bucket's middle
    highest = highest_all[nz]
    cum = np.cumsum(c)
    pos = np.searchsorted(highest, CLASSIC_BOUNDS_NS, side="right")
    classic = [int(cum[p - 1]) if p else 0 for p in pos]
    return NativeHistogram(uniq, summed, int(total), sum_s, classic)


# -- protobuf ----------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Concatenated varints of non-negative int64 values, vectorised (a scrape holds thousands)."""
    v = values.astype(np.uint64)
    nbytes = np.ones(v.size, np.int64)
    for k in range(1, 10):
        nbytes += v >= np.uint64(1 << (7 * k))
    out = np.empty(int(nbytes.sum()), np.uint8)
    offsets = np.cumsum(nbytes) - nbytes
    for k in range(int(nbytes.max()) if v.size else 0):
        sel = nbytes > k
        byte = (v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (nbytes[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[offsets[sel] + k] = (byte | more).astype(np.uint8)
    return out.tobytes()


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _key(field_no: int, wire: int) -> bytes:
    return _varint((field_no << 3) | wire)


def _bytes_field(field_no: int, payload: bytes) -> bytes:
    return _key(field_no, 2) + _varint(len(payload)) + payload


def _double_field(field_no: int, value: float) -> bytes:
    return _key(field_no, 1) + struct.pack("<d", value)


def _uint_field(field_no: int, value: int) -> bytes:
    return _key(field_no, 0) + _varint(value)


def _labels(labels: dict[str, str]) -> bytes:
    return b"".join(
        _bytes_field(1, _bytes_field(1, k.encode()) + _bytes_field(2, v.encode())) for k, v in labels.items()
    )


def encode_native_histogram(h: NativeHistogram) -> bytes:
    """io.prometheus.client.Histogram: sample_count=1, sample_sum=2, schema=5 (sint32),
    zero_threshold=6, zero_count=7, positive_span=12 {offset=1 sint32, length=2}, positive_delta=13."""
    out = [_uint_field(1, h.count), _double_field(2, h.sum_s), _key(5, 0) + _varint(_zigzag(SCHEMA)),
           _double_field(6, 0.0), _uint_field(7, 0)]  # fmt: skip
    idx = h.indexes
    if not idx.size:  # a no-op span marks an empty native histogram (else it would read as classic)
        out.append(_bytes_field(12, b""))
        return b"".join(out)
    # Spans: runs of indexes no more than SPAN_GAP apart, the empty buckets inside sent as zeros (as
    # client_golang does): a zero costs one byte, a new span four. Offset = gap since the previous
    # span's end (the first: its start index).
    breaks = np.flatnonzero(np.diff(idx) > SPAN_GAP + 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [idx.size])) - 1
    run_start = idx[starts]
    lengths = idx[ends] - run_start + 1
    offsets = run_start - np.concatenate(([0], idx[ends[:-1]] + 1))
    span_of = np.cumsum(np.isin(np.arange(idx.size), starts)) - 1
    first_slot = np.cumsum(lengths) - lengths
    dense = np.zeros(int(lengths.sum()), np.int64)
    dense[first_slot[span_of] + idx - run_start[span_of]] = h.counts
    for offset, length in zip(offsets.tolist(), lengths.tolist(), strict=True):
        zz = _zigzag(offset)
        if zz < 128 and length < 128:  # the common case, one byte each: skip the generic encoder
            out.append(bytes((0x62, 4, 0x08, zz, 0x10, length)) if zz else bytes((0x62, 2, 0x10, length)))
        else:
            span = (_key(1, 0) + _varint(zz) if offset else b"") + _uint_field(2, length)
            out.append(_bytes_field(12, span))
    # Buckets between spans are not sent; deltas run over the sent buckets only (packed sint64).
    delta = np.diff(dense, prepend=0)
    out.append(_bytes_field(13, _varints((delta << 1) ^ (delta >> 63))))
    return b"".join(out)


def _family(name: str, help_: str, mtype: int, metrics: list[bytes]) -> bytes:
    body = _bytes_field(1, name.encode()) + _bytes_field(2, help_.encode()) + _uint_field(3, mtype)
    body += b"".join(_bytes_field(4, m) for m in metrics)
    return _varint(len(body)) + body


COUNTER, GAUGE, HISTOGRAM = 0, 1, 4


# -- the published state -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportState:
    labels: dict[str, str]
    histograms: dict[str, NativeHistogram] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    final: bool = False
    # (name, labels beyond the series', value): session info and clock discipline
    gauges: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


LATENCY = "tickscope_latency_seconds"
LATENCY_HELP = "Stage latency (schema-8 native histogram from HDR, bucket width 0.271%), seconds."
# Per dimension value, in a family of its own: a sum over tickscope_latency_seconds (every fleet
# query and shipped alert) would otherwise count each sample once plainly and once per slicing.
DIMENSION_LATENCY = "tickscope_dimension_latency_seconds"
DIMENSION_LATENCY_HELP = ("Stage latency per dimension value (label dimension names the slicing; values beyond "
                          "--dimension-cap are one series, \"other\"), seconds.")  # fmt: skip
RESERVED_LABELS = {"host", "pipeline", "stage", "dimension", "le", "quantile", "job", "instance"}


def label_name(dimension: str) -> str:
    """A dimension as a Prometheus label name: ``venue`` stays, ``msg.type`` is ``msg_type``, and a
    name Prometheus or tickscope already uses (``host``) is ``dim_host``."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", dimension)
    return f"dim_{name}" if name in RESERVED_LABELS or not re.match(r"[a-zA-Z_]", name) else name


def series(tag: str) -> tuple[str, dict[str, str]]:
    """A histogram's tag as (metric family, labels beyond the run's): ``send`` ->
    (LATENCY, {stage: send}); ``send|venue=XNAS`` -> (DIMENSION_LATENCY, {stage: send,
    dimension: venue, venue: XNAS}); a combination names both dimensions (``venue,symbol``)."""
    stage, values = parse_tag(tag)
    if not values:
        return LATENCY, {"stage": stage}
    return DIMENSION_LATENCY, {"stage": stage, "dimension": ",".join(values),
                               **{label_name(d): shown(v) for d, v in values.items()}}  # fmt: skip


def render_protobuf(state: ExportState) -> bytes:
    out = []
    families: dict[str, list[bytes]] = {LATENCY: [], DIMENSION_LATENCY: []}
    for tag, h in state.histograms.items():
        family, labels = series(tag)
        families[family].append(
            _labels({**state.labels, **labels}) + _bytes_field(7, encode_native_histogram(h))
        )
    for family, help_ in ((LATENCY, LATENCY_HELP), (DIMENSION_LATENCY, DIMENSION_LATENCY_HELP)):
        if families[family]:
            out.append(_family(family, help_, HISTOGRAM, families[family]))
    for name, key, help_ in COUNTERS:
        value = float(state.counters.get(key, 0) or 0)
        out.append(
            _family(name, help_, COUNTER, [_labels(state.labels) + _bytes_field(3, _double_field(1, value))])
        )
    for name, extra, value in state.gauges:  # Metric.gauge = 2 {value = 1}
        metric = _labels({**state.labels, **extra}) + _bytes_field(2, _double_field(1, value))
        out.append(_family(name, GAUGE_HELP[name], GAUGE, [metric]))
    return b"".join(out)


def _label_text(labels: dict[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())


def render_text(state: ExportState) -> bytes:
    lines = []
    for family, help_ in (
        (LATENCY, "Stage latency"),
        (DIMENSION_LATENCY, "Stage latency per dimension value"),
    ):
        tags = [t for t in state.histograms if series(t)[0] == family]
        if family == DIMENSION_LATENCY and not tags:
            continue
        lines += [f"# HELP {family} {help_} (classic 1-2-5 buckets; native histogram over protobuf), seconds.",
                  f"# TYPE {family} histogram"]  # fmt: skip
        for tag in tags:
            h = state.histograms[tag]
            lab = _label_text({**state.labels, **series(tag)[1]})
            for bound, cum in zip(CLASSIC_BOUNDS_NS, h.classic, strict=True):
                lines.append(f'{family}_bucket{{{lab},le="{bound / 1e9:.9g}"}} {cum}')
            lines.append(f'{family}_bucket{{{lab},le="+Inf"}} {h.count}')
            lines.append(f"{family}_sum{{{lab}}} {h.sum_s:.9g}")
            lines.append(f"{family}_count{{{lab}}} {h.count}")
    lab = _label_text(state.labels)
    for name, key, help_ in COUNTERS:
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter",
                  f"{name}{{{lab}}} {float(state.counters.get(key, 0) or 0):.17g}"]  # fmt: skip
    for name, extra, value in state.gauges:
        lines += [f"# HELP {name} {GAUGE_HELP[name]}", f"# TYPE {name} gauge",
                  f"{name}{{{_label_text({**state.labels, **extra})}}} {value:.17g}"]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def wants_protobuf(accept: str) -> bool:
    a = accept.replace(" ", "")
    return (
        "application/vnd.google.protobuf" in a
        and "proto=io.prometheus.client.MetricFamily" in a
        and ("encoding=delimited" in a)
    )


def clock_gauges() -> list[tuple[str, dict[str, str], float]]:
    """The kernel's clock discipline now, read at scrape time (once per published state, in the
    server's thread: never on the collector's); none where adjtimex cannot be read."""
    sync = clock_sync()
    if sync is None:
        return []
    return [
        (CLOCK_SYNCHRONISED, {}, float(sync["synchronised"])),
        (CLOCK_ERROR, {}, sync["esterror_ns"] / 1e9),
    ]


# -- the endpoint -------------------------------------------------------------------------------------------
MAX_CONNECTIONS = 64  # served at once: a pair of Prometheus servers and a few dashboards need a handful
LISTEN_BACKLOG = 1024  # a burst of scrapers waits here (the kernel caps it at net.core.somaxconn)
SLOT_WAIT_S = 1.0  # an accepted connection waits this long for a free slot, then is closed unserved
CONNECTION_DEADLINE_S = 10.0  # a connection's whole life, request in and response out (a scrape: ms)


class BoundedHTTPServer(HTTPServer):
    """An HTTPServer that serves each connection in a thread of its own, at most
    ``max_connections`` at once, and hangs up on a connection past its deadline (checked by the
    accept loop between accepts, at least every poll interval) or still open at ``hang_up_all``."""

    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = False

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS,
                 deadline_s: float = CONNECTION_DEADLINE_S):  # fmt: skip
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadline_s = deadline_s
        # Connection -> deadline. A connection leaves it (under the lock) before it is closed, so
        # hanging up under the lock never touches a descriptor number the kernel gave out again.
        self._open: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self.refused = self.timed_out = self.failed = 0
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(timeout=SLOT_WAIT_S):
            self.refused += 1
            self.shutdown_request(request)
            return
        with self._lock:
            self._open[request] = time.monotonic() + self._deadline_s
        try:
            threading.Thread(target=self._serve_connection, args=(request, client_address),
                             name="tickscope-prometheus-conn", daemon=True).start()  # fmt: skip
        except RuntimeError:  # no thread to be had: this client goes unserved, the server goes on
            self._release(request)
            self.refused += 1

    def _serve_connection(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # a client that resets or vanishes mid-request: nothing to report but a count
            with self._lock:
                self.failed += 1
        finally:
            self._release(request)

    def _release(self, request):
        with self._lock:
            self._open.pop(request, None)
        self.shutdown_request(request)
        self._slots.release()

    def service_actions(self):
        now = time.monotonic()
        with self._lock:
            for conn, deadline in self._open.items():
                if deadline <= now:
                    self._open[conn] = math.inf  # counted once; the handler's thread now ends
                    self.timed_out += 1
                    _hang_up(conn)

    def hang_up_all(self):
        with self._lock:
            for conn in self._open:
                _hang_up(conn)

    def handle_error(self, request, client_address):
        with self._lock:  # socketserver would print a traceback to stderr
            self.failed += 1


def _hang_up(conn: socket.socket) -> None:
    """Wake the thread blocked on this connection (its read returns end-of-file) and end it."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class PrometheusExporter(SideCollectorBase):
    """Serves the last published ExportState (see ``BoundedHTTPServer``); it publishes a
    new one (``after_poll``) whenever the collector has rolled an interval (its Snapshot object is replaced then).

    A side collector of the run engine (``collectors/side``): ``prepare`` listens (a port in use
    stops the run before it starts), ``after_poll`` observes, ``conclude`` serves the final totals
    until scraped and returns the exporter's cost for meta.json, ``release`` stops serving."""

    name = "prometheus"
    open_from_prepare = True  # serving from prepare(), before the run starts
    in_side_panel = False

    def __init__(self, listen: str, *, pipeline: str, linger_s: float = 5.0, hold_s: float = 0.0,
                 host: str | None = None):  # fmt: skip
        super().__init__()
        self.listen, self.host, self.pipeline = listen, host, pipeline
        self.linger_s, self.hold_s = linger_s, hold_s
        self.server = None

    def prepare(self, session_name: str) -> None:
        self._open(session_name)
        host, _ = self.address
        print(f"prometheus: serving /metrics on {host}:{self.port} (native histograms, schema {SCHEMA})",
              flush=True)  # fmt: skip

    def _open(self, session: str) -> None:
        self.address = parse_listen(self.listen)
        self.labels = {"host": self.host or socket.gethostname(), "pipeline": self.pipeline}
        self.session_gauges = [(SESSION_INFO, {"session": session}, 1.0), (SESSION_START, {}, time.time())]
        self.state = ExportState(self.labels)
        self._raw, self.state_source = ({}, {}, False), None
        self.scrapes = 0
        self.scrapes_of_final = 0
        self.serve_cpu_s = 0.0
        self.publish_cpu_s = 0.0
        self._seen_live = None
        self._encoded: dict[bool, tuple[ExportState, bytes]] = {}
        self._encoding = threading.Lock()  # many scrapers after one publish: one of them encodes
        self._scraped = threading.Condition()
        self._closed = False
        self.server = self._bind()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="tickscope-prometheus", daemon=True)  # fmt: skip
        self.thread.start()

    def _bind(self) -> BoundedHTTPServer:
        host, port = self.address
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            timeout = CONNECTION_DEADLINE_S  # each read and write; the server bounds the whole connection

            def do_GET(self):  # noqa: N802 - http.server's naming
                exporter._serve(self)

            def do_HEAD(self):  # noqa: N802
                exporter._serve(self, body=False)

            def version_string(self):  # not "BaseHTTP/0.6 Python/3.x": which Python runs here is ours
                return "tickscope"

            def log_message(self, *args):  # scrapes are not news
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (BoundedHTTPServer,), {"address_family": family})
        where = f"{'[' + host + ']' if ':' in host else host}:{port}"
        try:
            return server_class((host, port), Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ExporterError(
                    f"--prometheus {where}: port {port} is in use (pick another port)"
                ) from None
            if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise ExporterError(f"--prometheus {where}: {host} is not an address of this host "
                                    "(use 0.0.0.0 or one of its interfaces)") from None  # fmt: skip
            if isinstance(e, socket.gaierror):
                raise ExporterError(f"--prometheus {where}: cannot resolve {host!r}") from None
            raise ExporterError(f"--prometheus {where}: cannot listen ({e.strerror or e})") from None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def after_poll(self, collector) -> None:
        """Called by the collector loop after each poll; does work only after an interval roll."""
        if collector.snapshot is self._seen_live:
            return
        self._seen_live = collector.snapshot
        self.publish_totals(collector)

    def publish_totals(self, collector, final: bool = False) -> None:
        """Copy the totals (a memcpy per stage; the collector mutates them in place at the next
        roll). Converting and encoding happen at scrape time in the server thread, and only if
        someone scrapes."""
        t0 = time.thread_time()
        raw = {tag: (h, counts_view(h).copy(), h.total_count) for tag, h in collector.totals().items()
               if h.total_count}  # fmt: skip
        self._raw = (raw, dict(collector.snapshot.counters), final)
        self.publish_cpu_s += time.thread_time() - t0

    def _current_state(self) -> ExportState:
        raw = self._raw
        if self.state_source is not raw:
            hists, counters, final = raw
            natives = {tag: to_native(h, counts, total) for tag, (h, counts, total) in hists.items()}
            gauges = self.session_gauges + clock_gauges()
            self.state, self.state_source = ExportState(self.labels, natives, counters, final, gauges), raw
        return self.state

    def _serve(self, req: BaseHTTPRequestHandler, body: bool = True) -> None:
        """GET (``body``) or HEAD: the same headers, so a HEAD says what a GET would send."""
        t0 = time.thread_time()
        if req.path.split("?")[0] not in ("/metrics", "/"):
            req.send_error(404, "tickscope serves /metrics")
            return
        proto = wants_protobuf(req.headers.get("Accept", ""))
        with self._encoding:
            state = self._current_state()
            cached = self._encoded.get(proto)
            if cached is None or cached[0] is not state:  # encode once per published state, not per scrape
                encoded = render_protobuf(state) if proto else render_text(state)
                cached = self._encoded[proto] = (state, encoded)
        payload, ctype = cached[1], PROTOBUF_TYPE if proto else TEXT_TYPE
        try:
            req.send_response(200)
            req.send_header("Content-Type", ctype)
            req.send_header("Content-Length", str(len(payload)))
            req.end_headers()
            if body:
                req.wfile.write(payload)
        except OSError:
            return
        finally:
            with self._scraped:
                self.serve_cpu_s += time.thread_time() - t0
        if not body:  # a HEAD carries no totals: the final state is not delivered by it
            return
        with self._scraped:
            self.scrapes += 1
            if state.final:
                self.scrapes_of_final += 1
            self._scraped.notify_all()

    def finish(self, collector, linger_s: float, hold_s: float = 0.0) -> bool:
        """Publish the session's final totals and serve them until scraped once (at most linger_s):
        the last interval would otherwise never reach Prometheus. Then keep serving until hold_s
        after the end, so that hosts ending at nearly the same time are all up, with their final
        totals, at one instant a fleet-wide query can use. True if the final state was scraped."""
        self.publish_totals(collector, final=True)
        end = time.monotonic()
        try:
            with self._scraped:
                while not self.scrapes_of_final:
                    left = end + linger_s - time.monotonic()
                    if left <= 0:
                        break
                    self._scraped.wait(left)
            time.sleep(max(0.0, end + hold_s - time.monotonic()))
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for scrapers, the session is saved
            pass
        return self.scrapes_of_final > 0

    def conclude(self, collector) -> Conclusion:
        """End of a run: serve the final totals until scraped, stop serving; the exporter's cost
        for meta.json and warnings."""
        scraped = self.finish(collector, self.linger_s, self.hold_s)
        self.close()
        warnings = self.connection_warnings()
        if not scraped:
            warnings.append(f"prometheus: the final totals were not scraped within {self.linger_s:g}s of the end "
                            "(Prometheus holds the state of its last scrape; the session on disk is complete)")  # fmt: skip
        return Conclusion(warnings, self.stats(collector.records_drained()))

    def release(self) -> None:
        self.close()

    def connection_warnings(self) -> list[str]:
        s = self.server
        if not s.refused and not s.timed_out:
            return []
        return [f"prometheus: {s.refused} connection(s) closed unserved (all {MAX_CONNECTIONS} slots busy for "
                f"{SLOT_WAIT_S:g}s) and {s.timed_out} cut at the {CONNECTION_DEADLINE_S:g}s deadline "
                "(clients that were too many or too slow; see meta.json prometheus)"]  # fmt: skip

    def close(self) -> None:
        """Stop accepting (within the poll interval, or SLOT_WAIT_S if the accept loop waits for a
        slot), hang up on every connection still open, release the port. Once; then nothing."""
        if self.server is None or self._closed:
            return
        self._closed = True
        self.server.shutdown()
        self.server.hang_up_all()
        self.server.server_close()

    def stats(self, records: int) -> dict:
        cpu = self.serve_cpu_s + self.publish_cpu_s
        return {"listen": f"{self.address[0]}:{self.port}", "scrapes": self.scrapes,
                "final_scraped": self.scrapes_of_final > 0, "publish_cpu_s": round(self.publish_cpu_s, 4),
                "serve_cpu_s": round(self.serve_cpu_s, 4),
                "ns_per_record": round(cpu * 1e9 / records, 2) if records else None,
                "connections_refused": self.server.refused, "connections_timed_out": self.server.timed_out,
                "connections_failed": self.server.failed}  # fmt: skip
