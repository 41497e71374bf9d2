"""Start the bundled venue and trader on loopback as one profile subject, and stop both cleanly.

Order matters: the venue listens for FIX first; the trader binds its market-data port, logs on,
and only then does the venue start publishing (``--wait-logon``), so the first packets are not
lost to a socket that did not exist yet. With ``--fix-connect`` the trader logs on elsewhere and
the venue starts publishing after a short delay instead.

The subject's pid (for perf and py-spy) is the trader's: that is the process being measured.
Both are children of tickscope (``collectors.children``): they die with it, and are stopped with
SIGTERM, which both handle explicitly to stop cleanly whatever signals they inherited.
"""

from __future__ import annotations

import functools
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tickscope.collectors.run.cargo import build_root, cargo_error, find_cargo, stage
from tickscope.collectors.run.children import exit_description, spawn_child, stop_child
from tickscope.collectors.run.claim import ProfileError
from tickscope.collectors.run.subject import Subject
from tickscope.probe.ring import RING_DIR_ENV


@dataclass
class PipelineConfig:
    rate: float = 20_000.0
    duration_s: float | None = 30.0
    feed: str = "itch"
    loop: str = "busy"  # python: busy or asyncio; rust: busy or tokio
    load: str = "constant"
    replay: Path | None = None
    speed: str | None = None  # with replay: "1x", "2x", "max"; None: at --rate
    fix_connect: str | None = None
    sender_comp_id: str = "TICKSCOPE"
    target_comp_id: str = "VENUE"
    symbols: int = 4
    seed: int = 1
    trader: str = "python"  # or "rust": pipeline/rust_trader, built on first use
    md_port: int = 0  # 0: a free port picked at start; set beforehand when a capture must know it
    fix_port: int = 0
    ws_port: int = 0  # --feed ws: the venue's WebSocket port (0: picked at start)
    hedge_fix_port: int = 0  # the hedge venue's FIX port (0: picked at start)
    # "both" (the default): the two-venue market maker (bid and ask legs on a signal, a hedge leg to
    # a second venue), docs/pipeline.md; "one": one order per signal
    quotes: str = "both"

    @property
    def hedges(self) -> bool:
        """A second venue to hedge on: the market maker with the bundled venue (not --fix-connect)."""
        return self.quotes == "both" and not self.fix_connect

    def __post_init__(self):
        if self.fix_connect is not None:
            fix_connect_address(self.fix_connect)  # a malformed address is one line before anything starts

    def fix_ports(self) -> None:
        """Pick the free ports left at 0 now (a capture filters on them before the pipeline starts)."""
        self.md_port = self.md_port or free_port(socket.SOCK_DGRAM)
        self.fix_port = self.fix_port or free_port()
        self.ws_port = self.ws_port or free_port()
        if self.hedges:
            self.hedge_fix_port = self.hedge_fix_port or free_port()

    def as_meta(self) -> dict:
        d = asdict(self)
        d["replay"] = str(self.replay) if self.replay else None
        return {"pipeline": d}


