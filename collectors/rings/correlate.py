"""Correlation: records of many rings -> per-trace stamp rows -> stage latencies.

A trace is one tick's journey, keyed by its 64-bit trace id. Its stamps are kept as one row of a
matrix with a column per probe point (0 = not reached). Open traces' rows are held, grouped and
chosen for closing by numba kernels (``pending.py``), one pass per batch; closed rows are measured
and judged by two more (``measure.py``), each row touched once, and closed traces that may still
get points wait in a hash (``late_index.py``).

Rules (stated once, used everywhere):
- Points have one pipeline order (``TraceSchema.order``): the merge of the rings' point tables,
  each a partial order. Points no declaration connects are never ordered by timing: the caller
  holds traces back (``TraceSchema.unresolved``) and sets them aside if the order stays open.
- The declared points form a graph (``PathGraph``): each ring's consecutive points are a step of
  a path unless a longer declared path links them. A trace is *complete* when its points step
  along declared edges from a start (a point nothing precedes) without a hole: the prefix of one
  path. Complete traces yield one value per stage on the path they took (the stage ending at a
  point spans from the trace's previous point, named after the point's declared stage) and
  either ``tick_to_trade`` (they reached a trade point) or ``tick_to_decision`` (they stopped
  earlier: a tick that led to no order).
- A trace with a hole, without a start or holding points of two paths is *incomplete*: counted,
  never interpolated.
- Legs: points declared with the leg flag, and every point after them, are stamped once per leg
  (order) of the trace. Rows are kept per (trace id, leg), leg -1 holding the shared points; at
  close, each leg row is measured with its trace's shared stamps as a trace of its own (its own
  tick-to-trade sample), a shared stage counted once per trace. Acks join their leg in the
  ``LateIndex`` by (trace id, leg); a leg that comes after its trace closed joins the shared
  stamps kept in ``late_shared``. Without a declared fan-out every row is a trace (leg -1).
- Dimension value ids (the caller's, a column per dimension) ride with the rows; a leg's are
  its trace's overlaid with its own. ``Closed.rows`` hands them on with every recorded row. The
  trace's own values (attached at shared points: the tick's symbol, never a leg's venue) are
  carried apart as a second matrix (``tdims``) through the joins, so ``Closed.ticks`` gives each
  recorded tick once with them and its shared stages' spans.
- A trace with a negative stage (clocks disagree) is counted as ``clock_skew``, not recorded.
- Every trace (each leg of a fanned-out one) closed is *seen* once and either recorded or set
  aside for one reason (``Closed``):
  ``seen = recorded + incomplete + clock_skew + late_beyond_horizon + evicted + duplicate +
  out_of_range + unordered``. A trace whose stamps arrive in pieces the correlator cannot join
  (evicted, late beyond the horizon) counts once per piece; a late point that joins its trace
  (``late_points``) is part of a trace already seen.
- A trace closes once its final point has arrived, on every leg that has a row (a leg's send
  may come after another leg's ack: a hedge's transmit stamp read late), and a later drain round
  has begun (its other points may sit in a ring drained after the final point's), when nothing
  arrived for it for ``linger_ns`` of collector time, or when the session ends. Linger counts back from the time
  before which every ring has been read (``flush``'s ``read_until_ns``: the collector passes the
  start of the oldest round that drained each ring to its head), never from a clock read after
  the drain: a collector preempted between its drain and its close, or a ring with a backlog,
  would otherwise give a trace up while its next point sits unread.
- It also closes after a later drain round once it is *decided*: a tick record of it left out a
  point that only tick rings declare. A tick ring writes one record per trace, so that point will
  never come, the trade point cannot be reached as a complete trace, and waiting would only hold
  memory (most ticks lead to no order: without this rule they all wait out ``linger_ns``).
- A stage (or tick-to-trade) between two stamps of one TSC domain is their tick difference times
  that domain's rate (its *local* timeline, which re-anchoring never touches). A domain is the
  host's for every ring on a TSC the host keeps one clock (any thread, any process), else one
  ring's. Only a span that crosses clocks goes through the domain's slewed map onto
  CLOCK_MONOTONIC. TSC stamps are therefore held as raw ticks and moved onto the common timeline
  only when a span needs it.
- A trace that closes after reaching its trade point but before its last point (a slow ack, a
  fill) is kept in the ``LateIndex`` for ``late_horizon_ns``: points that arrive later join it
  there and become stage values however late they come. Points after the trade point whose trace
  is not in the index (beyond the horizon, or its trace never completed) are counted as
  ``late_beyond_horizon``, never as incomplete traces.
Because stages telescope, the stages up to the trade point sum to tick-to-trade (exactly when
they are all in one clock domain; otherwise within the drift of a TSC ring's local rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TICK_TO_TRADE = "tick_to_trade"
TICK_TO_DECISION = "tick_to_decision"


def _kernels():
    """The numba kernels of open traces (``pending.py``), imported with the first correlator, not
    with this module: numba maps LLVM (~150 MB of address space), and commands that import this
    module without correlating anything (merge, report, wire) run under tight address-space
    limits. So are the late index's (``late_index.py``) and the flush's (``measure.py``)."""
    from . import pending

    return pending


def warm_kernels() -> None:
    """Compile (or load from the cache) every kernel the correlator runs, once per process."""
    from . import late_index, measure, pending

    for kernels in (pending, late_index, measure):
        kernels.warm()


def _late_index():
    from . import late_index

    return late_index


def _measure():
    from . import measure

    return measure


class DeclarationConflict(ValueError):
    """Two rings declare the pipeline differently. The message is one line naming both rings and the points."""


@dataclass
class TraceSchema:
    """The merged point table: append-only columns, plus the pipeline order over them.

    Each ring's point table is a partial order (each point comes after the one declared before
    it); the pipeline order is the one order consistent with all of them, computed from their
    union alone, so it never depends on which ring was found first and never on timing. A ring
    may declare a point it never stamps, to say where its own points sit (the orders ring of the
    bundled traders declares ``order.encoded`` first). A declaration without a stage and without
    the trade flag is such a reference: it agrees with any stage and flag.
    """

    names: list[str] = field(default_factory=list)  # column -> point name (discovery order)
    stage_of: dict[str, str] = field(default_factory=dict)  # point -> stage name ending there
    trade_points: set[str] = field(default_factory=set)
    leg_points: set[str] = field(default_factory=set)  # declared with the leg flag (the fan-out)
    order_names: list[str] = field(default_factory=list)  # pipeline order
    # (a, b) -> the ring that first declared a right before b
    edges: dict[tuple[str, str], str] = field(default_factory=dict)
    # point -> (stage, ring) and (trade flag, ring) of the first declaration that set them
    _stage_by: dict[str, tuple[str, str]] = field(default_factory=dict)
    _trade_by: dict[str, tuple[bool, str]] = field(default_factory=dict)
    _declared_by: dict[str, list[str]] = field(default_factory=dict)  # point -> rings declaring it
    unresolved: str | None = None  # why the order is not yet determined (None: it is)
    _graph: PathGraph | None = None

    def merge(self, points, ring: str = "a ring") -> list[int]:
        """Add a ring's points (objects with name/stage/flags, in that ring's order); return their
        columns. ``ring`` names the ring in errors (writer name and pid). A contradiction with
        what other rings declared raises ``DeclarationConflict`` and leaves the schema unchanged."""
        names = [p.name for p in points]
        for p in points:
            trade = bool(p.flags & 1)
            if p.stage and (known := self._stage_by.get(p.name)) and known[0] != p.stage:
                raise DeclarationConflict(
                    f"{ring} declares point {p.name} with stage {p.stage!r}, {known[1]} with stage {known[0]!r}: "
                    "a point's stage must be the same in every ring that declares it (or left empty)"
                )
            if (p.stage or trade) and (known := self._trade_by.get(p.name)) and known[0] != trade:
                said = {True: "with the trade flag", False: "without the trade flag"}
                raise DeclarationConflict(
                    f"{ring} declares point {p.name} {said[trade]}, {known[1]} {said[known[0]]}: a point that "
                    "has a stage or the flag must carry the same flag in every ring (or be declared bare)"
                )
        new_edges = [(a, b) for a, b in zip(names, names[1:], strict=False) if (a, b) not in self.edges]
        succ: dict[str, list[str]] = {}
        for (a, b), _ in self.edges.items():
            succ.setdefault(a, []).append(b)
        for a, b in new_edges:
            path = _path(succ, b, a)
            if path is not None:
                said = ", ".join(
                    f"{self.edges.get((x, y), ring)} declares {x} before {y}"
                    for x, y in zip(path, path[1:], strict=False)
                )
                raise DeclarationConflict(
                    f"{ring} declares {a} before {b}, but {said}: the rings' point orders contradict each other "
                    "(declare the points in one order in every writer)"
                )
            succ.setdefault(a, []).append(b)
        for p in points:
            if p.name not in self.names:
                self.names.append(p.name)
            self._declared_by.setdefault(p.name, []).append(ring)
            if p.stage and p.name not in self._stage_by:
                self._stage_by[p.name] = (p.stage, ring)
                self.stage_of[p.name] = p.stage
            trade = bool(p.flags & 1)
            if (p.stage or trade) and p.name not in self._trade_by:
                self._trade_by[p.name] = (trade, ring)
            if trade:
                self.trade_points.add(p.name)
            if p.flags & 2:
                self.leg_points.add(p.name)
        for e in new_edges:
            self.edges[e] = ring
        self._order()
        return [self.names.index(n) for n in names]

    def _order(self) -> None:
        """Topological order of the declared edges; ties (points no declaration orders) broken by
        name only so the order is reproducible, and reported in ``unresolved``."""
        indeg = {n: 0 for n in self.names}
        succ: dict[str, list[str]] = {n: [] for n in self.names}
        for a, b in self.edges:
            succ[a].append(b)
            indeg[b] += 1
        ready = sorted(n for n, d in indeg.items() if d == 0)
        order, ties = [], []
        while ready:
            if len(ready) > 1:
                ties.append(list(ready))
            n = ready.pop(0)
            order.append(n)
            for m in succ[n]:
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
            ready.sort()
        self.order_names[:] = order
        # Points of one connected graph that no declaration orders are branches (paths a trace
        # may take); only groups no declaration connects leave the pipeline order open.
        self.unresolved = self._describe_ties(ties[0]) if ties and len(self.components()) > 1 else None
        self._graph = None

    def _describe_ties(self, tied: list[str]) -> str:
        """One line: the points (or groups of points) no declaration orders, and what to declare."""
        groups = self.components()
        if len(groups) > 1:
            parts = []
            for g in groups:
                rings = " and ".join(dict.fromkeys(r for n in g for r in self._declared_by[n]))
                parts.append(f"{g[0]}..{g[-1]} of {rings}" if len(g) > 1 else f"{g[0]} of {rings}")
            a, b = groups[0], groups[1]
            hint = (
                f"e.g. if {a[-1]} comes before {b[0]}, declare {a[-1]} as the first point of "
                f"{self._declared_by[b[0]][0]} (declared, never stamped)"
            )
            return (
                f"no declaration orders the points {' and '.join(parts)} relative to each other: declare in "
                f"one ring the point that precedes another group's first point; {hint}"
            )
        return (
            f"no declaration orders the points {', '.join(tied)} relative to each other: declare them in one "
            "ring in pipeline order (a ring may declare points it never stamps)"
        )

    def components(self) -> list[list[str]]:
        """Groups of points connected by declarations, each in pipeline order (ordered by first point)."""
        group = {n: n for n in self.names}

        def root(n):
            while group[n] != n:
                group[n] = group[group[n]]
                n = group[n]
            return n

        for a, b in self.edges:
            group[root(a)] = root(b)
        out: dict[str, list[str]] = {}
        for n in self.order_names:
            out.setdefault(root(n), []).append(n)
        return list(out.values())

    @property
    def order(self) -> np.ndarray:
        return np.array([self.names.index(n) for n in self.order_names], dtype=np.intp)

    def graph(self) -> PathGraph:
        """The declared graph over pipeline-order positions (rebuilt when declarations change)."""
        key = (len(self.names), len(self.edges), len(self.trade_points), len(self.leg_points))
        if self._graph is None or self._graph.key != key:
            self._graph = PathGraph(self, key)
        return self._graph

    @property
    def stages(self) -> list[str]:
        """Stage names in pipeline order: one per point that ends a span (every point but the
        starts of the declared paths), named after the point's declared stage."""
        return [self.stage_of.get(n) or n for j, n in enumerate(self.order_names) if self.graph().stage[j]]

    @property
    def trade_index(self) -> int:
        """Position (in pipeline order) of the first point where tick-to-trade ends."""
        return int(self.graph().trade_at[0]) if self.order_names else 0

    @property
    def trade_stages(self) -> list[str]:
        """The stages that make up tick-to-trade (every stage not after a trade point)."""
        g = self.graph()
        return [self.stage_of.get(n) or n for j, n in enumerate(self.order_names)
                if g.stage[j] and not g.after_trade[j] and j <= g.trade_at.max()]  # fmt: skip

    @property
    def tick_stages(self) -> list[str]:
        """The stages measured once per tick, as ``Closed.ticks`` spans them: those before the
        fan-out (without a declared fan-out, every stage but those after the trade point)."""
        g = self.graph()
        return [self.stage_of.get(n) or n for j, n in enumerate(self.order_names)
                if g.stage[j] and not g.leg[j] and not g.after_trade[j]]  # fmt: skip

    def leg_columns(self) -> np.ndarray:
        """Per column (discovery order): stamped once per leg (the fan-out point and after it)."""
        g = self.graph()
        out = np.zeros(len(self.names), bool)
        out[self.order] = g.leg
        return out

    def to_meta(self) -> dict:
        g = self.graph()
        names = self.order_names
        return {
            "points": list(names),
            "stages": [
                {
                    "name": self.stage_of.get(b) or b,
                    "from": "|".join(names[i] for i in np.flatnonzero(g.adj[:, j])),
                    "to": b,
                }
                for j, b in enumerate(names)
                if g.stage[j]
            ],  # fmt: skip
            "trade_point": names[self.trade_index] if names else None,
            **({"trade_points": [names[j] for j in g.trade_at]} if g.trade_at.size > 1 else {}),
            **({"leg_points": [n for j, n in enumerate(names) if g.leg[j]]} if g.leg.any() else {}),
            **({"paths": "branching"} if not g.chain else {}),
            **({"unordered": self.unresolved} if self.unresolved else {}),
        }


