"""What every side collector (perf stat, py-spy, hiccup meter) shares.

A side collector never takes a session down: anything that goes wrong becomes a one-line warning
naming the problem and its fix, and the latency measurement carries on without it.
"""

from __future__ import annotations

import threading
from pathlib import Path


class SideCollectorBase:
    name = "side"

    def __init__(self):
        self.warnings: list[str] = []
        self._latest: dict = {}
        self._lock = threading.Lock()

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(f"{self.name}: {text}")

    def publish(self, figures: dict) -> None:
        with self._lock:
            self._latest = dict(figures)

    def latest(self) -> dict:
        with self._lock:
            return dict(self._latest)

    def start(self, pid: int | None, session_dir: Path) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    def stop(self) -> list[str]:  # pragma: no cover - protocol
        raise NotImplementedError
