"""The measuring core's benchmarks: ``python benchmarks/bench_core.py [--quick]``.

The same measurements as ``tickscope bench`` (collectors/run/bench.py): Python probe vs
perf_counter_ns alone, C probe vs rdtsc alone, bulk HDR ingestion vs hdrh's record_value on the
same values, ring drain against a paced C writer, and the collector end to end. Prints the table,
then one JSON line.
"""

import json
import sys

from rich.console import Console

from tickscope.collectors.run.bench import run_all
from tickscope.reports.bench import render as table

if __name__ == "__main__":
    results = run_all(quick="--quick" in sys.argv, progress=lambda m: print(m, file=sys.stderr))
    Console().print(table(results))
    print(json.dumps(results))