class PathGraph:
    """The declared points as a graph over pipeline-order positions.

    Each ring's consecutive declared points are one step of a path (``adj``), unless a longer
    declared path already leads from the one to the other: then the pair only orders them (a ring
    that stamps md.decoded and order.tx, next to one that declares signal between them, says
    nothing about skipping signal). A trace takes one path: its points, in pipeline order, step
    along those edges from a start (a point nothing precedes). Tick-to-trade ends at the trade points (declared, else every end of a path);
    a point declared with the leg flag, and every point after it, is stamped once per leg.
    ``chain``: one path through every point (the common case, measured on a fast path).
    """

    def __init__(self, schema: TraceSchema, key):
        self.key = key
        names = schema.order_names
        n = len(names)
        at = {name: i for i, name in enumerate(names)}
        self.adj = np.zeros((n, n), bool)
        for a, b in schema.edges:
            self.adj[at[a], at[b]] = True
        below = self._reach()  # below[i, j]: j comes after i on some path
        self.adj &= ~((self.adj.astype(np.int64) @ below.astype(np.int64)) > 0)  # the transitive reduction
        self.source = ~self.adj.any(axis=0)
        self.sink = ~self.adj.any(axis=1)
        self.stage = ~self.source
        self.chain = bool(
            n == 0 or (self.adj.sum() == n - 1 and all(self.adj[j - 1, j] for j in range(1, n)))
        )
        marked = np.array([name in schema.trade_points for name in names], bool)
        if not marked.any():
            marked = self.sink.copy() if n else marked
        self.trade_at = np.flatnonzero(marked)
        self.after_trade = below[marked].any(axis=0) if n else np.zeros(0, bool)
        legs = np.array([name in schema.leg_points for name in names], bool)
        self.leg = (legs | below[legs].any(axis=0)) if n else legs

    def _reach(self) -> np.ndarray:
        n = self.adj.shape[0]
        reach = self.adj.copy()
        for j in range(n - 1, -1, -1):  # positions are topologically ordered: successors come later
            for k in np.flatnonzero(self.adj[j]):
                reach[j] |= reach[k]
        return reach


