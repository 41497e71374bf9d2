"""What the three atheris campaigns share: the seed corpus they write and libFuzzer's defaults.

Each ``fuzz_*.py`` passes its own seeds; on the first run they are written to
``fuzz/corpus/<name>/`` (libFuzzer adds every input that reaches new code there), and crashes
are saved as ``fuzz/artifacts/<name>-crash-*`` with the input that caused them.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(name: str, seeds: list[bytes], test_one_input) -> None:
    import atheris

    corpus = HERE / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}"
        if not path.exists():
            path.write_bytes(seed)
    (HERE / "artifacts").mkdir(exist_ok=True)
    args = [sys.argv[0]]
    if not any(a.startswith("-artifact_prefix=") for a in sys.argv[1:]):
        args.append(f"-artifact_prefix={HERE / 'artifacts'}/{name}-")
    if not any(a.startswith("-max_len=") for a in sys.argv[1:]):
        args.append("-max_len=4096")
    args += sys.argv[1:]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        args.append(str(corpus))  # libFuzzer reads and grows the first corpus directory given
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
