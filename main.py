"""tickscope command line: ``tickscope`` (console script) or ``python main.py``.

Exit codes: 0 success; 1 a verdict against the measurement: regression found (``compare``),
records lost or traces set aside with ``--fail-on-drops`` (``profile``, ``live``); 2 usage or input error (bad flag,
malformed file, unwritable output, target command missing or failing); 130 interrupted (Ctrl-C,
session saved); 3 ``compare --max-inconclusive``: more rows inconclusive than allowed. Errors are
one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

import typer
from typer._click import exceptions as click_errors  # the click typer vendors (pyproject pins that typer)
from typer._click.globals import get_current_context
from typer.core import TyperCommand, TyperGroup

PROG = "tickscope"


def _error_line(command_path: str, what: str, todo: str) -> str:
    """THE error line: ``tickscope <command>: <what> (<what to do>)``."""
    return f"{command_path}: {what}" + (f" ({todo})" if todo else "")


def _click_error_line(e) -> str:
    """Click's own usage errors (no such option, missing argument, bad value, extra argument) in
    the one-line form: its message in lower case, and the way out in parentheses."""
    ctx = getattr(e, "ctx", None)
    path = ctx.command_path if ctx is not None else PROG
    what = " ".join(e.format_message().split()).rstrip(".")
    todo = f"see {path} --help"
    hint = re.search(r"\s*\((Possible options: [^)]*)\)$|\s*(Did you mean [^?]*\?)$", what)
    if hint:
        todo = f"{(hint.group(1) or hint.group(2))[0].lower()}{(hint.group(1) or hint.group(2))[1:]}; {todo}"
        what = what[: hint.start()]
    extra = re.fullmatch(r"got unexpected extra argument(?:\(s\)|s)? \((.*)\)", what, re.I)
    if extra:
        what = f"unexpected argument {extra.group(1)}"
    if isinstance(e, click_errors.MissingParameter) and e.param is not None:
        what = f"missing {e.param.param_type_name} {_param_label(e.param)}"
    elif isinstance(e, click_errors.BadParameter) and e.param is not None:
        message = " ".join(e.message.split()).rstrip(".")
        if message.endswith(")"):  # one of ours (``_check_value``): it says what to do itself
            return _error_line(path, message, "")
        what = f"{_param_label(e.param)}: {message[:1].lower() + message[1:]}"
    return _error_line(path, what[:1].lower() + what[1:], todo)


def _param_label(param) -> str:
    if param.param_type_name == "argument":
        return param.metavar or param.name.upper()
    return max(param.opts, key=len)


class Cli(TyperGroup):
    """The ``tickscope`` group: every usage or input error, click's own included, leaves as one
    line on stderr and exit 2 (click's default is a usage block, a blank line and "Error: ...")."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        prog_name = prog_name or PROG  # not "python -m tickscope.main" in messages and usage lines
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as e:  # bare "tickscope": the help, not an error
            typer.echo(e.ctx.get_help())
            sys.exit(0)
        except click_errors.ClickException as e:
            typer.echo(_click_error_line(e), err=True)
            sys.exit(EXIT_USAGE)
        except typer.Abort:
            typer.echo(_error_line(PROG, "interrupted", ""), err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


class Command(TyperCommand):
    """Every tickscope command: usage lines and the options table written for people (``SESSION``,
    ``DURATION``, ``PATH``), not as the parser's internal types (``<list[Path]>``, ``<int range>``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for p in self.params:
            if p.metavar is None and not getattr(p, "is_flag", False):
                p.metavar = p.name.upper() if p.param_type_name == "argument" else _metavar(p)
            if p.metavar in _GRAMMARS and p.callback is None:
                p.callback = _check_value  # bad text is refused while parsing, before anything starts

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click_errors.UsageError as e:
            e.ctx = (
                ctx  # the parser's own errors name no command: "tickscope live: ...", not "tickscope: ..."
            )
            raise

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = p.metavar + ("..." if p.nargs != 1 and not p.metavar.endswith("...") else "")
                pieces.append(name if p.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record is None:
                continue
            if p.param_type_name == "argument":
                sections["Arguments"].append((p.metavar, record[1]))
                continue
            names = ", ".join(sorted(p.opts, key=len))
            if p.secondary_opts:
                names += " / " + ", ".join(p.secondary_opts)
            if not getattr(p, "is_flag", False) and p.metavar:
                names += f" {p.metavar}"
            sections["Options"].append((names, record[1]))
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


_METAVARS = {"DURATION": {"duration", "warmup", "interval", "expected_interval", "prometheus_linger",
                          "prometheus_hold", "window", "hold", "segment", "retain", "incident_window"},
             "SIZE": {"max_disk"}, "AGE:INTERVAL|off": {"decay"}, "TIME": {"window_from", "window_to"},
             "[STAGE:]PCT=LATENCY": {"alert_slas"},
             "RATE": {"rate", "rate_from", "rate_to"}, "N": {"steps", "pyspy_rate", "hiccup_cpu", "digits"},
             "[HOST:]PORT": {"prometheus"}, "HOST:PORT": {"fix_connect"}, "DIR": {"out"},
             "FILE": {"markdown", "junit", "json_out", "html", "perfetto", "replay", "output"},
             "itch|ws": {"feed"}, "busy|asyncio|tokio": {"loop"}, "python|rust": {"trader"}, "one|both": {"quotes"},
             "constant|poisson|burst": {"load"}, "PCT=SHARE,...": {"threshold"}, "SHARE": {"max_inconclusive"},
             "PCT=LATENCY,...": {"sla"}, "RATE,...": {"rates"}, "SPEED,...": {"speeds"}, "SPEED": {"speed"},
             "ID": {"sender_comp_id", "target_comp_id"}, "IFACE": {"capture_iface"}, "REGEX": {"clordid_regex"},
             "SPEC": {"md", "orders"}, "DIM[,DIM...]": {"slice_by", "by"}, "TRIGGER": {"incident"},
             "N/PERIOD": {"incident_max"}}  # fmt: skip


def _grammars() -> dict:
    """What a value of each kind must read as (the parsers the commands use): metavar -> parse(text, label)."""
    from tickscope.collectors.rings import incidents
    from tickscope.collectors.run import sweep
    from tickscope.collectors.session.units import FOREVER, parse_size
    from tickscope.collectors.side import alerting
    from tickscope.reports.analysis.compare import parse_share, parse_thresholds

    return {"DURATION": parse_duration_ns, "RATE": parse_rate, "RATE,...": lambda t, _: sweep.parse_rates(t),
            "PCT=LATENCY,...": lambda t, _: sweep.parse_sla(t), "PCT=SHARE,...": lambda t, _: parse_thresholds(t),
            "SHARE": lambda t, _: parse_share(t),
            "[STAGE:]PCT=LATENCY": lambda t, _: alerting.parse_sla(t, parse_duration_ns),
            "DURATION|forever": lambda t, what: None if t.strip().lower() == FOREVER else parse_duration_ns(t, what),
            "SIZE": parse_size, "TRIGGER": incidents.parse_trigger, "N/PERIOD": incidents.parse_rate_limit}  # fmt: skip


_GRAMMARS = {
    "DURATION",
    "RATE",
    "RATE,...",
    "PCT=LATENCY,...",
    "PCT=SHARE,...",
    "SHARE",
    "[STAGE:]PCT=LATENCY",
    "TRIGGER",
    "N/PERIOD",
}


def _check_value(ctx, param, value):
    """A click callback: the option's text read by its grammar, refused as one line (a
    ``BadParameter`` whose message says what to do); the command still gets the text."""
    if value is None:  # before the imports: a grammar's module is the collector's, ~0.1 s to import
        return value
    from tickscope.collectors.rings.incidents import IncidentError
    from tickscope.collectors.run.sweep import SweepError
    from tickscope.collectors.session import SessionError
    from tickscope.collectors.side.alerting import AlertSpecError

    try:
        for text in value if isinstance(value, list | tuple) else [value]:  # a repeatable option: each
            _grammars()[param.metavar](text, _param_label(param))
    except (UserError, SweepError, SessionError, AlertSpecError, IncidentError) as e:
        raise click_errors.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


def _metavar(param) -> str:
    for metavar, names in _METAVARS.items():
        if param.name in names:
            return metavar
    kind = param.type_descriptor
    if kind.is_path:
        return "PATH"
    return "N" if kind.annotation is int else param.name.upper()


class TargetAfterDashDash(Command):
    """A command that runs a target given after ``--`` (profile, sweep). Click's parser drops the
    ``--`` itself, so what followed it is noted here: an argument before it is a mistake
    (``profile --duration 5 sec`` ran ``sec`` as the target), not the start of a command."""

    def parse_args(self, ctx, args):
        ctx.meta[_AFTER_DASH_DASH] = args[args.index("--") + 1 :] if "--" in args else []
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- CMD [ARG...]]"]


app = typer.Typer(
    cls=Cli,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Latency profiling for low-latency trading pipelines: tick-to-trade per stage, at the tail.",
)


def command(name: str | None = None, *, cls: type[Command] = Command, **kwargs):
    """``app.command`` with tickscope's command class (``Command``, or ``TargetAfterDashDash``)."""
    return app.command(name, cls=cls, **kwargs)


EXIT_VERDICT = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = (
    3  # compare: no regression seen, but too little was decided to say so (--max-inconclusive)
)


def _quiet_on_broken_pipe(console) -> None:
    """Rich's ``Console.on_broken_pipe`` for the CLI: when stdout's reader goes away (``| head``, a
    ``| tee`` killed by the same Ctrl-C) go quiet and let the command finish with its own exit code.
    Rich's default exits 1, which here is a verdict: ``compare ... | head -1`` reported a regression
    that was not there, and an interrupted profile lost its 130 and its line on stderr."""
    console.quiet = True
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _install_quiet_on_broken_pipe() -> None:
    from rich.console import Console

    Console.on_broken_pipe = _quiet_on_broken_pipe


class UserError(Exception):
    """Anything the user can fix: printed as one line, exit code 2."""


def latest_session(root: Path = Path("sessions")) -> Path:
    """The newest session (or sweep) under ``sessions/``, for ``report``/``compare`` given none:
    newest by when its metadata was last written, named on stderr so the choice is never silent."""
    return latest_sessions(1, root)[0]


def latest_sessions(n: int, root: Path = Path("sessions")) -> list[Path]:
    """The ``n`` newest sessions under ``root``, oldest first (compare: baseline, then candidate)."""
    found = []
    for d in root.iterdir() if root.is_dir() else ():
        marker = next((d / f for f in ("meta.json", "sweep.json") if (d / f).is_file()), None)
        if marker is not None:
            found.append((marker.stat().st_mtime_ns, d.name, d))
    if len(found) < n:
        have = f"{len(found)} session{'s' if len(found) != 1 else ''}"
        raise UserError(f"no session given and {root}/ holds {have}, not {n} (name the session directory, "
                        "or run tickscope profile first)")  # fmt: skip
    chosen = [d for _, _, d in sorted(found)[-n:]]
    typer.echo(
        f"tickscope: using the newest session{'s' if n > 1 else ''}: {', '.join(map(str, chosen))}", err=True
    )
    return chosen


def _write_output(path: Path, text: str, what: str = "") -> Path:
    """Write what a renderer returned (renderers never write files): a path that cannot be written
    is one line naming it, exit 2."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {what}{path}: {e.strerror or e} (choose another path)") from None
    return path


def fail(message: str, code: int = EXIT_USAGE):
    """The one error line, ``tickscope <command>: <what> (<what to do>)``, and its exit code."""
    ctx = get_current_context(silent=True)
    typer.echo(f"{ctx.command_path if ctx is not None else PROG}: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn the project's one-line errors into a clean exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MemoryError as e:  # an address-space limit (ulimit -v), or a host short of memory
            from tickscope.collectors.session.hdr import MAX_COUNTS_LEN

            if e.args:  # a memory error that says what it could not load (the compiled kernels)
                fail(f"out of memory: {e}")
            fail(f"out of memory: a histogram takes up to {MAX_COUNTS_LEN * 8 >> 20} MB decoded and tickscope holds a "
                 "few at a time (raise the limit, ulimit -v, or record with fewer significant digits)")  # fmt: skip
        except BrokenPipeError:
            raise typer.Exit(0) from None
        except KeyboardInterrupt:  # Ctrl-C before a session started (or after it was saved)
            fail("interrupted (Ctrl-C: nothing was being saved)", 130)
        except Exception as e:
            # the error classes imported only now: their modules are the collector's, ~0.1 s of
            # every command's start (report, compare) that never raises them
            from tickscope.collectors.rings.reader import RingFormatError
            from tickscope.collectors.run.profile import ProfileError
            from tickscope.collectors.session import SessionError

            if not isinstance(e, UserError | ProfileError | SessionError | RingFormatError):
                raise
            fail(str(e))

    return wrapper


_AFTER_DASH_DASH = "tickscope.after_dash_dash"


def stray_args(ctx: typer.Context) -> list[str]:
    """What the command's own options left before ``--``."""
    return ctx.args[: len(ctx.args) - len(ctx.meta.get(_AFTER_DASH_DASH, []))]


def target_command(ctx: typer.Context, stray: list[str] | None = None) -> list[str]:
    """The target command (what followed ``--``); UserError for anything left over before it
    (``stray``: what is left once a command took what it passes on, as sweep does)."""
    after = ctx.meta.get(_AFTER_DASH_DASH, [])
    stray = stray_args(ctx) if stray is None else stray
    if stray and stray[0].startswith("-"):
        raise UserError(f"no such option: {stray[0]} (see tickscope {ctx.info_name} --help; "
                        "a target command goes after --)")  # fmt: skip
    if stray:
        raise UserError(f"unexpected argument {stray[0]!r} (a target command goes after --, "
                        f"e.g. tickscope {ctx.info_name} --duration 10s -- ./my_trader)")  # fmt: skip
    return list(after)


def option_table(fn, leave_out: set[str] = frozenset()) -> dict[str, tuple[str, bool]]:
    """A command's options as ``{"--trader": ("trader", takes_a_value), "--no-perf": ("perf", False)}``,
    read from its signature (the one declaration of its options)."""
    import inspect

    table = {}
    for name, param in inspect.signature(fn).parameters.items():
        info = param.default
        if name in leave_out or not isinstance(info, typer.models.OptionInfo):
            continue
        flag = isinstance(info.default, bool) or any("/" in d for d in info.param_decls)
        for decl in info.param_decls:
            for opt in decl.split("/"):
                table[opt] = (name, not flag)
    return table


def parse_duration_ns(text: str, what: str = "duration") -> int:
    """'50us', '1.5ms', '30s', '2m', '1h', '10' (seconds) -> exact integer nanoseconds (``units``)."""
    from tickscope.collectors.session.units import DurationError
    from tickscope.collectors.session.units import parse_duration_ns as parse

    try:
        return parse(text, what)
    except DurationError as e:
        raise UserError(str(e)) from None


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds, as ``parse_duration_ns(...) / 1e9``: ``round(s * 1e9)`` gives the nanoseconds back."""
    return parse_duration_ns(text, what) / 1e9


def parse_interval(text: str) -> float:
    """A histogram interval, in seconds: at least 10 ms (shorter ones cost more than they show)."""
    seconds = parse_duration(text, "interval")
    if seconds < 0.01:
        raise UserError(f"interval {text!r} is too short (use at least 10ms)")
    return seconds


def parse_run_duration(text: str) -> float | None:
    """A run's --duration in seconds, or None for ``forever``."""
    from tickscope.collectors.session.units import FOREVER

    return None if text.strip().lower() == FOREVER else parse_duration(text, "duration")


def parse_slices(specs: list[str]) -> list[tuple[str, ...]]:
    """``--slice venue,symbol`` -> [("venue", "symbol")]; a name twice or empty is a usage error."""
    out = []
    for spec in specs:
        dims = tuple(d.strip() for d in spec.split(","))
        if len(dims) < 2 or not all(dims) or len(set(dims)) != len(dims):
            raise typer.BadParameter(f"{spec!r}: name two or more different dimensions, e.g. venue,symbol "
                                     "(each dimension alone is always sliced)", param_hint="--slice")  # fmt: skip
        out.append(dims)
    return out


def parse_segments(duration_s: float | None, interval_s: float, segment, retain, max_disk, decay):
    """--segment/--retain/--max-disk/--decay -> a ``SegmentPolicy`` (None: a short run, unsegmented)."""
    from tickscope.collectors.session.segments import SegmentError, segment_policy
    from tickscope.collectors.session.units import DurationError

    try:
        return segment_policy(duration_s, interval_s, segment, retain, max_disk, decay)
    except (DurationError, SegmentError) as e:
        raise UserError(str(e)) from None


def parse_incidents(triggers: list[str], window: str | None, limit: str | None):
    """--incident/--incident-window/--incident-max -> an ``IncidentPolicy`` (None: no trigger)."""
    from tickscope.collectors.rings.incidents import IncidentError, IncidentPolicy

    try:
        return IncidentPolicy.parse(triggers, window, limit)
    except IncidentError as e:
        raise UserError(str(e)) from None


def parse_window(start: str | None, end: str | None):
    """--from/--to -> a ``Window`` (checked now: a typo fails before any session is read)."""
    from tickscope.collectors.session.segments import Window, WindowError

    try:
        return Window(start, end).check()
    except WindowError as e:
        raise UserError(str(e)) from None


# Options profile and live share, declared once (typer reads the same OptionInfo for both).
EXPECTED_INTERVAL_OPTION = typer.Option(
    None,
    "--expected-interval",
    help="Intended time between ticks (e.g. 50us): also record coordinated-omission-corrected tick_to_trade_co.",
)
DIMENSION_CAP_OPTION = typer.Option(
    None,
    "--dimension-cap",
    min=1,
    help="Values per dimension with their own histograms (default 16); the rest share one, 'other'.",
)
SLICE_OPTION = typer.Option(
    [], "--slice", help="Also slice by this combination of dimensions, e.g. venue,symbol (repeatable)."
)
INCIDENT_OPTION = typer.Option(
    [],
    "--incident",
    help="Write incidents/<time>/ when a trace breaches this, e.g. 'tick_to_trade>500us', "
    "'strategy>50us' or 'tick_to_trade|venue=XNAS>1ms' (repeatable).",
)
INCIDENT_WINDOW_OPTION = typer.Option(
    None, "--incident-window", help="History kept and written either side of a breach (default 100ms)."
)
INCIDENT_MAX_OPTION = typer.Option(
    None,
    "--incident-max",
    help="Incidents written per period (default 10/h); the rest are counted as suppressed.",
)
SEGMENT_HELP = "Cut the session into segments this long (default 1h for runs longer than that or forever)."
RETAIN_HELP = "Remove segments older than this (e.g. 7d); one line each time."
MAX_DISK_HELP = "Remove the oldest segments while the segments take more than this (e.g. 5GB)."
DECAY_HELP = "AGE:INTERVAL: segments older than AGE keep INTERVAL-long intervals, merged exactly (default 1d:1m), or off."
FROM_HELP = (
    "Window start: +2h (after the start), -30m (before the end) or a wall-clock time (2025-06-01T12:00)."
)
TO_HELP = "Window end, in the forms of --from."


def parse_rate(text: str, what: str = "rate") -> float:
    """'50k', '20000', '1.5k/s', '1M' -> messages per second, > 0 (``session.units``)."""
    from tickscope.collectors.session.units import RateError
    from tickscope.collectors.session.units import parse_rate as parse

    try:
        return parse(text, what)
    except RateError as e:
        raise UserError(str(e)) from None


FAIL_ON_DROPS_HELP = (
    "Exit 1 when any record was lost (dropped because a ring was full, malformed, in a quarantined "
    "or refused ring) or any trace was set aside (clock skew, late, evicted, incomplete, ...) (for CI)."
)


def records_lost(counters: dict) -> int:
    """Records, rings and traces whose data the session does not hold, for --fail-on-drops."""
    from tickscope.collectors.session import trace_accounting

    keys = ("dropped_ring_full", "malformed", "rings_quarantined", "rings_refused", "records_refused",
            "values_out_of_range")  # fmt: skip
    lost = sum(v for k in keys if isinstance(v := counters.get(k, 0), int))
    seen, recorded, _ = trace_accounting(counters) or (0, 0, {})
    return lost + seen - recorded


def print_drop_summary(console, state, fail_on_drops: bool) -> bool:
    """The capacity advice for each ring that dropped; True when --fail-on-drops should fail."""
    from tickscope.reports.console import DropAdvice

    advice = DropAdvice(state.ring_details if state is not None else [])
    if advice.lines():
        console.print(advice, soft_wrap=True)  # one line per ring: greppable, copyable
    lost = records_lost(state.counters) if state is not None else 0
    if lost and fail_on_drops:
        typer.echo(f"tickscope: records lost or traces set aside (see above): exit {EXIT_VERDICT} (--fail-on-drops)",
                   err=True)  # fmt: skip
        return True
    return False


def want_live(live: bool | None) -> bool:
    """--live/--no-live, else only on a real terminal; never on TERM=dumb (no cursor control)."""
    if os.environ.get("TERM", "") == "dumb":
        return False
    if live is not None:
        return live
    return sys.stdout.isatty() and os.environ.get("TERM", "") != ""


WATCH_HELP = (
    "Daemon mode: watch the ring directory (made if missing) for as long as this runs, say each writer "
    "attached and released; -o DIR holds one session per start (docs/live.md)."
)
LIVE_BY_HELP = "Live view: also the worst values of this dimension by tick-to-trade p99 (e.g. venue)."


def _make_view(live: bool, duration_s, live_by: str | None = None):
    if live:
        try:
            from tickscope.reports.live import LiveView

            return LiveView(by=live_by)
        except ImportError:
            pass
    from tickscope.reports.progress import PlainProgress

    return PlainProgress()


@command(cls=TargetAfterDashDash, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def profile(
    ctx: typer.Context,
    duration: str = typer.Option(
        "30s",
        "--duration",
        "-d",
        help="How long to collect (e.g. 30s, 1m30s, 7d, or forever), warm-up included. The target is stopped then.",
        metavar="DURATION|forever",
    ),
    segment: str | None = typer.Option(None, "--segment", help=SEGMENT_HELP),
    retain: str | None = typer.Option(None, "--retain", help=RETAIN_HELP),
    max_disk: str | None = typer.Option(None, "--max-disk", help=MAX_DISK_HELP),
    decay: str | None = typer.Option(None, "--decay", help=DECAY_HELP),
    rate: str = typer.Option(
        "20k", "--rate", "-r", help="Bundled pipeline: market-data messages per second (e.g. 20k)."
    ),
    warmup: str = typer.Option(
        "0s",
        "--warmup",
        help="Time recorded apart (warmup.hlog) and kept out of the headline numbers (inside --duration).",
    ),
    interval: str = typer.Option("1s", "--interval", help="Histogram interval length."),
    slowest: int = typer.Option(
        20,
        "--slowest",
        min=0,
        max=10_000,
        help="Keep the N slowest traces' stamps (report waterfalls, Perfetto).",
    ),
    expected_interval: str | None = EXPECTED_INTERVAL_OPTION,
    dimension_cap: int | None = DIMENSION_CAP_OPTION,
    slice_by: list[str] = SLICE_OPTION,
    incident: list[str] = INCIDENT_OPTION,
    incident_window: str | None = INCIDENT_WINDOW_OPTION,
    incident_max: str | None = INCIDENT_MAX_OPTION,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Session directory (default sessions/<time>-<name>, never reused)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace the session already in --out (refused without it)."
    ),
    name: str = typer.Option(
        "",
        "--name",
        help="Run name: session suffix and Prometheus pipeline label (default: pipeline or command name).",
    ),
    perf: bool = typer.Option(
        True, "--perf/--no-perf", help="perf stat counters of the target (warns if unavailable)."
    ),
    pyspy: bool = typer.Option(False, "--pyspy/--no-pyspy", help="py-spy profile of a Python target."),
    pyspy_rate: int = typer.Option(250, "--pyspy-rate", help="py-spy samples per second."),
    pyspy_nonblocking: bool = typer.Option(
        False, "--pyspy-nonblocking", help="py-spy without pausing the target."
    ),
    hiccup: bool = typer.Option(True, "--hiccup/--no-hiccup", help="Platform jitter meter (hiccup.hlog)."),
    hiccup_cpu: int | None = typer.Option(
        None,
        "--hiccup-cpu",
        help="Pin the hiccup meter to this CPU (e.g. the trader's isolated core's sibling).",
    ),
    live: bool | None = typer.Option(
        None, "--live/--no-live", help="Live TUI (default: when stdout is a terminal)."
    ),
    live_by: str | None = typer.Option(None, "--live-by", help=LIVE_BY_HELP, metavar="DIM"),
    feed: str = typer.Option(
        "itch",
        "--feed",
        help="Bundled pipeline market data: itch (ITCH 5.0 in MoldUDP64 over UDP) or ws "
        "(Binance-style depthUpdate/bookTicker over WebSocket).",
    ),
    loop: str = typer.Option(
        "busy",
        "--loop",
        help="Bundled pipeline trader loop: busy (busy-poll), asyncio (--trader python) or tokio (--trader rust).",
    ),
    trader: str = typer.Option(
        "python", "--trader", help="Bundled pipeline trader: python, or rust (built with cargo on first use)."
    ),
    quotes: str = typer.Option(
        "both",
        "--quotes",
        help="Bundled pipeline: both, the two-venue market maker (bid and ask legs, a hedge leg to a "
        "second venue; docs/pipeline.md), or one: one order per signal.",
    ),
    load: str = typer.Option(
        "constant", "--load", help="Bundled venue load model: constant, poisson or burst."
    ),
    replay: Path | None = typer.Option(
        None, "--replay", help="Bundled venue: replay an ITCH 5.0 file instead of synthetic flow."
    ),
    speed: str | None = typer.Option(
        None,
        "--speed",
        help="With --replay: 1x, 2x, 8x of the file's own timestamps, or max (default: --rate).",
    ),
    fix_connect: str | None = typer.Option(
        None, "--fix-connect", help="Send orders to another FIX 4.4 acceptor HOST:PORT."
    ),
    sender_comp_id: str = typer.Option(
        "TICKSCOPE", "--sender-comp-id", help="FIX SenderCompID with --fix-connect."
    ),
    target_comp_id: str = typer.Option(
        "VENUE", "--target-comp-id", help="FIX TargetCompID with --fix-connect."
    ),
    fail_on_drops: bool = typer.Option(False, "--fail-on-drops", help=FAIL_ON_DROPS_HELP),
    capture: bool = typer.Option(
        False, "--capture", help="Bundled pipeline: tcpdump its traffic into wire.pcap, join wire_to_wire."
    ),
    capture_iface: str | None = typer.Option(
        None, "--capture-iface", help="Interface for --capture (implies it) [default: lo]."
    ),
    prometheus: str | None = typer.Option(
        None,
        "--prometheus",
        help="Serve /metrics on [HOST:]PORT: per-stage native histograms (protobuf) and counters.",
    ),
    prometheus_linger: str = typer.Option(
        "5s",
        "--prometheus-linger",
        help="At the end, serve the final totals until scraped, at most this long.",
    ),
    prometheus_hold: str = typer.Option(
        "0s",
        "--prometheus-hold",
        help="Keep serving the final totals this long after the end (fleets: all hosts up at once).",
    ),
):
    """Profile a command that writes tickscope probes (after --), or the bundled reference pipeline.

    \b
      tickscope profile --duration 30s --rate 20k          # bundled venue + trader on loopback
      tickscope profile --duration 10s -- ./my_feed_handler --config prod.toml

    Exit codes: 0 ok; 1 records lost or traces set aside with --fail-on-drops; 2 bad input, unwritable or non-empty --out
    (see --force), or target missing/failed (its exit code or the signal that killed it is reported);
    130 interrupted by Ctrl-C (the session is saved up to that point).
    """
    from tickscope.collectors.run.engine import run
    from tickscope.collectors.run.profile import ProfileOptions, plan_profile

    opts = ProfileOptions(
        command=target_command(ctx) or None, duration_s=parse_run_duration(duration),
        warmup_s=parse_duration(warmup, "warmup"), interval_s=parse_interval(interval),
        expected_interval_ns=parse_duration_ns(expected_interval, "expected interval") if expected_interval else 0,
        out=out, force=force, name=name, rate=parse_rate(rate, "--rate"), feed=feed, loop=loop, trader=trader,
        quotes=quotes,
        load=load, replay=replay, speed=speed, fix_connect=fix_connect, sender_comp_id=sender_comp_id,
        target_comp_id=target_comp_id, perf=perf, pyspy=pyspy, pyspy_rate=pyspy_rate,
        pyspy_nonblocking=pyspy_nonblocking, hiccup=hiccup, hiccup_cpu=hiccup_cpu, capture=capture,
        capture_iface=capture_iface, prometheus=prometheus,
        prometheus_linger_s=parse_duration(prometheus_linger, "prometheus linger"),
        prometheus_hold_s=parse_duration(prometheus_hold, "prometheus hold"), slowest=slowest,
        dimension_cap=dimension_cap, slice_by=parse_slices(slice_by),
        incidents=parse_incidents(incident, incident_window, incident_max),
    )  # fmt: skip
    opts.segments = parse_segments(opts.duration_s, opts.interval_s, segment, retain, max_disk, decay)
    opts.check()
    if speed is not None:
        _check_replay_speed(replay, speed)
    result = run(plan_profile(opts, _make_view(want_live(live), opts.duration_s, live_by)))
    _print_profile(result, fail_on_drops)


def _check_replay_speed(replay: Path, speed: str) -> None:
    from tickscope.pipeline.replay import check_file

    try:
        problem = check_file(replay, speed)
    except ValueError as e:
        raise UserError(str(e)) from None
    if problem:
        typer.echo(f"tickscope: warning: {problem}", err=True)


def _print_profile(result, fail_on_drops: bool) -> None:
    """The end of a profile run: the stage table, counters, the capture's figures, warnings, then
    the exit code (drops with --fail-on-drops: 1; else the run's)."""
    from rich.console import Console

    from tickscope.reports.attribution import AttributionTable
    from tickscope.reports.console import CountersLine, StageTable

    console = Console()
    state = result.state
    if state is not None and state.tags:
        console.print(
            StageTable(state.cumulative or state.last, state.tags, title=f"session {result.session_dir}")
        )
        if state.attribution:
            console.print(AttributionTable(state.attribution))
        console.print(CountersLine(state.counters, status="complete"), soft_wrap=True)  # one line each
    else:
        console.print(f"session {result.session_dir}: no traces were recorded (did the target write probes?)",
                      soft_wrap=True)  # fmt: skip
        if state is not None and state.counters.get("produced"):  # records came: say what became of them
            console.print(CountersLine(state.counters, status="complete"), soft_wrap=True)
    if "capture" in result.conclusions:
        _print_capture(console, result.conclusions["capture"])
    for w in result.warnings:
        typer.echo(f"tickscope: warning: {w}", err=True)
    failed_on_drops = print_drop_summary(console, state, fail_on_drops)
    typer.echo(f"session saved: {result.session_dir}")
    if result.message:
        typer.echo(f"tickscope profile: {result.message}", err=True)
    raise typer.Exit(EXIT_VERDICT if failed_on_drops and result.exit_code == 0 else result.exit_code)


def _print_capture(console, conclusion) -> None:
    """The wire tags (wire_to_wire, residuals) and the capture's own drop counters, as the run
    computed them (``Conclusion``: the same rows the session got)."""
    from tickscope.collectors.side.capture import RESIDUAL_TAGS
    from tickscope.collectors.wire import refusals
    from tickscope.reports.console import StageTable

    info = conclusion.meta
    if not isinstance(info, dict) or "counters" not in info:
        return  # no capture ran (its warning says why): no figures to show
    summary = conclusion.summary
    tags = [t for t in ("wire_to_wire", *RESIDUAL_TAGS) if t in summary]
    if tags:
        console.print(StageTable({t: summary[t] for t in tags}, tags, title="wire capture"))
    c = info.get("counters", {})
    drops = [f"{info[k]} {k.removeprefix('tcpdump_').replace('_', ' ')}" for k in
             ("tcpdump_dropped_by_kernel", "tcpdump_dropped_by_interface") if k in info]  # fmt: skip
    console.print(f"capture {info.get('interface')} ({info.get('stamps')} stamps): "
                  f"{info.get('tcpdump_captured', '?')} packets, {', '.join(drops) or 'drops unknown'}; "
                  f"orders on the wire {c.get('orders_new', 0)}, matched {c.get('orders_matched', 0)}, "
                  f"unmatched {c.get('orders_unmatched', 0)}; traced orders not on the wire "
                  f"{info.get('orders_traced_not_on_wire', 0)}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    aside = info.get("set_aside")
    if isinstance(aside, dict) and aside:  # values no histogram holds: counted, never skipped in silence
        console.print("capture values set aside (not recorded): " + ", ".join(f"{k} {v:,}" for k, v in aside.items()),
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    if refusals(c):
        console.print(refusals(c), markup=False, highlight=False, soft_wrap=True)


@command()
@user_errors
def report(
    session: Path | None = typer.Argument(
        None, help="Session directory, sweep directory or .hlog file (default: the newest under sessions/)."
    ),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write a self-contained HTML report here."),
    output: Path | None = typer.Option(None, "--output", hidden=True),  # the old spelling of --out
    perfetto: Path | None = typer.Option(
        None, "--perfetto", help="Also write the slowest traces as Perfetto/Chrome trace JSON."
    ),
    window_from: str | None = typer.Option(None, "--from", help=FROM_HELP),
    window_to: str | None = typer.Option(None, "--to", help=TO_HELP),
    by: str | None = typer.Option(
        None, "--by", help="A stage table per value of this dimension (or combination recorded with --slice)."
    ),
):
    """Render a saved session: the summary table, or an HTML report with -o."""
    from rich.console import Console

    from tickscope.collectors.session import Session
    from tickscope.reports import console as console_render

    output = out or output
    session = session or latest_session()
    if (session / "sweep.json").is_file():  # a sweep directory: its table, or its load curve with -o
        return _report_sweep(session, output)
    s = Session.load(session, parse_window(window_from, window_to))
    if output is None and perfetto is None:
        Console().print(console_render.render(s), soft_wrap=True)  # warnings stay one line each
        if by is not None:
            Console().print(console_render.render_by(s, by), soft_wrap=True)
        return
    if perfetto is not None:
        from tickscope.reports import perfetto as perfetto_render

        _write_output(perfetto, perfetto_render.render(s), "trace ")
    if output is not None:
        from tickscope.reports import html

        _write_output(output, html.render(s, perfetto_path=perfetto), "report ")
        typer.echo(f"report written: {output}")
    if perfetto is not None:
        empty = "" if s.slowest else " (empty: the session kept no trace's stamps, e.g. from tickscope wire)"
        typer.echo(f"perfetto trace written: {perfetto}{empty}")


@command()
@user_errors
def wire(
    capture: Path = typer.Argument(
        ..., help="A pcap or pcapng capture (tcpdump, editcap, a capture appliance)."
    ),
    md: list[str] = typer.Option(
        ...,
        "--md",
        help="Market data: udp:PORT[:mold], or tcp:PORT:ws (the venue's WebSocket port, ws:// only) (repeatable).",
    ),
    orders: list[str] = typer.Option(
        ..., "--orders", help="Order port (the venue's): tcp:PORT[:fix] (repeatable)."
    ),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="Session directory to write [CAPTURE.session]."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace the session already in --out (refused without it)."
    ),
    clordid_tag: int = typer.Option(
        11, "--clordid-tag", min=1, help="FIX tag carrying the trace (11 ClOrdID; e.g. 9717)."
    ),
    clordid_regex: str = typer.Option(
        r"(\d+)(?:\.(\d+))?",
        "--clordid-regex",
        help="Regex on that tag's value: group 1 the trace id (MoldUDP64 sequence), group 2 (optional) "
        "the leg, which order of its tick (0 when absent).",
    ),
    chunk_bytes: int | None = typer.Option(
        None, "--chunk-bytes", min=1, hidden=True, help="Bytes of the capture read at a time (tests)."
    ),
):
    """Wire-to-wire tick-to-trade (STAC-T1 SOM to SOF) from a capture taken anywhere: a session directory."""
    from rich.console import Console

    from tickscope.collectors.session import Session
    from tickscope.collectors.wire import (
        MD_PROTOCOLS,
        ORDER_PROTOCOLS,
        Endpoint,
        OrderMapping,
        WireError,
        match_file,
        refusals,
        write_session,
    )
    from tickscope.reports import console as console_render

    try:
        md_ends = [Endpoint.parse(x, MD_PROTOCOLS) for x in md]
        md_ports = {e.port for e in md_ends if e.protocol == "mold"}
        ws_ports = {e.port for e in md_ends if e.protocol == "ws"}
        order_ports = {Endpoint.parse(x, ORDER_PROTOCOLS).port for x in orders}
        mapping = OrderMapping(clordid_tag, clordid_regex)
        m = match_file(capture, md_ports, order_ports, mapping, ws_ports, chunk_bytes)  # chunk by chunk
    except WireError as e:
        raise UserError(str(e)) from None
    err = Console(stderr=True)
    for w in m.warnings:
        err.print(f"tickscope: warning: {w}", markup=False, highlight=False, soft_wrap=True)
    c = m.counters
    typer.echo(
        f"{m.packets} packets ({m.fmt}): {c.get('md_messages', 0)} market-data messages, "
        f"{c.get('orders_new', 0)} new orders, {c.get('orders_matched', 0)} matched, "
        f"{c.get('orders_unmatched', 0)} unmatched, {c.get('orders_unmapped', 0)} without a trace id"
    )
    if refusals(c):
        typer.echo(refusals(c))
    if not m.trace.size:  # a session of no values is one report and compare can only refuse
        raise UserError(f"no order in {capture} was matched to its market data: no session written "
                        "(check --md, --orders, --clordid-tag and --clordid-regex against the counts above)")  # fmt: skip
    target = out or capture.with_name(capture.name + ".session")
    if force and target.resolve() == capture.resolve().parent:
        raise UserError(f"--force would remove {capture.name}, the capture being read (choose another --out)")
    # No host facts or doctor checks: the capture was taken elsewhere, this host measured nothing.
    options = {"capture": str(capture), "md": md, "orders": orders, "clordid_tag": clordid_tag,
               "clordid_regex": clordid_regex}  # fmt: skip
    meta = {
        "tool": "tickscope",
        "name": target.name,
        "command": f"tickscope wire {capture}",
        "options": options,
        "capture": m.source,  # digested while matching: a FIFO or pipe is read once
    }
    from tickscope.collectors.run.profile import claim_session_dir

    # As profile: a session is never overwritten (--force removes the old session's files only).
    target, lock = claim_session_dir(target, target.name, force)
    try:
        path = write_session(m, target, meta)
    finally:
        os.close(lock)
    Console().print(console_render.render(Session.load(path), recorded_warnings=False), soft_wrap=True)
    typer.echo(f"session written: {path}")


def _report_sweep(sweep_dir: Path, output: Path | None) -> None:
    from rich.console import Console

    from tickscope.collectors.run.sweep import SweepError, load_sweep
    from tickscope.reports import sweep_render

    try:
        result = load_sweep(sweep_dir)
    except SweepError as e:
        raise UserError(str(e)) from None
    if output is None:
        Console().print(sweep_render.render(result), soft_wrap=True)  # as report prints a session
        return
    _write_output(output, sweep_render.html(result, _write_step_reports(result, output)))
    typer.echo(f"report written: {output}")


# Profile options a sweep sets on each step itself, or owns under its own name: not passed through.
STEP_SETS = {"duration", "rate", "warmup", "out", "force", "expected_interval", "replay", "speed"}


def profile_passthrough(stray: list[str]) -> tuple[list[str], list[str]]:
    """Split what sweep's own options left into profile options for every step and the rest."""
    table = option_table(profile, STEP_SETS)
    taken, i = [], 0
    while i < len(stray):
        opt, eq, _ = stray[i].partition("=")
        if opt not in table:
            break
        if table[opt][1] and not eq:
            if i + 1 >= len(stray):
                raise UserError(f"option {opt} requires a value (see tickscope profile --help)")
            taken += stray[i : i + 2]
            i += 2
        else:
            taken.append(stray[i])
            i += 1
    return taken, stray[i:]


def _passthrough_help() -> str:
    names = sorted({o for o, (name, _) in option_table(profile, STEP_SETS).items() if o.startswith("--")})
    return "Every other profile option is passed to each step: " + ", ".join(names) + "."


def _write_step_reports(result, output: Path) -> dict[str, str]:
    """Each step's session report beside the sweep's page (``OUTPUT-steps/step-NN.html``), for its
    links: {step session: href relative to the page}. A step whose session cannot be read is
    named on stderr and left unlinked."""
    from tickscope.collectors.session import Session, SessionError
    from tickscope.reports import html

    folder = output.parent / f"{output.stem}-steps"
    links = {}
    for i, step in enumerate(result.steps, 1):
        try:
            text = html.render(Session.load(step.session))
        except SessionError as e:
            typer.echo(f"tickscope report: warning: step {i} not linked: {e}", err=True)
            continue
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            raise UserError(
                f"cannot write step reports in {folder}: {e.strerror or e} (choose another --out)"
            ) from None
        _write_output(folder / f"step-{i:02d}.html", text, "step report ")
        links[step.session] = f"{folder.name}/step-{i:02d}.html"
    return links


@command(
    cls=TargetAfterDashDash,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=_passthrough_help(),
)
@user_errors
def sweep(
    ctx: typer.Context,
    rates: str | None = typer.Option(None, "--rates", help="Offered rates, increasing: 5k,10k,20k,40k."),
    rate_from: str | None = typer.Option(None, "--from", help="With --to/--steps: first rate (e.g. 5k)."),
    rate_to: str | None = typer.Option(None, "--to", help="Last rate (e.g. 80k)."),
    steps: int = typer.Option(5, "--steps", help="Rates from --from to --to, evenly on a log axis."),
    duration: str = typer.Option(
        "10s", "--duration", "-d", help="Measured time per step (the warm-up comes before it, on top)."
    ),
    warmup: str = typer.Option(
        "2s", "--warmup", help="Warm-up per step, before its --duration and kept out of the figures."
    ),
    sla: str | None = typer.Option(
        None, "--sla", help="Latency budget, e.g. p99=200us,p99.9=1ms (p50 p90 p99 p99.9 p99.99 max mean)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Sweep directory (default sessions/<time>-sweep)."
    ),
    replay: Path | None = typer.Option(
        None, "--replay", help="Bundled venue: replay this ITCH 5.0 file per step."
    ),
    speeds: str | None = typer.Option(
        None, "--speeds", help="With --replay: multiples of its pace, e.g. 1x,2x,8x."
    ),
):
    """Latency against offered load: one profile session per rate, the sustainable throughput
    (highest rate meeting --sla) and the knee. The rate reaches a -- CMD as $TICKSCOPE_RATE and
    as {rate} in its arguments. Exit 0 done, 1 no rate met the SLA, 2 bad input or a failed step.

    \b
      tickscope sweep --rates 5k,10k,20k,40k --duration 10s --sla p99=200us,p99.9=1ms
      tickscope sweep --from 5k --to 80k --steps 5 -- ./my_trader --rate {rate}
      tickscope sweep --replay day.itch --speeds 1x,2x,8x --sla p99=1ms
    """
    import time as _time

    from rich.console import Console

    from tickscope.collectors.run.profile import default_session_dir
    from tickscope.collectors.run.sweep import (
        SweepError,
        geometric_rates,
        parse_rate,
        parse_rates,
        parse_sla,
        run_sweep,
    )
    from tickscope.pipeline.replay import offered_rates
    from tickscope.reports import sweep_render

    extra, stray = profile_passthrough(stray_args(ctx))
    command = target_command(ctx, stray)
    try:
        if rates is not None and (rate_from or rate_to):
            raise SweepError("--rates and --from/--to/--steps given together (give either one)")
        replayed = None
        if speeds is not None or replay is not None:
            if speeds is None or replay is None or command or rates or rate_from:
                raise SweepError(
                    "--replay and --speeds go together and without rates or a command (--replay FILE --speeds "
                    "1x,2x,8x sweeps the bundled pipeline by speed alone)"
                )
            try:
                pairs = offered_rates(replay, speeds)
            except ValueError as e:
                raise SweepError(str(e)) from None
            offered, replayed = [r for _, r in pairs], (replay, [s for s, _ in pairs])
        elif rates is not None:
            offered = parse_rates(rates)
        elif rate_from and rate_to:
            offered = geometric_rates(parse_rate(rate_from), parse_rate(rate_to), steps)
        else:
            raise SweepError("no rates given (give --rates 5k,10k,20k or --from 5k --to 80k --steps 5)")
        budget = parse_sla(sla)
    except SweepError as e:
        raise UserError(str(e)) from None
    from tickscope.collectors.session.units import format_duration

    duration_ns, warmup_ns = parse_duration_ns(duration, "duration"), parse_duration_ns(warmup, "warmup")
    if duration_ns <= 0:
        raise UserError(f"--duration {duration!r} measures nothing (give each step a positive duration)")
    # Each step is a profile run of warm-up + measured time (profile's --duration holds its warm-up).
    step_duration = format_duration(duration_ns + warmup_ns)
    step_s, warmup_s = (duration_ns + warmup_ns) / 1e9, warmup_ns / 1e9
    sweep_dir = out or default_session_dir("sweep")
    try:
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise UserError(f"{sweep_dir} is not empty (choose another --out)")
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a path under a file (NotADirectoryError)
        raise UserError(
            f"cannot write sweep directory {sweep_dir}: {e.strerror or e} (choose another --out)"
        ) from None
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))  # CI logs: never squeeze the numbers
    t0 = _time.monotonic()

    running = sweep_render.RunningTable()

    def on_step(step):
        console.print(running.row(step), highlight=False, soft_wrap=True, markup=False)

    result = run_sweep(
        sweep_dir,
        offered,
        step_duration,
        step_s,
        warmup,
        warmup_s,
        budget,
        command,
        extra=extra,
        on_step=on_step,
        replay=replayed,
        cli=[sys.executable, "-m", "tickscope.main"],
    )
    console.print(sweep_render.table(result))
    for line in sweep_render.headline(result):
        typer.echo(line)
    typer.echo(
        f"sweep saved: {sweep_dir} ({_time.monotonic() - t0:.0f} s; tickscope report {sweep_dir} -o sweep.html)"
    )
    if result.interrupted:
        typer.echo(f"tickscope sweep: {result.stopped}", err=True)
        raise typer.Exit(130)
    if any(s.error for s in result.steps):
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_VERDICT if budget and result.sustainable_rate is None else 0)


