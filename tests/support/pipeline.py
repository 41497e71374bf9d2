"""The bundled pipeline's processes (``pipeline/venue.py``, ``pipeline/trader.py``) as argv, the
venue started on free loopback ports, and what a trader leaves behind when it stops."""

import glob
import json
import socket
import subprocess
import sys
import time

from support import free_port

VENUE = [sys.executable, "-m", "tickscope.pipeline.venue"]
# The Python trader; support.native.rust_trader_binary() builds the Rust one.
TRADER = [sys.executable, "-m", "tickscope.pipeline.trader"]


def start_venue(*args):
    """The venue on free ports (``args`` after them), once its FIX acceptor answers: (process,
    md_port, fix_port); its stderr is piped as text for the test to read."""
    md_port = free_port(socket.SOCK_DGRAM)
    fix_port = free_port()
    proc = subprocess.Popen([*VENUE, "--md-port", str(md_port), "--fix-port", str(fix_port), *args],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", fix_port), timeout=0.2).close()
            return proc, md_port, fix_port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"venue did not start: {proc.stderr.read()}")


def trader_stats(ring_dir) -> dict:
    """The stats file the one trader run with ``TICKSCOPE_RING_DIR=ring_dir`` wrote."""
    (path,) = glob.glob(str(ring_dir / "trader.*.stats.json"))
    with open(path) as f:
        return json.load(f)
