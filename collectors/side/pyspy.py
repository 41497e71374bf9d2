"""``py-spy record`` of a Python subject into ``profile.speedscope.json``.

py-spy attaches with ptrace: it needs root, CAP_SYS_PTRACE or ``kernel.yama.ptrace_scope=0``.
``--nonblocking`` samples without pausing the subject (less perturbation, occasional torn stacks).
On stop it receives SIGINT, which makes it write the profile.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tickscope.collectors.run.children import spawn_child
from tickscope.collectors.side import SideCollectorBase


class PySpyCollector(SideCollectorBase):
    name = "pyspy"

    def __init__(self, rate: int = 250, nonblocking: bool = False, pid: int | None = None):
        super().__init__()
        self.pid = pid  # a process named by the user (``live --pyspy-pid``) rather than the subject
        self.rate = rate
        self.nonblocking = nonblocking
        self.proc: subprocess.Popen | None = None

    def start(self, pid: int | None, session_dir: Path) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            self.warn("py-spy not found: pip install py-spy (profile skipped, session goes on)")
            return
        pid = self.pid or pid
        if pid is None:
            return
        self.out = Path(session_dir) / "profile.speedscope.json"
        argv = [exe, "record", "--pid", str(pid), "--format", "speedscope", "--output", str(self.out),
                "--rate", str(self.rate)]  # fmt: skip
        if self.nonblocking:
            argv.append("--nonblocking")
        self.proc = spawn_child(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.publish({"summary": f"sampling at {self.rate}/s"})

    def stop(self) -> list[str]:
        if self.proc is None:
            return self.warnings
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.is_file():
            text = (err or "").strip().splitlines()
            last = text[-1] if text else f"exit code {self.proc.returncode}"
            if "ptrace" in (err or "").lower() or "permission" in (err or "").lower():
                fix = ("refused even as root: a container without CAP_SYS_PTRACE?" if os.geteuid() == 0
                       else "fix: run as root, or sysctl kernel.yama.ptrace_scope=0")  # fmt: skip
                self.warn(f"{last[:120]} ({fix})")
            elif "python" in (err or "").lower():
                self.warn(f"{last[:120]} (is the target a Python process?)")
            else:
                self.warn(f"no profile written: {last[:160]}")
        return self.warnings