@command(context_settings={"ignore_unknown_options": True})  # lets "--vs" through as a separator
@user_errors
def compare(
    baseline: list[Path] = typer.Argument(
        None,
        metavar="SESSION...",
        help="BASELINE CANDIDATE, or BASE... --vs CAND... for repeated runs (session dirs or .hlog files; "
        "default: the two newest under sessions/, older first).",
    ),
    out: Path | None = typer.Option(
        None,
        "-o",
        "--out",
        help="Write every output into this directory: compare.md, compare.xml (JUnit), compare.json, compare.html.",
    ),
    threshold: str | None = typer.Option(None, "--threshold", help="Per percentile, e.g. p50=5%,p99=10%."),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Write a Markdown report (for $GITHUB_STEP_SUMMARY)."
    ),
    junit: Path | None = typer.Option(
        None, "--junit", help="Write JUnit XML (one testcase per stage x percentile)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the comparison as JSON."),
    html: Path | None = typer.Option(
        None, "--html", help="Write an HTML comparison with overlaid percentile plots."
    ),
    max_inconclusive: str | None = typer.Option(
        None,
        "--max-inconclusive",
        help="Fail (exit 3) when more than this share of rows is inconclusive, e.g. 50%.",
    ),
    window_from: str | None = typer.Option(None, "--from", help=FROM_HELP + " Applied to every session."),
    window_to: str | None = typer.Option(None, "--to", help=TO_HELP),
    by: str | None = typer.Option(
        None,
        "--by",
        help="Judge each value of this dimension (or combination recorded with --slice) on its own.",
    ),
):
    """Compare BASELINE CANDIDATE sessions. Exit 0: no regression, 1: regression, 2: bad input,
    3: more rows inconclusive than --max-inconclusive allows.

    \b
      tickscope compare base/ cand/
      tickscope compare base1/ base2/ --vs cand1/ cand2/ --markdown $GITHUB_STEP_SUMMARY
    """
    from rich.console import Console

    from tickscope.collectors.session import Session
    from tickscope.reports import compare_render
    from tickscope.reports.analysis.compare import compare_sessions, parse_share

    paths = [str(p) for p in baseline or latest_sessions(2)]
    unknown = [p for p in paths if p.startswith("-") and p != "--vs"]
    if unknown:
        raise UserError(f"no such option: {unknown[0]} (see tickscope compare --help)")
    if paths.count("--vs") > 1:
        raise UserError("--vs given twice (give it once, between the baselines and the candidates)")
    if "--vs" in paths:
        i = paths.index("--vs")
        baselines, candidates = paths[:i], paths[i + 1 :]
    elif len(paths) == 2:
        baselines, candidates = paths[:1], paths[1:]
    else:
        raise UserError(
            f"{len(paths)} sessions but no --vs (give BASELINE CANDIDATE, or BASE... --vs CAND... for repeated runs)"
        )
    if not baselines or not candidates:
        raise UserError("nothing on one side of --vs (give at least one baseline and one candidate)")
    limit = parse_share(max_inconclusive)
    window = parse_window(window_from, window_to)
    base, cand = [Session.load(p, window) for p in baselines], [Session.load(p, window) for p in candidates]
    result = compare_sessions(base, cand, threshold, by)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))  # CI logs: never squeeze the numbers
    console.print(compare_render.render(result), soft_wrap=True)  # a warning stays one line, however long
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot write {out}: {e.strerror or e} (choose another --out)") from None
        markdown, junit, json_out, html = (markdown or out / "compare.md", junit or out / "compare.xml",
                                           json_out or out / "compare.json", html or out / "compare.html")  # fmt: skip
    outputs = ((markdown, compare_render.markdown), (junit, compare_render.junit), (json_out, compare_render.json_text),
               (html, lambda c: compare_render.html(c, base, cand)))  # fmt: skip
    for path, render in outputs:
        if path is not None:
            _write_output(path, render(result))
    if out is not None:
        typer.echo(f"comparison written: {out}/ (compare.md, compare.xml, compare.json, compare.html)")
    if result.regressions:
        raise typer.Exit(EXIT_VERDICT)
    if limit is not None and result.inconclusive_share() > limit:
        typer.echo(f"tickscope compare: {len(result.inconclusive)} of {len(result.rows)} comparisons inconclusive, "
                   f"more than --max-inconclusive {limit:.0%}: failing (exit 3)")  # fmt: skip
        raise typer.Exit(EXIT_INCONCLUSIVE)


