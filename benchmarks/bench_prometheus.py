"""What ``--prometheus`` costs the collector, measured side by side:

    python benchmarks/bench_prometheus.py [--duration 8] [--rate 50000] [--repeats 3]

Runs ``tickscope profile`` on the 5-point test subject (tests/programs/tick_subject.py, one ring,
paced at --rate ticks/s) alternately without and with ``--prometheus``, a scraper asking for the
protobuf exposition once a second (as Prometheus does) during the run with the exporter. Per run:
the collector thread's CPU per record (``meta.collector_cpu``, which includes the exporter's
per-interval copy of the totals since it runs in that thread) and, with the exporter, the
server thread's CPU per record for conversion, encoding and HTTP (``meta.prometheus``). Prints medians, the ratio (bar: <= 1.05) and one
JSON line.
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBJECT = [sys.executable, str(ROOT / "tests" / "programs" / "tick_subject.py")]
ACCEPT = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_every_second(port: int, stop: threading.Event, sizes: list[int]) -> None:
    while not stop.wait(1.0):
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": ACCEPT})
            with urllib.request.urlopen(req, timeout=2) as r:
                sizes.append(len(r.read()))
        except OSError:
            continue


def run(out: Path, duration: float, rate: int, prometheus: bool) -> dict:
    cmd = [sys.executable, "-m", "tickscope.main", "profile", "--duration", f"{duration}s", "--no-live",
           "--no-perf", "--no-hiccup", "--out", str(out)]  # fmt: skip
    stop, sizes, scraper = threading.Event(), [], None
    if prometheus:
        port = free_port()
        cmd += ["--prometheus", f"127.0.0.1:{port}", "--prometheus-linger", "2s"]
        scraper = threading.Thread(target=scrape_every_second, args=(port, stop, sizes), daemon=True)
        scraper.start()
    cmd += ["--", *SUBJECT, "0", "--forever", "--rate", str(rate)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    stop.set()
    if scraper:
        scraper.join()
    if proc.returncode != 0:
        sys.exit(f"profile failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    meta = json.loads((out / "meta.json").read_text())
    drained = meta["counters"]["drained"]
    row = {"records": drained, "collector_ns_per_record": meta["collector_cpu"]["ns_per_record"]}
    if prometheus:
        p = meta["prometheus"]
        row["serve_ns_per_record"] = round(p["serve_cpu_s"] * 1e9 / drained, 2)
        row["publish_ns_per_record"] = round(p["publish_cpu_s"] * 1e9 / drained, 2)
        row["scrapes"] = p["scrapes"]
        row["scrape_bytes"] = max(sizes) if sizes else None
    return row


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tickscope-bench-prometheus-"))
    without, with_ = [], []
    for i in range(args.repeats):
        without.append(run(tmp / f"off{i}", args.duration, args.rate, False))
        with_.append(run(tmp / f"on{i}", args.duration, args.rate, True))
        time.sleep(0.5)
    off = statistics.median(r["collector_ns_per_record"] for r in without)
    on = statistics.median(r["collector_ns_per_record"] for r in with_)
    serve = statistics.median(r["serve_ns_per_record"] for r in with_)
    publish = statistics.median(r["publish_ns_per_record"] for r in with_)
    result = {
        "rate": args.rate, "duration_s": args.duration, "repeats": args.repeats,
        "collector_ns_per_record_without": off, "collector_ns_per_record_with": on,
        "exporter_publish_ns_per_record": publish, "exporter_serve_ns_per_record": serve,
        "ratio_collector_thread": round(on / off, 3),
        "ratio_with_serving_thread": round((on + serve) / off, 3),
        "ratio_exporter_own_cost": round((off + publish + serve) / off, 3),
        "runs_without": without, "runs_with": with_,
    }  # fmt: skip
    print(f"collector CPU per record: without {off:.0f} ns, with --prometheus {on:.0f} ns "
          f"(collector thread, x{result['ratio_collector_thread']}); exporter's own work {publish:.1f} ns "
          f"(publish) + {serve:.1f} ns (serving) per record = x{result['ratio_exporter_own_cost']}")  # fmt: skip
    print(json.dumps(result))