SET_ASIDE = ("incomplete", "clock_skew", "late_beyond_horizon", "evicted", "duplicate", "out_of_range",
             "unordered")  # fmt: skip


# A span of a stage the trace did not take (a recorded span is >= 0: clock skew is set aside), so a
# stage of 0 ns (two points stamped at the same instant) is never mistaken for one not on the path.
NOT_TAKEN = -1


@dataclass
class Closed:
    """What one flush closed: latency values per tag, counts, and the slowest complete traces.

    ``seen == complete + sum(set_aside().values())``: every trace closed is recorded (``complete``)
    or set aside for exactly one reason (first one that applies, in ``SET_ASIDE`` order)."""

    values: dict[str, np.ndarray]
    seen: int = 0
    complete: int = 0  # recorded
    incomplete: int = 0
    clock_skew: int = 0
    late_points: int = 0  # traces whose later points joined a trace closed earlier (LateIndex)
    late_beyond_horizon: int = 0
    evicted: int = 0  # closed early to bound memory (max_pending): never measured
    duplicate: int = 0  # a point stamped twice: which stamp is the trace's is unknown
    out_of_range: int = 0  # a value beyond the histogram's highest trackable value
    unordered: int = 0  # closed while no declaration ordered the rings' points
    slow_rows: np.ndarray | None = None  # ordered stamps (pipeline order) of the slowest traces
    slow_src: np.ndarray | None = None
    slow_ids: np.ndarray | None = None
    slow_key: np.ndarray | None = None
    slow_spans: np.ndarray | None = (
        None  # their spans (column j - 1: from the previous point taken to point j; NOT_TAKEN off the path)
    )
    slow_legs: np.ndarray | None = None  # their legs (-1: a trace without legs)
    # The recorded traces, one row per leg (a trace without legs: one row, leg -1): trace id, leg,
    # dimension value ids (one column per dimension, 0 = none), tick_to_trade / tick_to_decision
    # (-1 where the row has none). What slicing by dimension and per-trace attribution start from.
    rows: dict[str, np.ndarray] | None = None
    # Tail attribution's input (collectors/rings/attribution.py): every row recorded in tick_to_trade
    # (one per leg), its spans of the trade stages (``TraceSchema.trade_stages``; NOT_TAKEN for a
    # stage off the path it took, so a stage of 0 ns stays one), so row i's taken spans sum to
    # values[TICK_TO_TRADE][i]
    trade_spans: np.ndarray | None = None
    # their tick_to_trade, row for row (values[TICK_TO_TRADE] also holds legs and acks joined late,
    # whose spans are not at hand: those are measured, not attributed)
    trade_t2t: np.ndarray | None = None
    # Every tick recorded, once (also those that never traded): trace id, the tick's own dimension
    # value ids (attached at shared points, without any leg's), and the spans of its shared stages
    # (``TraceSchema.tick_stages``; NOT_TAKEN off its path). What per-value feed stages slice.
    ticks: dict[str, np.ndarray] | None = None
    # Every row closed with all its stamps (``Correlator.keep_closed``: incidents need the traces
    # around a breach, not only the slowest): trace, leg, stamps on the common timeline and the
    # source ring of each (pipeline order), spans as the stage tables measure them, whether the
    # row was recorded, its tick_to_trade / tick_to_decision (-1: none) and dimension value ids.
    kept: dict[str, np.ndarray] | None = None

    def set_aside(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in SET_ASIDE}