@command()
@user_errors
def live(
    rings: list[Path] = typer.Argument(
        None, help="Ring files or a ring directory (default $TICKSCOPE_RING_DIR)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also save the session here."),
    duration: str | None = typer.Option(
        None,
        "--duration",
        "-d",
        help="Stop after this long, or forever (the default: until Ctrl-C).",
        metavar="DURATION|forever",
    ),
    segment: str | None = typer.Option(None, "--segment", help=SEGMENT_HELP),
    retain: str | None = typer.Option(None, "--retain", help=RETAIN_HELP),
    max_disk: str | None = typer.Option(None, "--max-disk", help=MAX_DISK_HELP),
    decay: str | None = typer.Option(None, "--decay", help=DECAY_HELP),
    live: bool | None = typer.Option(
        None, "--live/--no-live", help="Live TUI (default: when stdout is a terminal)."
    ),
    live_by: str | None = typer.Option(None, "--live-by", help=LIVE_BY_HELP, metavar="DIM"),
    fail_on_drops: bool = typer.Option(False, "--fail-on-drops", help=FAIL_ON_DROPS_HELP),
    force: bool = typer.Option(False, "--force", help="Replace the session already in --out."),
    watch: bool = typer.Option(False, "--watch", help=WATCH_HELP),
    perf: bool | None = typer.Option(
        None, "--perf/--no-perf", help="perf stat counters, system-wide or of --perf-pid (default: with -o)."
    ),
    perf_pid: int | None = typer.Option(
        None, "--perf-pid", help="perf stat of this process only.", metavar="PID"
    ),
    pyspy_pid: int | None = typer.Option(
        None,
        "--pyspy-pid",
        help="py-spy profile of this Python process (profile.speedscope.json).",
        metavar="PID",
    ),
    pyspy_rate: int = typer.Option(250, "--pyspy-rate", help="py-spy samples per second."),
    pyspy_nonblocking: bool = typer.Option(
        False, "--pyspy-nonblocking", help="py-spy without pausing the target."
    ),
    hiccup: bool | None = typer.Option(
        None, "--hiccup/--no-hiccup", help="Platform jitter meter (hiccup.hlog) (default: with -o)."
    ),
    hiccup_cpu: int | None = typer.Option(None, "--hiccup-cpu", help="Pin the hiccup meter to this CPU."),
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Serve /metrics on [HOST:]PORT, as profile does."
    ),
    name: str = typer.Option(
        "live", "--name", help="The pipeline's name: its Prometheus pipeline label, kept across restarts."
    ),
    prometheus_linger: str = typer.Option(
        "5s",
        "--prometheus-linger",
        help="At the end, serve the final totals until scraped, at most this long.",
    ),
    prometheus_hold: str = typer.Option(
        "0s",
        "--prometheus-hold",
        help="Keep serving the final totals this long after the end (fleets: all hosts up at once).",
    ),
    warmup: str = typer.Option(
        "0s", "--warmup", help="Time recorded apart (warmup.hlog) and kept out of the headline numbers."
    ),
    interval: str = typer.Option("1s", "--interval", help="Histogram interval length (at least 10ms)."),
    expected_interval: str | None = EXPECTED_INTERVAL_OPTION,
    dimension_cap: int | None = DIMENSION_CAP_OPTION,
    slice_by: list[str] = SLICE_OPTION,
    incident: list[str] = INCIDENT_OPTION,
    incident_window: str | None = INCIDENT_WINDOW_OPTION,
    incident_max: str | None = INCIDENT_MAX_OPTION,
):
    """Attach the live view to the rings of an already running pipeline.

    \b
      tickscope live                          # every ring in $TICKSCOPE_RING_DIR (or /dev/shm/tickscope)
      tickscope live /dev/shm/tickscope/trader.4242.ring --duration 10s -o sessions/attach
      tickscope live --watch /dev/shm/tickscope -o /var/lib/tickscope --retain 7d --prometheus 9464

    Only regular files of your own user are opened (never through a symbolic link); each ring
    skipped is printed with its reason. Exit codes as for profile.
    """
    from rich.console import Console

    from tickscope.collectors.run.attach import attach
    from tickscope.collectors.run.sides import SideOptions
    from tickscope.reports.attribution import AttributionTable
    from tickscope.reports.console import CountersLine, StageTable

    duration_s = parse_run_duration(duration) if duration else None
    interval_s = parse_interval(interval)
    # live runs until Ctrl-C by default: a long run unless --duration says otherwise
    segments = parse_segments(duration_s, interval_s, segment, retain, max_disk, decay) if out else None
    incidents = parse_incidents(incident, incident_window, incident_max)
    if incidents is not None and out is None:
        raise UserError("--incident writes incidents into the session (add --out DIR)")
    if watch and force:
        raise UserError(
            "--watch writes a new session under -o at every start, so --force has nothing to replace (drop it)"
        )
    saving = out is not None  # perf and the hiccup meter write into the session: on with -o unless asked
    sides = SideOptions(perf=(saving or perf_pid is not None) if perf is None else perf, perf_pid=perf_pid, pyspy=pyspy_pid is not None,
                        pyspy_pid=pyspy_pid, pyspy_rate=pyspy_rate, pyspy_nonblocking=pyspy_nonblocking,
                        hiccup=saving if hiccup is None else hiccup, hiccup_cpu=hiccup_cpu, prometheus=prometheus,
                        prometheus_linger_s=parse_duration(prometheus_linger, "prometheus linger"),
                        prometheus_hold_s=parse_duration(prometheus_hold, "prometheus hold"))  # fmt: skip
    result = attach(rings or [], _make_view(want_live(live), duration_s, live_by), out=out, duration_s=duration_s,
                    force=force, name=name, sides=sides, watch=watch,
                    warmup_s=parse_duration(warmup, "warmup"), interval_s=interval_s,
                    expected_interval_ns=parse_duration_ns(expected_interval, "expected interval")
                    if expected_interval else 0, segments=segments, dimension_cap=dimension_cap,
                    slice_by=parse_slices(slice_by), incidents=incidents)  # fmt: skip
    for w in result.warnings:
        typer.echo(f"tickscope: warning: {w}", err=True)
    console = Console()
    state = result.state
    if state.tags:
        console.print(StageTable(state.cumulative or state.last, state.tags, title="live (attached)"))
        if state.attribution:
            console.print(AttributionTable(state.attribution))
    if state.counters:
        console.print(CountersLine(state.counters, status="complete"), soft_wrap=True)  # one line each
    failed_on_drops = print_drop_summary(console, state, fail_on_drops)
    if result.session_dir:
        typer.echo(f"session saved: {result.session_dir}")
    raise typer.Exit(EXIT_VERDICT if failed_on_drops and result.exit_code == 0 else result.exit_code)


