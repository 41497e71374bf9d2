"""Run metadata every session carries, whatever made it: the tool and its version, the source tree's
git sha, and the facts of the host (pyperf's rule: a number is explained by what it ran on).

``profile`` and ``live`` measure on this host, so its facts are the session's ``host`` (with the
doctor's quick checks). ``wire`` analyses a capture taken anywhere: this host measured nothing, so
its facts go under ``analysed_on``, never ``host``.
"""

from __future__ import annotations

import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def tool_version() -> str:
    """The installed package's version; a source checkout that was never installed reads pyproject.toml."""
    try:
        return version("tickscope")
    except PackageNotFoundError:
        try:
            with open(PYPROJECT, "rb") as f:
                return tomllib.load(f)["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_meta(options: dict | None = None, *, measured_here: bool = True) -> dict:
    """meta.json's run facts. ``measured_here``: the session's numbers come from this host."""
    from tickscope.collectors.run.host import host_facts

    meta = {"tool": "tickscope", "tool_version": tool_version(), "git_sha": git_sha()}
    if options is not None:
        meta["options"] = options
    if not measured_here:
        meta["analysed_on"] = host_facts()
        return meta
    meta["host"] = host_facts()
    from dataclasses import asdict

    from tickscope.collectors.run.doctor import run_checks

    meta["doctor"] = [asdict(f) for f in run_checks(quick=True)]
    return meta