def _pad(m: np.ndarray, width: int) -> np.ndarray:
    if m.shape[1] == width:
        return m
    out = np.zeros((m.shape[0], width), m.dtype)
    out[:, : m.shape[1]] = m
    return out


class Correlator:
    LATE_HORIZON_NS = 30_000_000_000  # a late point joins its trace up to 30 s after the trace closed
    # A million, not 2^20: at the bound the index's ring then holds a flush's adds (up to 48 k) in
    # 2^20 slots rather than doubling to 2^21 (~125 MB less per index, and a 0.2-0.4 s doubling).
    LATE_MAX_ENTRIES = 1_000_000

    def __init__(self, schema: TraceSchema, *, linger_ns: int = 250_000_000, max_pending: int = 1 << 20,
                 slowest: int = 20, late_horizon_ns: int = LATE_HORIZON_NS,
                 late_max_entries: int = LATE_MAX_ENTRIES, max_value: int | None = None):  # fmt: skip
        self.schema = schema
        self.max_value = max_value  # the histograms' highest trackable value: a trace beyond it is set aside
        warm_kernels()  # before any record is timed: never a compile between a drain and its flush
        self.late = _late_index().LateIndex(late_horizon_ns, late_max_entries)
        # The shared stamps of closed traces that fanned out, by trace id: a leg that comes after
        # its trace closed (a hedge sent on a fill) joins them, within the same horizon.
        self.late_shared = _late_index().LateIndex(late_horizon_ns, late_max_entries)
        self.late_legs = 0  # legs that joined their trace's shared points after it closed
        self.late_points = 0
        self.late_beyond_horizon = 0
        self._tsc: dict[int, tuple[np.ndarray, object]] = {}  # src value -> (TSC columns, TscTimeline)
        self._tsc_table, self._tsc_table_key = None, None
        self.linger_ns = linger_ns
        self.max_pending = max_pending
        self.slowest = slowest
        # A tick-to-trade at or below this cannot be among the slowest the caller keeps (set by
        # the caller before each flush; -1: any can): a flush looks for its slowest above it only.
        self.slow_floor = -1
        self.keep_closed = False  # hand every closed row's stamps on in ``Closed.kept`` (incidents)
        self.round = 0  # drain rounds begun by the caller (see advance())
        # The open traces' rows (trace id, leg, stamps and source ring + 1 per column, newest
        # arrival, its drain round, stamped twice, dimension value ids), held in place.
        self._open = _kernels().PendingTable()
        self._tick_tables, self._tick_tables_key = None, None
        self.n_dims = 0  # dimensions known so far (the caller's global ids: column d = dimension d)
        self.evicted = 0
        self._rings: list[tuple[int, np.ndarray, bool]] = []  # (src value, columns, is a tick ring)
        # src value -> TSC domain (0: the ring stamps no TSC); two ticks of one domain are one clock
        self._domain = np.zeros(np.iinfo(np.int16).max + 1, np.int32)

    def declare_ring(self, index: int, columns, tick: bool, tsc=None, timeline=None, domain: int = 0) -> None:
        """Tell the correlator which columns ring ``index`` writes, and whether one record per trace.

        ``tsc`` (a bool per column) marks the columns this ring stamps in TSC: their stamps arrive
        as raw ticks of TSC domain ``domain`` (a number > 0 shared by every ring of that clock;
        default: a domain of this ring alone); ``timeline`` (the domain's ``TscTimeline``) turns two
        ticks into a span (``span``) and a tick into CLOCK_MONOTONIC ns (``to_common``).
        """
        cols = np.asarray(columns, np.intp)
        self._rings.append((index + 1, cols, tick))
        if tsc is not None and np.any(tsc):
            self._tsc[index + 1] = (cols[np.asarray(tsc, bool)], timeline)
            self._domain[index + 1] = domain if domain > 0 else -(index + 1)

    def forget_ring(self, index: int) -> None:
        """Ring ``index`` is gone and no stamp of it is held (``rings_held``): drop what was declared
        for it, so that a daemon's thousands of released writers cost nothing per flush."""
        value = index + 1
        self._rings = [r for r in self._rings if r[0] != value]
        self._tsc.pop(value, None)
        self._tsc_table_key = None  # the TSC tables are rebuilt from the rings still declared
        self._domain[value] = 0

    def rings_declared(self) -> tuple[int, int]:
        """(rings declared, of which stamping TSC): what the correlator holds per ring."""
        return len(self._rings), len(self._tsc)

    def rings_held(self) -> set[int]:
        """Ring indexes with a stamp still held: in an open trace or in the late index."""
        held = [np.unique(self._open.live_src()), np.unique(self.late.held_src())]
        return {int(v) - 1 for v in np.unique(np.concatenate(held)) if v > 0}

    def _tsc_stamps(self, C: np.ndarray, S: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
        """Mask of the stamps of ``C`` (columns ``cols``) that are raw ticks of a TSC ring."""
        if not self._tsc:
            return None
        width = len(self.schema.names)
        key = (len(self._tsc), len(self._rings), width)
        if self._tsc_table_key != key:
            table = np.zeros((max(self._tsc) + 1, width), bool)
            for value, (tsc_cols, _) in self._tsc.items():
                table[value, tsc_cols] = True
            self._tsc_table, self._tsc_table_key = table, key
            self._tsc_whole = np.zeros(np.iinfo(np.int16).max + 1, bool)  # rings whose every point is TSC
            for value, _, _ in self._rings:
                if value in self._tsc:
                    self._tsc_whole[value] = all(self._tsc_table[value, c] for c in self._ring_cols(value))
            self._tsc_mixed_clocks = any(
                value in self._tsc and not self._tsc_whole[value] for value, _, _ in self._rings
            )
        if not self._tsc_mixed_clocks:
            return self._tsc_whole[S] & (C != 0)
        src = np.minimum(S, self._tsc_table.shape[0] - 1)
        return self._tsc_table[src, cols[None, :]] & (S < self._tsc_table.shape[0]) & (C != 0)

    def _ring_cols(self, value: int) -> np.ndarray:
        return next(cols for v, cols, _ in self._rings if v == value)

    def _on_common(self, C: np.ndarray, S: np.ndarray, local: np.ndarray | None, rows=None) -> np.ndarray:
        """``C`` with TSC ticks moved onto CLOCK_MONOTONIC where a span may cross clocks: rows
        mixing a ring's ticks with other stamps (plus ``rows``, a mask). Rows holding the ticks of
        one ring only are left as ticks: all their spans are in-ring (see ``_span``)."""
        if local is None or not local.any():
            return C
        mixed = (local != (C != 0)).any(axis=1)  # a present stamp that is not a tick
        if len(self._tsc) > 1:  # ticks of two domains in one row
            D = self._domain[S]
            top = np.iinfo(np.int32).max
            mixed |= np.where(local, D, top).min(axis=1) != np.where(local, D, np.iinfo(np.int32).min).max(
                axis=1
            )
        mixed &= local.any(axis=1)
        if rows is not None:
            mixed |= rows
        if not mixed.any():
            return C
        common = C.copy()
        for value, (_, timeline) in self._tsc.items():
            sel = local & (S == value) & mixed[:, None]
            if sel.any():
                common[sel] = timeline.to_common(C[sel])
        return common

    def _in_ring(self, ta: np.ndarray, tb: np.ndarray, src: np.ndarray, same: np.ndarray) -> np.ndarray:
        """tb - ta in ns where ``same`` (two ticks of the TSC domain of ring ``src``): ticks times
        the domain's rate, rounded once; a domain whose rate changed mid-run asks its timeline
        piece by piece."""
        rate = np.zeros(max(self._tsc) + 1)
        pieced = []
        for value, (_, timeline) in self._tsc.items():
            if timeline.local is None:
                continue  # never calibrated (a ring quarantined at discovery): it has no rows
            if len(timeline.local.xs) == 1:
                rate[value] = timeline.local.slopes[0]
            else:
                pieced.append((value, timeline))
        out = np.rint((tb - ta) * rate[np.where(same, src, 0)]).astype(np.int64)
        for value, timeline in pieced:
            sel = same & (src == value)
            if sel.any():
                out[sel] = timeline.span(ta[sel], tb[sel])
        return out

    def _span(self, C, common, S, local, a, b) -> np.ndarray:
        """Stamp b - stamp a per row (ints or an index per row): two ticks of one TSC domain by that
        domain's rate alone, anything else on the common timeline."""
        rows = np.arange(C.shape[0])
        d = common[rows, b] - common[rows, a]
        if local is None:
            return d
        same = local[rows, a] & local[rows, b] & (self._domain[S[rows, a]] == self._domain[S[rows, b]])
        if not same.any():
            return d
        return np.where(same, self._in_ring(C[rows, a], C[rows, b], S[rows, a], same), d)

    def advance(self) -> None:
        """Begin a drain round: the caller drains every ring once before the next call."""
        self.round += 1

    def _ticks_only(self, width: int):
        """``tick_tables`` of the rings declared now (rebuilt when they change)."""
        key = (tuple(v for v, _, _ in self._rings), width)
        if self._tick_tables_key != key:
            self._tick_tables, self._tick_tables_key = _kernels().tick_tables(self._rings, width), key
        return self._tick_tables

    @property
    def pending(self) -> int:
        """Rows held open (one per trace, or per leg and the shared row of a trace that fans out)."""
        return self._open.rows

    @property
    def duplicate_stamps(self) -> int:
        return self._open.duplicate_stamps

    @property
    def dimension_conflicts(self) -> int:
        """Rows given two values of one dimension (the larger id is kept), once per row and batch."""
        return self._open.dimension_conflicts

    def _width(self, m: np.ndarray, fill=0) -> np.ndarray:
        n = len(self.schema.names)
        if m.shape[1] == n:
            return m
        out = np.full((m.shape[0], n), fill, dtype=m.dtype)
        out[:, : m.shape[1]] = m
        return out

    def declare_dims(self, n: int) -> None:
        """The caller now knows ``n`` dimensions (column d of every dims matrix: dimension d)."""
        self.n_dims = max(self.n_dims, n)

    def add_rows(self, trace: np.ndarray, ts: np.ndarray, src: np.ndarray, arrived_ns: int | None = None,
                 dup: np.ndarray | None = None, legs: np.ndarray | None = None,
                 dims: np.ndarray | None = None) -> None:  # fmt: skip
        """Add stamp rows: ``ts[k, column]`` in monotonic ns (0 = absent), ``src`` likewise.

        ``arrived_ns`` is the collector's clock now (default: each row's newest stamp); ``dup``
        marks rows already known to hold a point stamped twice; ``legs`` names each row's leg
        (default 0); ``dims`` holds the dimension value ids each row attaches (0 = none). A row
        stamping both shared points and per-leg points (a tick record) is split in two: its
        shared stamps go to the trace, its per-leg ones and its dimension values to its leg.
        """
        if trace.size == 0:
            return
        self._open.shape(len(self.schema.names), self.n_dims)
        per_leg = self.schema.leg_columns()
        n = trace.size
        self._open.add_rows(
            np.ascontiguousarray(trace, np.uint64),
            np.zeros(n, np.int32) if legs is None else np.ascontiguousarray(legs, np.int32),
            np.ascontiguousarray(self._width(ts), np.int64),
            np.ascontiguousarray(self._width(src), np.int16),
            self._dims_of(dims, n),
            np.zeros(n, bool) if dup is None else np.ascontiguousarray(dup, bool),
            -1 if arrived_ns is None else int(arrived_ns),
            self.round,
            per_leg,
        )

    def add_points(self, trace: np.ndarray, column: np.ndarray, ts: np.ndarray, src: int,
                   arrived_ns: int | None = None, legs: np.ndarray | None = None,
                   dims: np.ndarray | None = None) -> None:  # fmt: skip
        """Add point records (one stamp each) of ring ``src``, grouped into rows (one per trace and
        leg) first. A record of a shared point belongs to the trace whatever leg it names."""
        if trace.size == 0:
            return
        self._open.shape(len(self.schema.names), self.n_dims)
        per_leg = self.schema.leg_columns()
        legs = np.full(trace.size, -1, np.int32) if legs is None else np.ascontiguousarray(legs, np.int32)
        self._open.add_points(
            np.ascontiguousarray(trace, np.uint64), legs, np.ascontiguousarray(column, np.int64),
            np.ascontiguousarray(ts, np.int64),
            self._dims_of(dims, trace.size), src + 1, -1 if arrived_ns is None else int(arrived_ns), self.round,
            per_leg,
        )  # fmt: skip

    def _dims_of(self, dims: np.ndarray | None, n: int) -> np.ndarray:
        return np.ascontiguousarray(self._dims_width(np.zeros((n, 0), np.int32) if dims is None else dims))

    def _dims_width(self, m: np.ndarray) -> np.ndarray:
        return _pad(m.astype(np.int32, copy=False), self.n_dims) if m.shape[1] != self.n_dims else m

    def flush(self, now_ns: int, force: bool = False, unordered: bool = False,
              read_until_ns: int | None = None) -> Closed:  # fmt: skip
        """Close what is ready (see module rules) and turn it into latency values. ``unordered``:
        no declaration orders some points (``TraceSchema.unresolved``) and the caller gave up
        waiting: close every open trace and set it aside, measured on no guessed order.
        ``read_until_ns``: every record published before it has been added (default ``now_ns``);
        linger counts back from the earlier of the two."""
        schema = self.schema
        tags = schema.stages + [TICK_TO_TRADE, TICK_TO_DECISION]
        empty = {t: np.empty(0, np.int64) for t in tags}
        self.late.expire(now_ns)
        self.late_shared.expire(now_ns)
        if self._open.rows == 0:
            return Closed(values=empty)
        if unordered:
            n = self._open.clear()
            return Closed(values=empty, seen=n, unordered=n)
        width = len(schema.names)
        self._open.shape(width, self.n_dims)
        g = schema.graph()
        order = np.ascontiguousarray(schema.order, np.int64)
        sink = np.zeros(width, bool)
        sink[order[g.sink]] = True
        tick_of, tick_only = self._ticks_only(width)
        cutoff = (now_ns if read_until_ns is None else min(now_ns, read_until_ns)) - self.linger_ns
        # A trace (all its rows: the shared one and one per leg) closes as one.
        ids, legs, C, S, arrived, dup, evict, dims, tdims, evicted = self._open.close(
            sink, tick_of, tick_only, self.round, cutoff, force, self.max_pending, order
        )
        self.evicted += evicted
        if ids.size == 0:
            return Closed(values=empty)

        values: dict[str, list[np.ndarray]] = {t: [] for t in tags}
        closed = Closed(values={})
        late_leg = (
            self._join_shared(C, S, ids, legs, dims, tdims) if g.leg.any() else np.zeros(C.shape[0], bool)
        )
        if g.after_trade.any():
            rest = self._join_late(C, S, ids, legs, arrived, dup, evict, dims, values, closed)
            C, S, ids, legs, arrived, dup, evict, dims = rest[:-1]
            late_leg, tdims = late_leg[rest[-1]], tdims[rest[-1]]
        spans = _Spans(self, C, S, order)
        D, valid, count, on_path, first, last, trade_col, to_trade, at_sink, t2t_all, t2d_all = spans.measure(
            g
        )
        n = len(order)
        stage_kind = np.where(g.stage[1:], np.where(g.leg[1:], 1, 2), 0).astype(np.int64)
        top = -1 if self.max_value is None else int(self.max_value)
        # the trade stages' columns (as TraceSchema.trade_stages names them), and the tick stages'
        tcols = np.array([j for j in range(1, n) if g.stage[j] and not g.after_trade[j] and j <= g.trade_at.max()],
                         np.int64)  # fmt: skip
        kcols = np.flatnonzero(g.stage & ~g.leg & ~g.after_trade).astype(np.int64)
        good, once, to_decision, V, nV, tally, closed.trade_spans, tick_spans = _measure().judge(
            ids, count, on_path, dup, evict, late_leg, D, valid, to_trade, trade_col, t2t_all, t2d_all, top,
            stage_kind, tcols, kcols,
        )  # fmt: skip
        for j in range(1, n):
            if g.stage[j]:
                values[schema.stage_of.get(schema.order_names[j]) or schema.order_names[j]].append(
                    V[j - 1, : nV[j - 1]]
                )
        reached = good & to_trade
        t2t = t2t_all[reached]
        values[TICK_TO_TRADE].append(t2t)
        closed.ticks = {"trace": ids[once], "dims": tdims[once], "spans": tick_spans}
        closed.trade_t2t = t2t
        values[TICK_TO_DECISION].append(t2d_all[good & to_decision])
        if g.after_trade.any():  # the answer may still come: keep the trace for it
            self.late.add(
                ids, C, S, arrived, legs, dims, rows=np.flatnonzero(reached & ~at_sink), order=order
            )
        if g.leg.any():  # a later leg may still come: keep the shared stamps of traces that fanned out
            fanned = np.flatnonzero(once & (legs >= 0))
            self.late_shared.add(ids, C, S, arrived, np.full(ids.size, -1, np.int32), tdims, rows=fanned,
                                 order=order, keep=~g.leg)  # fmt: skip
        closed.values = {t: _joined(v) for t, v in values.items()}
        closed.rows = {
            "trace": ids[good], "leg": legs[good], "dims": dims[good],
            "tick_to_trade": np.where(to_trade, t2t_all, -1)[good],
            "tick_to_decision": np.where(to_decision, t2d_all, -1)[good],
        }  # fmt: skip
        if self.keep_closed and C.shape[0]:
            closed.kept = {
                "trace": ids, "leg": legs, "stamps": spans.on_common(np.arange(C.shape[0])), "src": S,
                "spans": D, "recorded": good, "tick_to_trade": np.where(good & to_trade, t2t_all, -1),
                "tick_to_decision": np.where(good & to_decision, t2d_all, -1), "dims": dims,
            }  # fmt: skip
        m = _measure()
        closed.seen += int(C.shape[0])
        closed.complete = int(tally[m.COMPLETE])
        closed.evicted = int(tally[m.EVICTED])
        closed.duplicate += int(tally[m.DUPLICATE])
        closed.incomplete = int(tally[m.INCOMPLETE])
        closed.clock_skew += int(tally[m.CLOCK_SKEW])
        closed.out_of_range += int(tally[m.OUT_OF_RANGE])
        if self.slowest and t2t.size:
            # Once the caller's slowest are full, a flush's rows are almost all below them: one
            # compare each, and a partition of the few above (was 5 ns a record, every record).
            above = np.flatnonzero(t2t > self.slow_floor) if self.slow_floor >= 0 else np.arange(t2t.size)
            k = min(self.slowest, above.size)
            top = above[np.argpartition(t2t[above], above.size - k)[above.size - k :]] if k else above
            rows = np.flatnonzero(reached)[top]
            closed.slow_rows, closed.slow_src, closed.slow_ids, closed.slow_key, closed.slow_spans = (
                spans.on_common(rows),  # the slowest leave with every stamp on one timeline
                S[rows],
                ids[rows],
                t2t[top],
                # and with the spans the stage tables took, exact where ts_ns may not be
                np.where(valid[rows], D[rows], NOT_TAKEN),
            )
            closed.slow_legs = legs[rows]
        return closed

    def _join_shared(self, C, S, ids, legs, dims, tdims) -> np.ndarray:
        """Leg rows without shared stamps that reached the fan-out (not only acks): fill in their
        trace's shared stamps and its own dimension values from ``late_shared`` (in place). Returns
        the rows that joined; the others stay as they are (incomplete)."""
        g = self.schema.graph()
        P = C != 0
        lonely = (legs >= 0) & ~P[:, ~g.leg].any(axis=1) & P[:, g.leg & ~g.after_trade].any(axis=1)
        joined = np.zeros(C.shape[0], bool)
        if not lonely.any():
            return joined
        idx = np.flatnonzero(lonely)
        n = len(self.schema.names)
        found, ts, src, _, d = self.late_shared.take(
            ids[idx], n, np.full(idx.size, -1, np.int32), self.n_dims, True
        )
        if found.any():
            order, at = self.schema.order, idx[found]
            known, Sk = ts[found][:, order], src[found][:, order]
            C[at] = np.where(known != 0, known, C[at])
            S[at] = np.where(known != 0, Sk, S[at])
            dims[at] = np.where(dims[at] != 0, dims[at], d[found])
            tdims[at] = d[found]
            joined[at] = True
            self.late_legs += int(found.sum())
        return joined

    def _join_late(self, C, S, ids, legs, arrived, dup, evict, dims, values, closed):
        """Rows holding only points after a trade point: join them to their trace (and leg) in the
        late index and record the stages they complete; return the other rows.

        A row that joins is part of a trace already seen (``late_points``); one that cannot join
        (its trace is not in the index, a point stamped twice, a negative or out-of-range span) is
        a trace piece seen and set aside."""
        schema, order = self.schema, self.schema.order
        g = schema.graph()
        P = C != 0
        late = ~P[:, ~g.after_trade].any(axis=1)
        if not late.any():
            return C, S, ids, legs, arrived, dup, evict, dims, slice(None)  # every row: views, no copies
        twice = dup[late]
        closed.duplicate += int(twice.sum())
        closed.seen += int(twice.sum())
        Cl, Sl, idl, lgl, dml = (
            C[late][~twice],
            S[late][~twice],
            ids[late][~twice],
            legs[late][~twice],
            dims[late][~twice],
        )
        found, ts, src, added, known_dims = self.late.take(idl, len(schema.names), lgl, self.n_dims)
        beyond = int((~found).sum())
        self.late_beyond_horizon += beyond
        closed.late_beyond_horizon = beyond
        closed.seen += beyond
        if found.any():
            Cl, Sl = Cl[found], Sl[found]
            known = ts[found][:, order]
            Sk = src[found][:, order]
            before = known != 0
            Cm = np.where(before, known, Cl)
            Sm = np.where(before, Sk, Sl)
            Pm = Cm != 0
            n = Pm.shape[1]
            last_at = np.maximum.accumulate(np.where(Pm, np.arange(n), -1), axis=1)
            local = self._tsc_stamps(Cm, Sm, order)
            common = self._on_common(Cm, Sm, local)
            skew, big, spans = np.zeros(Cm.shape[0], bool), np.zeros(Cm.shape[0], bool), []
            rows = np.arange(Cm.shape[0])
            for j in np.flatnonzero(g.after_trade):
                prev = last_at[:, j - 1]
                new = Pm[:, j] & (prev >= 0) & ~(before[:, j] & before[rows, np.maximum(prev, 0)])
                if new.any():
                    d = self._span(
                        Cm[new], common[new], Sm[new], None if local is None else local[new], prev[new], j
                    )
                    spans.append((j, new, d))
                    skew[new] |= d < 0
                    if self.max_value is not None:
                        big[new] |= d > self.max_value
            big &= ~skew
            ok = ~(skew | big)
            for j, new, d in spans:
                values[schema.stage_of.get(schema.order_names[j]) or schema.order_names[j]].append(d[ok[new]])
            closed.clock_skew += int(skew.sum())
            closed.out_of_range += int(big.sum())
            closed.seen += int((~ok).sum())
            closed.late_points = int(ok.sum())
            self.late_points += closed.late_points
            waiting = ~Pm[:, g.sink].any(axis=1) & ok
            if waiting.any():
                Dm = np.where(dml[found] != 0, dml[found], known_dims[found])
                self.late.add(idl[found], Cm, Sm, added[found], lgl[found], Dm, rows=np.flatnonzero(waiting),
                              order=order)  # fmt: skip
        rest = ~late
        return (
            C[rest],
            S[rest],
            ids[rest],
            legs[rest],
            arrived[rest],
            dup[rest],
            evict[rest],
            dims[rest],
            rest,
        )


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _path(succ: dict[str, list[str]], start: str, goal: str) -> list[str] | None:
    """A path start -> ... -> goal along ``succ`` (breadth first), or None."""
    came = {start: None}
    todo = [start]
    while todo:
        n = todo.pop(0)
        if n == goal:
            path = []
            while n is not None:
                path.append(n)
                n = came[n]
            return path[::-1]
        for m in succ.get(n, ()):
            if m not in came:
                came[m] = n
                todo.append(m)
    return None


class _Spans:
    """How ``Correlator.flush`` measures the spans of the rows it closes.

    Three kinds of row: no TSC stamp (spans are plain differences of ns), the ticks of one TSC
    domain only, from any number of rings (every span is ticks times the domain's rate: one
    multiply per span, the common case of a C or Rust pipeline), both measured by the kernel
    (``measure.spans``), and the rest (stamps of several clocks or domains, or a domain whose rate
    changed mid-run), whose spans are measured stamp by stamp on the side (``Correlator._span``)
    between the points the kernel found.
    """

    def __init__(self, cor: Correlator, C: np.ndarray, S: np.ndarray, order: np.ndarray):
        self.cor, self.C, self.S, self.order = cor, C, S, order

    def measure(self, g: PathGraph):
        """``measure.spans`` of every row (see there), the rows on the side measured here."""
        cor, C, S, order = self.cor, self.C, self.S, self.order
        if cor._tsc:
            cor._tsc_stamps(C[:0], S[:0], order)  # (re)builds the ring tables
            ticks = np.ascontiguousarray(cor._tsc_table[:, order])
            rate = np.zeros(ticks.shape[0])  # ns per tick of rings with one rate all session
            for value, (_, timeline) in cor._tsc.items():
                if timeline.local is not None and len(timeline.local.xs) == 1:
                    rate[value] = timeline.local.slopes[0]
        else:
            ticks, rate = np.zeros((0, C.shape[1]), bool), np.zeros(0)
        D, valid, count, on_path, first, last, trade_col, to_trade, at_sink, t2t, t2d, at, prev = _measure().spans(
            np.ascontiguousarray(C, np.int64), np.ascontiguousarray(S, np.int16), ticks, cor._domain, rate,
            g.source, g.adj, np.ascontiguousarray(g.trade_at, np.int64), g.sink,
        )  # fmt: skip
        if at.size:
            Cm, Sm = C[at], S[at]
            local = cor._tsc_stamps(Cm, Sm, order)
            m = (Cm, cor._on_common(Cm, Sm, local, rows=np.ones(at.size, bool)), Sm, local)
            for j in range(1, prev.shape[1]):
                step = prev[:, j] >= 0
                if step.any():
                    D[at[step], j - 1] = cor._span(*(x[step] for x in m), prev[step, j], j)
            span = cor._span(*m, first[at], trade_col[at])
            t2t[at] = np.where(to_trade[at], span, 0)
            span = cor._span(*m, first[at], last[at])
            t2d[at] = np.where(~to_trade[at] & (count[at] >= 2), span, 0)
        return D, valid, count, on_path, first, last, trade_col, to_trade, at_sink, t2t, t2d

    def on_common(self, rows: np.ndarray) -> np.ndarray:
        """The stamps of ``rows``, TSC ticks moved onto CLOCK_MONOTONIC."""
        C, S = self.C[rows], self.S[rows]
        ticks = self.cor._tsc_stamps(C, S, self.order)
        return C if ticks is None else self.cor._on_common(C, S, ticks, rows=np.ones(rows.size, bool))