@command()
@user_errors
def merge(
    out: Path = typer.Argument(..., help="New session directory for the merged result."),
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...", help="Session directories or .hlog files; HOST=PATH labels an input."
    ),
    digits: int | None = typer.Option(
        None, "--digits", help="Significant digits of the result (default: the coarsest input's)."
    ),
    window_from: str | None = typer.Option(None, "--from", help=FROM_HELP + " Applied to every input."),
    window_to: str | None = typer.Option(None, "--to", help=TO_HELP),
):
    """Exact union of sessions from several hosts/processes/days, aligned on absolute time.

    \b
      tickscope merge fleet/ ny4/sessions/run1 ld4/sessions/run1
      tickscope report fleet/        # per host: <host>/<stage>; fleet-wide: <stage>
    """
    from tickscope.collectors.session.merge import merge as merge_sessions

    result = merge_sessions(inputs, out, digits=digits, window=parse_window(window_from, window_to))
    for w in result.warnings:
        typer.echo(f"tickscope: warning: {w}", err=True)
    typer.echo(f"merged {len(inputs)} inputs from {len(result.hosts)} host(s) ({', '.join(result.hosts)}): "
               f"{result.intervals} intervals at {result.digits} significant digits")  # fmt: skip
    typer.echo(f"session saved: {result.out}")


