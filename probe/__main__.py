"""``python -m tickscope.probe --cflags``: compiler flags for the C/C++ probe header.

Standard library only (a subject's build may have nothing else installed), in the manner of
``python -m pybind11 --includes``::

    cc -O2 $(python -m tickscope.probe --cflags) -o feed feed.c
"""

from __future__ import annotations

import argparse
import sys

from . import include_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tickscope.probe",
        description="Where the C/C++ probe header (tickscope_probe.h) lives, for your build.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--cflags", action="store_true", help="print -I<dir>, for cc/c++ command lines")
    what.add_argument("--include-dir", action="store_true", help="print the directory alone (CMake, Meson)")
    args = parser.parse_args(argv)
    print(f"-I{include_dir()}" if args.cflags else include_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
