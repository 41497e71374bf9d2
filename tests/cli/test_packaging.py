"""A non-editable install works as a checkout does: the wheel carries the Rust probe crate and the
Rust trader's sources, and from a fresh venv `--trader rust` and the bench's Rust rows build them
(in the per-user cache, never inside site-packages) and run. Slow-ish: a wheel, a venv and two cold
cargo builds (the timeouts are hang guards for a loaded host)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import needs_tool
from support import QUIET
from tickscope.collectors.run.cargo import SHIPPED_CRATES

ROOT = Path(__file__).resolve().parents[2]
NOT_PACKAGED = shutil.ignore_patterns(".git", "target", "Cargo.lock", "build", "dist", "*.egg-info", "__pycache__",
                                      "sessions", ".venv", ".pytest_cache", ".ruff_cache", ".hypothesis")  # fmt: skip


def crate_sources() -> set[str]:
    """Every file of the shipped crates as the wheel must hold it (tickscope/probe/rust/src/lib.rs, ...)."""
    out = set()
    for rel in SHIPPED_CRATES:
        for f in (ROOT / rel).rglob("*"):
            parts = f.relative_to(ROOT / rel).parts
            # what cargo writes beside any Cargo.toml (the trader's tokio/ too) is not a source
            if f.is_file() and "target" not in parts and parts[-1] not in ("Cargo.lock", ".gitignore"):
                out.add(f"tickscope/{rel}/{'/'.join(parts)}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: pip's in-tree build writes build/ and *.egg-info beside the sources.
    src = tmp_path_factory.mktemp("src") / "tickscope"
    shutil.copytree(ROOT, src, ignore=NOT_PACKAGED)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert build.returncode == 0, build.stderr
    (whl,) = out.glob("tickscope-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv holding the wheel; its dependencies come from the base interpreter's site-packages."""
    d = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(d)], check=True, timeout=300)
    inst = subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           str(wheel)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert inst.returncode == 0, inst.stderr
    return d


def installed_files(venv: Path) -> set[Path]:
    pkg = next((venv / "lib").glob("python3*/site-packages/tickscope"))
    return {p for p in pkg.rglob("*") if "__pycache__" not in p.parts}


def test_the_wheel_carries_the_rust_crate_and_the_traders_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = crate_sources()
    assert {"tickscope/probe/rust/Cargo.toml", "tickscope/probe/rust/src/lib.rs",
            "tickscope/probe/rust/examples/rust_bench.rs", "tickscope/pipeline/rust_trader/Cargo.toml",
            "tickscope/pipeline/rust_trader/src/main.rs"} <= want  # fmt: skip
    assert want - names == set(), "missing from the wheel"
    assert not [n for n in names if "/target/" in n or n.endswith("Cargo.lock")]


