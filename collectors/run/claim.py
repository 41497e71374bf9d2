"""Where a run writes: its session directory, claimed (locked, never overwritten), and its private
ring directory (named after our pid, so a later run can remove what a killed one left)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from tickscope.collectors.run.children import pid_alive
from tickscope.collectors.session import (
    HICCUP_LOG,
    LATENCY_LOG,
    META,
    PERF_CSV,
    PROFILE,
    SLOWEST,
    SUMMARY,
    WARMUP_LOG,
)
from tickscope.collectors.side.capture import CAPTURE_FILE

# What a session consists of: removed from an --out that is replaced with --force, nothing else
# (a capture left there would sit in the new session as if it were its own).
SESSION_FILES = {META, LATENCY_LOG, WARMUP_LOG, SUMMARY, SLOWEST, PERF_CSV, PROFILE, HICCUP_LOG, CAPTURE_FILE}


class ProfileError(Exception):
    """A user-facing failure of a run (profile, live, sweep): one line, exit code 2."""


SESSIONS_DIR = Path("sessions")
RING_DIR_PREFIX = "tickscope-rings-"


def default_session_dir(name: str, base: Path | None = None) -> Path:
    """``sessions/<time>-<name>`` (or under ``base``), created here: mkdir is exclusive, so a second run started in the
    same second gets ``-2`` (then ``-3``...) instead of writing into the first one's session."""
    parent = SESSIONS_DIR if base is None else base
    base = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise ProfileError(
            f"cannot write session directory {base}: {e.strerror or e} (choose another --out)"
        ) from None
    raise ProfileError(f"cannot find a free session directory name next to {base} (use --out DIR)")


def claim_session_dir(out: Path | None, name: str, force: bool = False) -> tuple[Path, int]:
    """The directory this run writes its session into, and a descriptor holding its lock.

    The lock (``flock`` on the directory, released by the kernel however the run ends) makes a
    second run onto the same ``--out`` refuse instead of interleaving its files with the first.
    An ``--out`` that already holds anything is refused unless ``force``; then the files of the
    old session (and only those) are removed, so nothing of it mixes into the new one.
    """
    path = default_session_dir(name) if out is None else out
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise ProfileError(
            f"cannot write session directory {path}: {e.strerror or e} (choose another --out)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProfileError(
                f"session directory {path} is being written by another tickscope run (choose another --out)"
            ) from None
        existing = sorted(os.listdir(path))
        if existing and not force:
            raise ProfileError(f"{path} {_holds(path, existing)}: not overwriting it "
                               "(use --force to replace it, or choose another --out)")  # fmt: skip
        for f in existing:
            if f.removesuffix(".tmp") in SESSION_FILES:
                (path / f).unlink(missing_ok=True)
    except BaseException:
        os.close(fd)
        raise
    return path, fd


def _holds(path: Path, existing: list[str]) -> str:
    if META not in existing:
        return "is not empty"
    try:
        status = json.loads((path / META).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    return (
        f"already holds a session (status {status})" if isinstance(status, str) else "already holds a session"
    )


def private_ring_dir(base: Path | None = None) -> tuple[Path, list[str]]:
    """A fresh ring directory for this run, named after our pid, so that a later run can tell
    the directories of runs that were killed (``kill -9`` runs no cleanup) and remove them.
    Returns it with a note for each such removal."""
    if base is None:
        base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    removed = remove_stale_ring_dirs(base)
    notes = [f"removed {len(removed)} ring director{'y' if len(removed) == 1 else 'ies'} left by a killed "
             f"tickscope run ({', '.join(str(p) for p in removed)})"] if removed else []  # fmt: skip
    return Path(tempfile.mkdtemp(prefix=f"{RING_DIR_PREFIX}{os.getpid()}-", dir=base)), notes


def remove_stale_ring_dirs(base: Path) -> list[Path]:
    """Remove this user's run ring directories whose owning tickscope is gone. Directories of
    other users, symlinks, live owners and names without an owner pid are left alone."""
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        owner = entry.name[len(RING_DIR_PREFIX) :].split("-", 1)[0]
        if not entry.name.startswith(RING_DIR_PREFIX) or not owner.isdigit():
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or pid_alive(int(owner)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed
