"""``tickscope profile``: its options, checked, become a ``RunPlan`` for the run engine.

The subject is any command that writes probes into ``$TICKSCOPE_RING_DIR`` (set by the engine to a
fresh private directory), or the bundled reference pipeline. Side collectors (perf, py-spy, hiccup,
a wire capture, the Prometheus exporter) are chosen here; the engine runs them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from tickscope.collectors.rings.incidents import IncidentPolicy
from tickscope.collectors.run.claim import (  # noqa: F401 - where callers have always found them
    RING_DIR_PREFIX,
    SESSION_FILES,
    SESSIONS_DIR,
    ProfileError,
    claim_session_dir,
    default_session_dir,
    private_ring_dir,
    remove_stale_ring_dirs,
)
from tickscope.collectors.run.engine import RunPlan, RunResult, View, run, with_side_rows  # noqa: F401
from tickscope.collectors.run.metadata import run_meta
from tickscope.collectors.run.sides import SideOptions, side_collectors
from tickscope.collectors.run.subject import CommandSubject, Subject  # noqa: F401
from tickscope.collectors.session.dimensions import DEFAULT_CAP
from tickscope.collectors.session.segments import SegmentPolicy

ProfileResult = RunResult


@dataclass
class ProfileOptions(SideOptions):  # the side collectors' options: sides.py
    command: list[str] | None = None
    duration_s: float | None = 30.0
    warmup_s: float = 0.0
    interval_s: float = 1.0
    expected_interval_ns: int = 0
    slowest: int = 20  # the N slowest traces whose stamps the session keeps (slowest.json)
    dimension_cap: int | None = None  # None: the collector's DEFAULT_CAP
    slice_by: list[tuple[str, ...]] = field(default_factory=list)
    out: Path | None = None
    force: bool = False  # replace the session already in ``out``
    name: str = ""  # default: the pipeline's or the command's name
    # the bundled pipeline
    rate: float = 20_000.0
    feed: str = "itch"
    loop: str = "busy"
    trader: str = "python"
    quotes: str = "both"  # the two-venue market maker; "one": an order per signal
    load: str = "constant"
    replay: Path | None = None
    speed: str | None = None
    fix_connect: str | None = None
    sender_comp_id: str = "TICKSCOPE"
    target_comp_id: str = "VENUE"
    extra_meta: dict = field(default_factory=dict)
    segments: SegmentPolicy | None = None  # a long run: cut into segments (collectors/session/segments.py)
    incidents: IncidentPolicy | None = None  # --incident (collectors/rings/incidents.py)

    def check(self) -> None:
        """Options that contradict each other or the host: one ``ProfileError`` line each."""
        if self.feed not in ("itch", "ws"):
            raise ProfileError(f"--feed {self.feed!r} is not a feed (expected itch, ITCH 5.0 over MoldUDP64/UDP, or "
                               "ws, a Binance-style WebSocket)")  # fmt: skip
        if self.feed == "ws" and self.replay is not None:
            raise ProfileError(
                "--replay replays ITCH 5.0 files, not a WebSocket feed (use it with --feed itch)"
            )
        if self.loop not in ("busy", "asyncio", "tokio"):
            raise ProfileError(f"--loop {self.loop!r} is not a loop (expected busy, asyncio with --trader python, or "
                               "tokio with --trader rust)")  # fmt: skip
        if self.trader not in ("python", "rust"):
            raise ProfileError(f"--trader {self.trader!r} is not a trader (expected python or rust)")
        if self.trader == "rust" and (self.feed != "itch" or self.loop == "asyncio"):
            raise ProfileError(
                "--trader rust reads the ITCH feed with a busy-poll or tokio loop (drop --feed ws / --loop asyncio)"
            )
        if self.trader == "python" and self.loop == "tokio":
            raise ProfileError("--loop tokio runs the Rust trader (add --trader rust, or use --loop asyncio)")
        if self.quotes not in ("one", "both"):
            raise ProfileError(
                f"--quotes {self.quotes!r} is not a quoting mode (expected one, an order per signal, or both, the market maker)"
            )
        if self.load not in ("constant", "poisson", "burst"):
            raise ProfileError(
                f"--load {self.load!r} is not a load model (expected constant, poisson or burst)"
            )
        if self.replay is not None and not self.replay.is_file():
            raise ProfileError(f"--replay {self.replay}: no such file (give an ITCH 5.0 file)")
        if self.speed is not None and self.replay is None:
            raise ProfileError("--speed paces a --replay FILE, and none was given (give the ITCH file too)")

    def meta_options(self) -> dict:
        return {"duration_s": self.duration_s, "warmup_s": self.warmup_s, "interval_s": self.interval_s}


def plan_profile(o: ProfileOptions, view: View | None) -> RunPlan:
    """The checked options as a plan: the subject (a command, or the bundled pipeline with its
    ports fixed up front), the side collectors, the session's run metadata."""
    options = o.meta_options()
    capture_ports: dict[str, int] = {}
    if o.command:
        name = o.name or Path(o.command[0]).name
        start_subject = functools.partial(CommandSubject, o.command)
    else:
        from tickscope.collectors.run.launch import (
            PipelineConfig,
            build_rust_trader,
            fix_connect_address,
            start_reference_pipeline,
        )

        config = PipelineConfig(
            rate=o.rate, duration_s=o.duration_s, feed=o.feed, loop=o.loop, load=o.load, replay=o.replay,
            speed=o.speed, fix_connect=o.fix_connect, sender_comp_id=o.sender_comp_id,
            target_comp_id=o.target_comp_id, trader=o.trader, quotes=o.quotes,
        )  # fmt: skip
        rust_name = "pipeline-rust" if o.loop == "busy" else f"pipeline-rust-{o.loop}"
        name = o.name or (f"pipeline-{o.feed}-{o.loop}" if o.trader == "python" else rust_name)
        if o.trader == "rust":
            build_rust_trader(
                loop=o.loop
            )  # before the session exists: no cargo, or a failed build, is one line
        config.fix_ports()  # known before the session starts: its meta.json and a capture's filter name them
        options.update(config.as_meta())
        start_subject = functools.partial(start_reference_pipeline, config)
        if o.capture or o.capture_iface is not None:  # tcpdump listens before the first packet is sent
            # the orders go where --fix-connect sends them, not to the bundled venue's unused port
            order_port = fix_connect_address(o.fix_connect)[1] if o.fix_connect else config.fix_port
            capture_ports = {"md_port": config.md_port, "order_port": order_port}
            if config.hedges:  # the hedge leg's orders go to the second venue
                capture_ports["hedge_order_port"] = config.hedge_fix_port
            if o.feed == "ws":  # market data is the venue's side of its WebSocket port
                capture_ports["ws_port"] = config.ws_port
    o.check_sides(attached=False)
    return RunPlan(
        name=name, start_subject=start_subject, out=o.out, force=o.force,
        meta={**run_meta(options), **o.extra_meta}, duration_s=o.duration_s, interval_s=o.interval_s,
        warmup_s=o.warmup_s, expected_interval_ns=o.expected_interval_ns, slowest=o.slowest, side=side_collectors(o, name, capture_ports),
        view=view, segments=o.segments, dimension_cap=o.dimension_cap or DEFAULT_CAP, slice_by=o.slice_by,
        incidents=o.incidents,
    )  # fmt: skip