@command()
@user_errors
def doctor(json_output: bool = typer.Option(False, "--json", help="Findings as JSON.")):
    """Is this host fit to measure latency? Each finding comes with its fix."""
    from rich.console import Console

    from tickscope.collectors.run.doctor import run_checks
    from tickscope.reports import doctor as doctor_render

    findings = [f.as_dict() for f in run_checks()]
    if json_output:
        typer.echo(json.dumps(findings, indent=2))
    else:
        Console().print(doctor_render.render(findings))


@command()
@user_errors
def bench(
    json_output: bool = typer.Option(False, "--json", help="One JSON object on the last line."),
    quick: bool = typer.Option(False, "--quick", help="Smaller sizes (for tests)."),
):
    """Probe overhead and collector throughput on this host, with ratios measured side by side."""
    from tickscope.collectors.run.bench import run_all
    from tickscope.reports import bench as bench_render

    results = run_all(quick=quick, progress=None if json_output else lambda msg: typer.echo(msg, err=True))
    if json_output:
        typer.echo(json.dumps(results))
    else:
        from rich.console import Console

        Console().print(bench_render.render(results))


@command()
@user_errors
def alerts(
    alert_slas: list[str] = typer.Option(
        None,
        "--sla",
        help="[STAGE:]pQ=DURATION, e.g. p99=500us or feed:p99.9=50us; repeat for more "
        "[default: tick_to_trade:p99=1ms].",
    ),
    window: str = typer.Option("5m", "--window", help="What each rate/increase looks back over."),
    hold: str = typer.Option(
        "2m", "--for", help="How long a breach, unsynchronised clock or lost target lasts before it fires."
    ),
    job: str = typer.Option("tickscope", "--job", help="The Prometheus scrape job of tickscope targets."),
    by: str = typer.Option(
        "venue",
        "--by",
        help="Also judge each SLA per value of these dimensions, each alone, with a dashboard "
        "panel per dimension ('none': neither).",
    ),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write the rule file here (default: stdout)."),
    dashboard: Path | None = typer.Option(
        None, "--dashboard", help="Also write the Grafana dashboard JSON here."
    ),
):
    """Prometheus alerting rules (and the Grafana dashboard) for what --prometheus exports.

    \b
      tickscope alerts --sla p99=500us --sla feed:p99=50us -o /etc/prometheus/tickscope-alerts.yml
      tickscope alerts --by venue,symbol --dashboard tickscope-dashboard.json -o tickscope-alerts.yml
    """
    from tickscope.collectors.side import alerting
    from tickscope.collectors.side.dashboard import render_json

    try:
        slas = [alerting.parse_sla(text, parse_duration_ns) for text in alert_slas or [alerting.DEFAULT_SLA]]
    except alerting.AlertSpecError as e:
        raise UserError(str(e)) from None
    options = {"window_ns": parse_duration_ns(window, "--window"), "for_ns": parse_duration_ns(hold, "--for")}
    if options["window_ns"] < 10**9:
        raise UserError(f"--window {window!r}: at least 1s (a rate needs two scrapes inside it)")
    dimensions = () if by.strip() == "none" else tuple(d.strip() for d in by.split(","))
    if not all(dimensions) or len(set(dimensions)) < len(dimensions):
        raise UserError(
            f"--by {by!r} is not a list of dimensions (name each once, e.g. venue,symbol, or none)"
        )
    text = alerting.rules_file(slas, job=job, dimensions=dimensions, **options)
    if out is None:
        typer.echo(text, nl=False)
    else:
        _write_output(out, text, "rules ")
    if dashboard is not None:
        _write_output(dashboard, render_json(dimensions), "dashboard ")


@command("include-dir")
def include_dir_command():
    """Print the directory of the C/C++ probe header: cc -I"$(tickscope include-dir)" ..."""
    from tickscope.probe import include_dir

    typer.echo(include_dir())


def tool_version() -> str:
    from tickscope.collectors.run.metadata import tool_version

    return tool_version()


def _print_version(value: bool):
    if value:
        typer.echo(f"tickscope {tool_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
):
    """Latency profiling for low-latency trading pipelines: tick-to-trade per stage, at the tail."""
    _install_quiet_on_broken_pipe()  # before any command prints


def main() -> None:
    app()


if __name__ == "__main__":
    main()
