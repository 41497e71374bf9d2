"""Real headless Chromium, to see a page as a user does (JavaScript on, every chart drawn)."""

import subprocess

from conftest import need_tool


def chromium() -> str:
    return need_tool("chromium", "chromium-browser", "google-chrome", install="apt-get install chromium")


def headless(exe, tmp_path, *args, url):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", "--virtual-time-budget=15000", *args, url]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
