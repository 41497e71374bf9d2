"""Prometheus alerting rules for what ``--prometheus`` exports: one generator, shipped and on demand.

``alert_rules(...)`` returns the rule groups as plain data; ``render_yaml`` writes them as a
Prometheus rule file. The wheel ships the defaults (``monitoring/tickscope-alerts.yml``, checked
against this generator by a test); ``tickscope alerts --sla ...`` writes rules for your SLAs.

Every latency rule reads the native histogram and, for Prometheus servers that scrape text only,
the classic ``_bucket`` series (``A or B``: the native answer wins where both exist), so one rule
file serves both. Alerts are per ``host`` and ``pipeline`` (``SERIES_LABELS``): the labels that stay
the same across restarts, never the session.

Dimensions (venue, symbol, ...): the exporter serves each dimension value's histograms as a family
of their own (``tickscope_dimension_latency_seconds``, label ``dimension`` naming the slicing and one
label per dimension). For every dimension in ``dimensions`` (default: venue) each SLA gets a second
rule on that family, grouped by the dimension's label, so a p99 breach names the venue it is on.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from dataclasses import dataclass
from decimal import Decimal

from tickscope.collectors.side.prometheus import CLOCK_SYNCHRONISED, DIMENSION_LATENCY, LATENCY, label_name

SERIES_LABELS = ("host", "pipeline")
TICK_TO_TRADE = "tick_to_trade"
DEFAULT_SLA = "tick_to_trade:p99=1ms"  # a placeholder: name your own with --sla
DEFAULT_DIMENSIONS = (
    "venue",
)  # the bundled trader's venue (the FIX TargetCompID); a dimension not exported stays quiet
DEFAULT_WINDOW_NS, DEFAULT_FOR_NS, DEFAULT_JOB = 300 * 10**9, 120 * 10**9, "tickscope"


class AlertSpecError(ValueError):
    """A malformed ``--sla``: one line naming it and the expected form."""


@dataclass(frozen=True)
class Sla:
    stage: str
    quantile: float  # 0.99
    threshold_ns: int
    limit_text: str = ""  # as the user wrote it ("500us"), for the alert's summary

    @property
    def text(self) -> str:  # the --sla that gives this back
        return f"{self.stage}:{self.label}={self.limit_text or self.threshold_s + 's'}"

    @property
    def threshold_s(self) -> str:  # exact decimal: 50us is 0.00005, not 5e-05
        return format(Decimal(self.threshold_ns) / Decimal(10**9), "f")

    @property
    def label(self) -> str:  # "p99", "p99.9"
        return f"p{self.quantile * 100:.10g}"


_SLA = re.compile(r"^(?:(?P<stage>[A-Za-z_][\w.]*):)?p(?P<q>\d+(?:\.\d+)?)=(?P<limit>\S+)$")


def parse_sla(text: str, parse_duration_ns) -> Sla:
    """``[STAGE:]pQ=DURATION`` (stage defaults to tick_to_trade): ``p99=500us``, ``feed:p99.9=50us``."""
    m = _SLA.match(text.strip())
    if not m:
        raise AlertSpecError(
            f"--sla {text!r} is not an SLA (expected [STAGE:]pQUANTILE=DURATION, e.g. p99=500us or feed:p99.9=50us)"
        )
    q = float(m["q"])
    if not 0 < q < 100:
        raise AlertSpecError(
            f"--sla {text!r}: the percentile is {m['q']} (give one between 0 and 100, exclusive)"
        )
    limit = parse_duration_ns(m["limit"], f"--sla {text!r} limit")
    if limit <= 0:
        raise AlertSpecError(f"--sla {text!r}: the limit is zero (give a limit above zero)")
    return Sla(m["stage"] or TICK_TO_TRADE, q / 100, limit, m["limit"])


def promql_duration(ns: int) -> str:
    """Nanoseconds as a Prometheus duration (whole ms at least: Prometheus has nothing finer)."""
    ms = max(0, round(ns / 1e6))
    if not ms:
        return "0s"
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _by(dimensions: tuple[str, ...], *more: str) -> str:
    return ", ".join((*SERIES_LABELS, *dimensions, *more))


def quantile_expr(quantile: float, selector: str, window: str, by: str, metric: str = LATENCY) -> str:
    """The quantile from the native histogram, else from the classic buckets of a text-only scrape."""
    return (f"histogram_quantile({quantile:.10g}, sum by ({by}) (rate({metric}{{{selector}}}[{window}])))\n"
            f"or histogram_quantile({quantile:.10g}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{window}])))")  # fmt: skip


def dimension_selector(stage: str, dimension: str) -> str:
    """One dimension's own series of a stage: ``dimension`` names the slicing, so a combination's
    series (``venue,symbol``, which carry a venue label too) are not counted again."""
    return f'stage="{stage}", dimension="{dimension}"'


def dimension_quantile_expr(
    quantile: float, stage: str, dimension: str, window: str, selector: str = ""
) -> str:
    """A stage's quantile per value of ``dimension``, from the dimension family."""
    where = dimension_selector(stage, dimension) + (f", {selector}" if selector else "")
    return quantile_expr(quantile, where, window, _by((label_name(dimension),), "stage"), DIMENSION_LATENCY)