def test_the_wheel_carries_the_alerting_rules_and_the_dashboard(wheel):
    """`tickscope alerts` documents them as shipped: a user loads them from the installed package."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"tickscope/collectors/side/monitoring/{f.name}"
        for f in (ROOT / "collectors/side/monitoring").iterdir()
    }
    assert {"tickscope/collectors/side/monitoring/tickscope-alerts.yml",
            "tickscope/collectors/side/monitoring/tickscope-dashboard.json"} <= shipped  # fmt: skip
    assert shipped - names == set(), "missing from the wheel"


@pytest.mark.slow
@needs_tool("cargo", install="apt-get install cargo")
def test_an_installed_package_builds_and_runs_the_rust_trader_and_the_rust_bench(venv, tmp_path):
    py, cache = venv / "bin" / "python", tmp_path / "cache"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    for name in ("PYTHONPATH", "TICKSCOPE_RING_DIR"):
        env.pop(name, None)
    where = subprocess.run([str(py), "-c", "import tickscope.probe as p; print(p.__file__)"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=60)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv), (where.stdout, where.stderr)
    before = installed_files(venv)
    out = subprocess.run([str(venv / "bin" / "tickscope"), "profile", "--trader", "rust", "--duration", "2s",
                          "--rate", "2k", *QUIET, "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["subject_stats"]["trader"]["trader"] == "rust" and meta["counters"]["orders_sent"] > 0
    bench = subprocess.run([str(py), "-c", "import json, sys, pathlib; from tickscope.collectors.run.bench import "
                            "bench_rust_probe; print(json.dumps(bench_rust_probe(pathlib.Path(sys.argv[1]))))",
                            str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    rows = json.loads(bench.stdout.strip().splitlines()[-1])
    assert rows["rust_probe_ns"] > 0 and rows["rdtsc_store_ns"] > 0, rows
    # cargo built in the per-user cache: nothing appeared beside the installed sources
    assert installed_files(venv) == before
    built = list(cache.glob("tickscope/cargo/tickscope-*/target/release/tickscope-trader"))
    assert len(built) == 1 and os.access(built[0], os.X_OK), list(cache.rglob("tickscope-trader"))


def test_builds_run_on_a_copy_in_the_cache_that_follows_the_sources(tmp_path, monkeypatch):
    """Unchanged files keep their copy (and mtime: cargo rebuilds nothing), an edit is recopied, a
    removed file goes, and what cargo wrote into the copy (target/, Cargo.lock) stays."""
    from tickscope.collectors.run.cargo import build_root, stage

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "site-packages" / "tickscope"
    for rel in SHIPPED_CRATES:
        shutil.copytree(ROOT / rel, root / rel, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    trader = root / "pipeline" / "rust_trader"
    manifest, target = stage(trader)
    build = build_root(trader)
    assert build.is_relative_to(tmp_path / "cache" / "tickscope" / "cargo") and build.name.startswith(
        "tickscope-"
    )
    assert manifest == build / "pipeline" / "rust_trader" / "Cargo.toml" and target == build / "target"
    assert (manifest.parent / "../../probe/rust/src/lib.rs").resolve().is_file(), (
        "the trader's path dependency"
    )
    lib, book = (
        build / "probe" / "rust" / "src" / "lib.rs",
        build / "pipeline" / "rust_trader" / "src" / "book.rs",
    )
    (build / "pipeline" / "rust_trader" / "Cargo.lock").write_text("# cargo's\n")
    mtime = lib.stat().st_mtime_ns
    (trader / "src" / "book.rs").write_text("// edited\n")
    removed = min((root / "probe" / "rust" / "tests").glob("*.rs"))
    removed.unlink()
    stage(root / "probe" / "rust")
    assert lib.stat().st_mtime_ns == mtime and book.read_text() == "// edited\n"
    assert not (build / "probe" / "rust" / "tests" / removed.name).exists()
    assert (build / "pipeline" / "rust_trader" / "Cargo.lock").exists()
    assert not list(root.rglob("Cargo.lock")) and not list(root.rglob("target"))


def test_the_tokio_crates_target_and_lock_are_never_copied_and_cargos_own_stay(tmp_path, monkeypatch):
    # pipeline/rust_trader/tokio is a crate of its own: a clippy run there leaves target/ (hundreds
    # of MB) and Cargo.lock beside its Cargo.toml, which the copy took as sources.
    from tickscope.collectors.run.cargo import build_root, stage

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "checkout"
    for rel in SHIPPED_CRATES:
        shutil.copytree(ROOT / rel, root / rel, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    tokio = root / "pipeline" / "rust_trader" / "tokio"
    (tokio / "target" / "debug").mkdir(parents=True)
    (tokio / "target" / "debug" / "tickscope-trader").write_text("a binary\n")
    (tokio / "Cargo.lock").write_text("# the checkout's\n")
    stage(root / "pipeline" / "rust_trader")
    copy = build_root(root / "pipeline" / "rust_trader") / "pipeline" / "rust_trader" / "tokio"
    assert (
        (copy / "Cargo.toml").is_file()
        and not (copy / "target").exists()
        and not (copy / "Cargo.lock").exists()
    )
    (copy / "Cargo.lock").write_text("# cargo's, in the copy\n")
    stage(root / "pipeline" / "rust_trader")
    assert (copy / "Cargo.lock").read_text() == "# cargo's, in the copy\n"


# A runtime dependency's import name, where it differs from its distribution name; py-spy is a
# program tickscope runs, not a module it imports.
IMPORT_NAMES = {"hdrhistogram": "hdrh", "py-spy": None}
SHIPPED = ["main.py", "probe", "collectors", "reports", "pipeline"]


def test_every_runtime_dependency_is_used_by_tickscope_itself():
    """A dependency only a benchmark or a test imports (simplefix) belongs in an extra (bench,
    test), not on every user's machine."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    source = "\n".join(f.read_text() for top in SHIPPED for f in
                       ([ROOT / top] if top.endswith(".py") else (ROOT / top).rglob("*.py")))  # fmt: skip
    unused = []
    for req in project["dependencies"]:
        dist = re.match(r"[\w.-]+", req).group(0).lower()
        module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        used = (re.search(rf"^\s*(import|from) {module}\b", source, re.M) if module
                else f'"{dist}"' in source)  # fmt: skip
        if not used:
            unused.append(dist)
    assert unused == [], f"runtime dependencies tickscope never imports (move them to an extra): {unused}"
    assert any("simplefix" in r for r in project["optional-dependencies"]["bench"])


def test_every_package_folder_of_the_product_is_in_the_wheel_list():
    """A folder with an ``__init__.py`` that pyproject's ``packages`` does not name is left out of
    the wheel: the checkout works, the installed tool fails on import. Caught here without a build."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    dirs = setup["package-dir"]
    found = set()
    for package, folder in dirs.items():
        if package == "tickscope":
            continue
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found - listed == set(), (
        f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"
    )
