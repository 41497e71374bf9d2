"""Building the Rust crates tickscope ships (the probe crate ``probe/rust`` for ``bench``, the trader
``pipeline/rust_trader`` for ``--trader rust``) with the user's cargo, from a checkout or an
installed package alike.

Cargo writes next to the sources it builds: ``Cargo.lock`` beside ``Cargo.toml``, and ``target/``
unless told otherwise. Installed, the sources sit in site-packages (read-only for a system-wide
install, and not ours to litter in any case), so every build runs on a copy in the per-user cache:
``$XDG_CACHE_HOME/tickscope/cargo/<root>-<hash of the root's path>/`` (``~/.cache/...`` by
default), holding both crates and ``target/``. One copy per checkout or installation: two
worktrees never overwrite each other's binaries. Files are copied only when their bytes differ,
with their mtimes, so cargo (which decides from mtimes) rebuilds only what changed. The directory
can be deleted at any time; the next build recreates it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

# The crates, relative to the package root (the directory holding probe/ and pipeline/, in a
# checkout and installed). Both are mirrored together: the trader names the probe crate by the
# relative path ../../probe/rust, which stays true in the copy.
SHIPPED_CRATES = ("probe/rust", "pipeline/rust_trader")
NOT_SOURCES = {"target", "Cargo.lock"}  # what cargo writes beside a Cargo.toml: never copied, never removed


def find_cargo() -> str | None:
    """The first cargo on PATH, else rustup's (``$CARGO_HOME/bin``, ``~/.cargo/bin``), which a shell
    that did not read the profile rustup edited (cron, CI steps, ``env -i``) does not have on PATH."""
    homes = [os.environ.get("CARGO_HOME"), os.path.expanduser("~/.cargo")]
    return shutil.which("cargo") or next(
        (str(c) for h in homes if h and os.access(c := Path(h) / "bin" / "cargo", os.X_OK)), None
    )


def cargo_error(stderr: str) -> str:
    """cargo's first error on one line: with its ``Caused by:`` chain (where the reason usually is,
    e.g. "lock file version 4 requires `-Znext-lockfile-bump`" under "failed to parse lock file"),
    or for a compile error with the source location (``--> src/main.rs:3:5``)."""
    lines = stderr.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("error")), None)
    if first is None:
        return next((line.strip() for line in lines if line.strip()), "no output")
    chain = [lines[first].strip()]
    for line in lines[first + 1 :]:
        text = line.strip()
        if not text or text == "Caused by:":
            continue
        if line.startswith(("error", "warning")) or text.startswith("|"):
            break
        chain.append(text)
        if text.startswith("-->"):  # a compile error: its location, not the source excerpt
            break
    return ": ".join(chain)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tickscope/cargo``, or ``~/.cache/tickscope/cargo``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tickscope" / "cargo"


def build_root(crate: Path) -> Path:
    """Where ``crate`` (one of SHIPPED_CRATES under some package root) is copied and built."""
    root = Path(crate).resolve().parents[1]
    return cache_dir() / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def stage(crate: Path) -> tuple[Path, Path]:
    """Copy the shipped crates beside ``crate`` into its ``build_root``; (the copy's Cargo.toml,
    the target directory). OSError when the cache cannot be written."""
    crate = Path(crate).resolve()
    root, build = crate.parents[1], build_root(crate)
    for rel in SHIPPED_CRATES:
        if (root / rel / "Cargo.toml").is_file():
            _mirror(root / rel, build / rel)
    return build / crate.relative_to(root) / "Cargo.toml", build / "target"


def _mirror(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s files (what cargo wrote aside), copying only those that differ."""
    wanted = set()
    for top, dirs, files in os.walk(src):
        crate_root = "Cargo.toml" in files  # the crate's, or a nested one's (rust_trader/tokio)
        if crate_root:
            dirs[:] = [d for d in dirs if d not in NOT_SOURCES]
        rel = Path(top).relative_to(src)
        for name in files:
            if crate_root and name in NOT_SOURCES:
                continue
            wanted.add(rel / name)
            s, d = Path(top) / name, dst / rel / name
            if d.is_file() and d.stat().st_size == s.stat().st_size and d.read_bytes() == s.read_bytes():
                continue
            d.parent.mkdir(parents=True, exist_ok=True)
            # A concurrent build of the same copy must never read a half-written source file.
            fd, tmp = tempfile.mkstemp(dir=d.parent, prefix=f".{name}.")
            os.close(fd)
            shutil.copy2(s, tmp)
            os.replace(tmp, d)
    for top, dirs, files in os.walk(dst):
        crate_root = "Cargo.toml" in files
        if crate_root:
            dirs[:] = [d for d in dirs if d not in NOT_SOURCES]
        rel = Path(top).relative_to(dst)
        for name in files:
            # Dot files are left alone: another build's copy in flight is one.
            if (
                (rel / name) not in wanted
                and not name.startswith(".")
                and not (crate_root and name in NOT_SOURCES)
            ):
                (Path(top) / name).unlink(missing_ok=True)  # a source removed since the last copy