def _where(labels: str, dimensions: tuple[str, ...]) -> str:
    """``pipeline`` on ``host`` (+ each dimension) as a template over an alert's labels."""
    dims = "".join(f" {d}={{{{ $labels.{d} }}}}" for d in dimensions)
    return f"{{{{ $labels.pipeline }}}} on {{{{ $labels.host }}}}{dims}{labels}"


def _counter_rule(name: str, metric: str, window: str, what: str, severity: str) -> dict:
    return {"alert": name, "expr": f"sum by ({_by(())}) (increase({metric}[{window}])) > 0",
            "labels": {"severity": severity},
            "annotations": {"summary": f"{_where('', ())}: {{{{ $value | humanize }}}} {what} in the last {window}"}}  # fmt: skip


def _latency_rule(name: str, expr: str, hold: str, sla: Sla, window: str, dims: tuple[str, ...]) -> dict:
    limit_s = sla.threshold_s
    return {
        "alert": name, "expr": f"(\n{textwrap.indent(expr, '  ')}\n) > {limit_s}", "for": hold,
        "labels": {"severity": "page", "quantile": sla.label, "sla_seconds": limit_s},
        "annotations": {"summary": _where(f": {{{{ $labels.stage }}}} {sla.label} {{{{ $value | humanizeDuration }}}}"
                                          f" over the SLA of {sla.limit_text or limit_s + 's'} (last {window})", dims)},
    }  # fmt: skip