def fix_connect_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` too) of ``--fix-connect`` -> (host, port); ProfileError otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ProfileError(
            f"--fix-connect {text!r} is not HOST:PORT (expected a FIX 4.4 acceptor's, e.g. 127.0.0.1:9878)"
        )
    return host, int(port)


# The pipeline folder beside collectors/ (in the checkout and installed alike): the pipeline is run
# from here, never imported.
RUST_TRADER_CRATE = Path(__file__).resolve().parents[2] / "pipeline" / "rust_trader"


CARGO_TIMEOUT_S = 900.0
CARGO_PROGRESS_S = 10.0  # a line this often while cargo builds: a first build takes a minute or more


def _say(message: str) -> None:
    print(f"tickscope: {message}", file=sys.stderr, flush=True)


# The tokio loop's build (``--loop tokio``): the trader's sources through tokio/Cargo.toml, which
# adds tokio. No crates registry is reachable offline, so where Debian's tokio (librust-tokio-dev)
# is installed, cargo takes crates from Debian's directory of crate sources instead; elsewhere from
# the user's own cargo cache (``cargo fetch`` there once).
TOKIO_MANIFEST = Path("tokio") / "Cargo.toml"
DEBIAN_CRATES = Path("/usr/share/cargo/registry")
TOKIO_APT = "apt-get install librust-tokio-dev"


def debian_source_config(crates: Path = DEBIAN_CRATES, needs: tuple[str, ...] = ("tokio-1.*",)) -> list[str]:
    """cargo ``--config`` arguments that replace crates.io with Debian's crate directory, when it
    holds every crate of ``needs`` (globs); none otherwise."""
    if not all(any(crates.glob(need)) for need in needs):
        return []
    return ["--config", 'source.crates-io.replace-with="debian"',
            "--config", f"source.debian.directory={str(crates)!r}"]  # fmt: skip


@functools.cache  # once per tickscope run: main builds it before the session starts, the pipeline reuses it
def build_rust_trader(crate: Path = RUST_TRADER_CRATE, *, loop: str = "busy", progress_s: float = CARGO_PROGRESS_S,
                      timeout_s: float = CARGO_TIMEOUT_S, say=_say) -> Path:  # fmt: skip
    """``cargo build --release --offline`` of pipeline/rust_trader, on a copy in the per-user cache
    (``collectors.cargo``: never inside the crate, which may sit in site-packages); cargo rebuilds
    only when its sources changed. ProfileError (one line) without cargo, with an unwritable cache
    or on a failed build. ``loop="tokio"``: the build with the tokio loop (tokio/Cargo.toml, its
    own target directory, so the two builds never rebuild each other's binaries).

    While cargo works, ``say`` gets a line every ``progress_s`` with what cargo last said (the crate
    it is compiling, or that it waits for a lock held by another build): a build that hangs is seen
    hanging, not silent for the 15 minutes it is given."""
    cargo = find_cargo()
    if cargo is None:
        raise ProfileError(
            "--trader rust needs cargo, Rust >= 1.63 (apt-get install cargo, or https://rustup.rs)"
        )
    try:
        manifest, target = stage(crate)
    except OSError as e:
        raise ProfileError(
            f"--trader rust: cannot copy the trader's sources to {build_root(crate)}: {e} "
            "(set XDG_CACHE_HOME to a writable directory)"
        ) from None
    source: list[str] = []
    if loop == "tokio":
        manifest, target = manifest.parent / TOKIO_MANIFEST, target.with_name("target-tokio")
        source = debian_source_config()
    cmd = [cargo, "build", "--release", "--offline", "--color", "never", "--manifest-path", str(manifest),
           "--target-dir", str(target), *source]  # fmt: skip
    # A child like the pipeline's: it dies with tickscope (kill -9 left cargo building on), and in
    # its own process group, so on Ctrl-C tickscope stops it (and the rustc it runs) itself.
    proc = spawn_child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    said: list[str] = []  # cargo's stderr, line by line as it comes ("Compiling ...", errors)
    reader = threading.Thread(target=lambda: said.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    start = time.monotonic()
    try:
        while True:
            try:
                proc.wait(progress_s)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - start
                if elapsed >= timeout_s:
                    raise TimeoutError from None
                say(f"building the Rust trader with cargo ({elapsed:.0f} s): {_cargo_doing(said)}")
    except TimeoutError:
        stop_child(proc, signal.SIGTERM)
        raise ProfileError(f"cargo build of {crate} did not finish in {timeout_s:.0f} s "
                           f"(last: {_cargo_doing(said)})") from None  # fmt: skip
    except BaseException:
        stop_child(proc, signal.SIGINT)
        raise
    reader.join(5.0)
    proc.stderr.close()
    if proc.returncode < 0:  # killed (the OOM killer, a kill -9): no error of its own to show
        raise ProfileError(f"cargo build of {crate} {exit_description(proc.returncode)} "
                           f"(last: {_cargo_doing(said)})")  # fmt: skip
    if proc.returncode != 0:
        why = cargo_error("".join(said))
        if loop == "tokio" and not source and "tokio" in why:
            why += f" (the tokio loop needs tokio offline: {TOKIO_APT})"
        raise ProfileError(f"cargo build of {manifest.parent} failed: {why}")
    return target / "release" / "tickscope-trader"


def _cargo_doing(said: list[str]) -> str:
    return next((line.strip() for line in reversed(said) if line.strip()), "no output yet")


_pick = random.SystemRandom()  # never the seeded module state: two runs at once pick apart


def _ephemeral_ports() -> tuple[int, int]:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port (TCP, or UDP with ``socket.SOCK_DGRAM``) nobody holds, for a venue to bind a
    moment later. Picked below the kernel's ephemeral range: a port ``bind(0)`` hands out is one
    any outgoing connection on the host may take first (two runs at once did: "cannot listen for
    FIX ... Address already in use"); below the range only a process binding that very port can."""
    lo, hi = _ephemeral_ports()
    below = range(10_000, lo) if lo > 12_000 else range(hi + 1, 65_536) if hi < 63_000 else None
    for _ in range(64 if below else 0):
        port = _pick.choice(below)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # held (or in TIME_WAIT): another
            return port
    with socket.socket(socket.AF_INET, kind) as s:  # no room outside the range: the kernel's pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


# The venue's symbols (pipeline/venue.py DEFAULT_SYMBOLS; a test keeps the two equal): the venue
# takes a count (--symbols 4), the trader the names of the WebSocket streams to subscribe.
BUNDLED_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOG", "TSLA", "AMD"]
TRADER_ORDERS_UNANSWERED = 3  # both traders' exit code when orders were left unanswered
# The hedge venue's latency profile: a slower matching engine than the primary's (which answers at
# once), so per-venue outputs have two different order round trips to show.
HEDGE_VENUE_ACK_DELAY_US = 200
HEDGE_TARGET_COMP_ID = "VENUE2"


class ReferencePipeline(Subject):
    """The venue and the trader as two process groups; ``pid`` is the trader's.

    Their logs go to the session's private ring directory (removed with it), else a temporary one.
    """

    def __init__(self, config: PipelineConfig, env: dict[str, str]):
        self.config = config
        self.stopped: set[str] = set()  # the processes we stopped, as opposed to those that ended
        private = env.get(RING_DIR_ENV)
        self.logs = (
            Path(private) / "logs" if private else Path(tempfile.mkdtemp(prefix="tickscope-pipeline-"))
        )
        self.logs.mkdir(mode=0o700, exist_ok=True)
        # Built before any process starts: a failed build leaves nothing running.
        self.rust_trader = build_rust_trader(loop=config.loop) if config.trader == "rust" else None
        self.md_port = config.md_port or free_port(socket.SOCK_DGRAM)
        self.fix_port = config.fix_port or free_port()
        self.ws_port = config.ws_port or free_port()
        self.hedge_fix_port = (config.hedge_fix_port or free_port()) if config.hedges else 0
        self.venues: list[tuple[str, subprocess.Popen]] = []
        # Both venues start before either is waited for: their interpreters boot side by side
        # instead of one after the other (the hedge venue's start was on every default run's path).
        self.venue = self._spawn_venue("venue", self._venue_argv(), env)
        if self.hedge_fix_port:
            self.hedge_venue = self._spawn_venue("venue2", self._hedge_venue_argv(), env)
        self._wait_venue("venue", self.venue, None if config.fix_connect else self.fix_port)
        if self.hedge_fix_port:
            self._wait_venue("venue2", self.hedge_venue, self.hedge_fix_port)
        argv = self._trader_argv()
        self.trader = self._spawn("trader", argv, env)
        self.pid = self.trader.pid
        self.description = "bundled pipeline: " + " ".join(argv[1 if config.trader == "rust" else 2 :])

    def _spawn_venue(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = self._spawn(name, argv, env)
        self.venues.append((name, proc))
        return proc

    def _wait_venue(self, name: str, proc: subprocess.Popen, port: int | None) -> None:
        """Until ``proc`` listens on ``port`` (None: nothing to wait for); a venue that does not is
        one line naming it, and every venue started is stopped."""
        if port is not None and not _wait_listening(port, proc, 10.0):
            code = proc.poll()
            why = _last_line(self.logs / f"{name}.err") if code is None or code >= 0 else ""
            why = why or (exit_description(code) if code is not None else "not listening after 10 s")
            for _, p in self.venues:
                stop_child(p, signal.SIGTERM)
            raise ProfileError(
                f"bundled {'hedge venue' if name == 'venue2' else 'venue'} did not start: {why}"
            )

    def _hedge_venue_argv(self) -> list[str]:
        c = self.config
        return [sys.executable, "-m", "tickscope.pipeline.venue", "--feed", "none", "--fix-port",
                str(self.hedge_fix_port), "--ack-delay-us", str(HEDGE_VENUE_ACK_DELAY_US),
                "--symbols", str(c.symbols), "--seed", str(c.seed + 1),
                *(["--replay", str(c.replay)] if c.replay else [])]  # fmt: skip

    @property
    def stopped_by_us(self) -> bool:
        return bool(self.stopped)

    def _venue_argv(self) -> list[str]:
        c = self.config
        argv = [sys.executable, "-m", "tickscope.pipeline.venue", "--md-host", "127.0.0.1",
                "--md-port", str(self.md_port), "--fix-port", str(self.fix_port), "--ws-port", str(self.ws_port),
                "--rate", str(c.rate), "--load", c.load, "--feed", c.feed, "--symbols", str(c.symbols),
                "--seed", str(c.seed)]  # fmt: skip
        if c.fix_connect:
            argv += ["--start-delay", "1.0"]
        else:
            argv += ["--wait-logon"]
        if c.replay:
            argv += ["--replay", str(c.replay)]
        if c.speed:
            argv += ["--speed", c.speed]
        return argv

    def _trader_argv(self) -> list[str]:
        c = self.config
        fix_host, fix_port = "127.0.0.1", self.fix_port
        if c.fix_connect:
            fix_host, fix_port = fix_connect_address(c.fix_connect)
        symbols = ",".join(BUNDLED_SYMBOLS[: max(1, min(c.symbols, len(BUNDLED_SYMBOLS)))])
        hedge = ["--hedge-fix-port", str(self.hedge_fix_port), "--hedge-target-comp-id", HEDGE_TARGET_COMP_ID]
        if c.trader == "rust":
            return [str(self.rust_trader), "--md-port", str(self.md_port), "--fix-host", fix_host,
                    "--fix-port", str(fix_port), "--sender-comp-id", c.sender_comp_id,
                    "--target-comp-id", c.target_comp_id, "--quotes", c.quotes, "--loop", c.loop,
                    *(hedge if self.hedge_fix_port else [])]  # fmt: skip
        return [sys.executable, "-m", "tickscope.pipeline.trader", "--feed", c.feed, "--loop", c.loop,
                "--md-port", str(self.md_port), "--ws-url", f"ws://127.0.0.1:{self.ws_port}/ws", "--symbols", symbols,
                "--fix-host", fix_host, "--fix-port", str(fix_port),
                "--sender-comp-id", c.sender_comp_id, "--target-comp-id", c.target_comp_id, "--quotes", c.quotes,
                *(hedge if self.hedge_fix_port else [])]  # fmt: skip

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.out", "wb")  # noqa: SIM115 - owned by the child
        err = open(self.logs / f"{name}.err", "wb")  # noqa: SIM115
        try:
            return spawn_child(argv, env=env, stdout=out, stderr=err)
        finally:
            out.close()
            err.close()

    def pids(self) -> list[int]:
        return [self.trader.pid, *(venue.pid for _, venue in self.venues)]

    def poll(self) -> int | None:
        code = self.trader.poll()
        for _, venue in self.venues:
            if code is None and venue.poll() is not None and venue.returncode != 0:
                # A dead venue leaves the trader waiting forever: end the session, say why.
                return venue.returncode
        return code

    def stop(self, timeout_s: float = 5.0) -> int | None:
        for name, proc in (("trader", self.trader), *self.venues):
            if proc.poll() is None:
                self.stopped.add(name)
                stop_child(proc, signal.SIGTERM, timeout_s)
        return self.trader.returncode

    def ports(self) -> dict[str, int]:
        # A capture follows the primary venue's order port only (the hedge venue's: hedge_order_port).
        ports = {"md_port": self.md_port, "order_port": self.fix_port}
        if self.config.feed == "ws":
            ports["ws_port"] = self.ws_port
        if self.hedge_fix_port:
            ports["hedge_order_port"] = self.hedge_fix_port
        return ports

    def last_words(self) -> str | None:
        """The trader's last stderr line (e.g. still waiting for its FIX acceptor when stopped):
        what explains a run that traced nothing."""
        return _last_line(self.logs / "trader.err") or None

    def failure_reason(self) -> str | None:
        """Why whichever process ended on its own failed, for the one-line error: killed by a
        signal, or its last stderr line (what it said before exiting non-zero). Failing that, a
        trader we stopped that still judged its order session failed (exit 3: orders unanswered)."""
        for name, proc in (("trader", self.trader), *self.venues):
            code = proc.poll()
            if name in self.stopped or code in (None, 0):
                continue
            return self._said(name, code)
        if self.trader.poll() == TRADER_ORDERS_UNANSWERED:
            return self._said("trader", TRADER_ORDERS_UNANSWERED)
        return None

    def _said(self, name: str, code: int) -> str:
        if code < 0:
            return f"{name} {exit_description(code)}"
        said = _last_line(self.logs / f"{name}.err") or exit_description(code)
        return said if said.startswith(f"{name}: ") else f"{name}: {said}"  # it may name itself


def start_reference_pipeline(config: PipelineConfig, env: dict[str, str]) -> ReferencePipeline:
    return ReferencePipeline(config, env)