def alert_rules(slas: list[Sla], *, window_ns: int = DEFAULT_WINDOW_NS, for_ns: int = DEFAULT_FOR_NS,
                job: str = DEFAULT_JOB, dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS) -> dict:  # fmt: skip
    """The rule file as data: ``{"groups": [...]}``. ``window_ns``: the span each rate and increase
    looks back over; ``for_ns``: how long a latency breach, an unsynchronised clock or a missing
    target must last before it fires (drops, gaps and deaths fire at once: each is already news);
    ``job``: the scrape job that scrapes tickscope (for the no-scrape rules); ``dimensions``: each
    SLA is also judged per value of each of these (a venue breaching while the others hide it)."""
    window, hold = promql_duration(window_ns), promql_duration(for_ns)
    latency = []
    for sla in slas:
        expr = quantile_expr(sla.quantile, f'stage="{sla.stage}"', window, _by((), "stage"))
        latency.append(_latency_rule("TickscopeLatencyOverSLA", expr, hold, sla, window, ()))
    for dim in dimensions:
        for sla in slas:
            expr = dimension_quantile_expr(sla.quantile, sla.stage, dim, window)
            rule = _latency_rule(
                "TickscopeDimensionLatencyOverSLA", expr, hold, sla, window, (label_name(dim),)
            )
            rule["labels"]["dimension"] = dim
            latency.append(rule)
    loss = [
        _counter_rule("TickscopeRecordsDropped", "tickscope_records_dropped_total", window,
                      "probe records dropped on a full ring (the stage numbers miss them)", "warning"),
        _counter_rule("TickscopeFeedGaps", "tickscope_feed_gaps_total", window,
                      "market-data sequence gaps", "warning"),
        _counter_rule("TickscopeWriterDied", "tickscope_writers_died_total", window,
                      "ring writers ended without closing their ring (a crashed subject?)", "page"),
        _counter_rule("TickscopeOrderStalls", "tickscope_order_stalls_total", window,
                      "order-session stalls (orders unanswered while the venue still sends)", "page"),
        _counter_rule("TickscopeOrdersGapFilled", "tickscope_orders_gap_filled_total", window,
                      "orders gap-filled at the venue (never delivered)", "warning"),
    ]  # fmt: skip
    health = [
        {"alert": "TickscopeClockNotSynchronised", "expr": f"{CLOCK_SYNCHRONISED} == 0", "for": hold,
         "labels": {"severity": "warning"},
         "annotations": {"summary": _where(": REALTIME is not synchronised (adjtimex): wire and cross-host "
                                           "numbers may be off; check chrony/ptp4l", ())}},
        {"alert": "TickscopeTargetDown", "expr": f'up{{job="{job}"}} == 0', "for": hold,
         "labels": {"severity": "page"},
         "annotations": {"summary": "{{ $labels.instance }}: Prometheus cannot scrape tickscope "
                                    f"(job {job}): the collector is not running or not reachable"}},
        {"alert": "TickscopeNotScraped", "expr": f'absent(up{{job="{job}"}})', "for": hold,
         "labels": {"severity": "page"},
         "annotations": {"summary": f"no target of job {job} at all: tickscope is not being scraped "
                                    "(scrape config or service discovery)"}},
    ]  # fmt: skip
    return {"groups": [{"name": "tickscope-latency", "rules": latency},
                       {"name": "tickscope-loss", "rules": loss},
                       {"name": "tickscope-health", "rules": health}]}  # fmt: skip


def render_yaml(data, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars; strings as JSON strings (valid YAML double-quoted
    scalars), multi-line ones as literal blocks so a rule's PromQL reads as written."""
    pad = " " * indent
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{k}:\n{render_yaml(v, indent + 2)}")
            else:
                out.append(f"{pad}{k}: {_scalar(v, indent + 2)}")
    else:
        for item in data:
            body = (
                render_yaml(item, indent + 2)
                if isinstance(item, dict | list)
                else f"{pad}  {_scalar(item, indent + 2)}\n"
            )
            out.append(f"{pad}- {body[indent + 2 :]}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _scalar(v, indent: int) -> str:
    if isinstance(v, str) and "\n" in v:
        return "|-\n" + "".join(f"{' ' * indent}{line}\n" for line in v.split("\n")).rstrip("\n")
    if isinstance(v, dict | list):
        return "{}" if isinstance(v, dict) else "[]"
    if isinstance(v, str) and _PLAIN.match(v) and v.lower() not in _YAML_WORDS:
        return v
    return json.dumps(v)


_PLAIN = re.compile(r"^[A-Za-z_][\w.-]*$")  # reads back as this very string in YAML 1.1 and 1.2
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def rules_file(slas: list[Sla], *, window_ns: int = DEFAULT_WINDOW_NS, for_ns: int = DEFAULT_FOR_NS,
               job: str = DEFAULT_JOB, dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS) -> str:  # fmt: skip
    """The rule file's text, headed by the command that makes it again."""
    words = ["tickscope", "alerts", *(f"--sla={s.text}" for s in slas), f"--window={promql_duration(window_ns)}",
             f"--for={promql_duration(for_ns)}", f"--job={job}", f"--by={','.join(dimensions) or 'none'}"]  # fmt: skip
    options = {"window_ns": window_ns, "for_ns": for_ns, "job": job, "dimensions": tuple(dimensions)}
    return (f"# tickscope alerting rules, generated by: {shlex.join(words)}\n"
            "# Load with `rule_files: [FILE]` in prometheus.yml (docs/fleet.md#alerts).\n"
            + render_yaml(alert_rules(slas, **options)))  # fmt: skip
