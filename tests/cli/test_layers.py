"""The layers of docs/design, pinned: one direction, no back edges between the top-level folders.

- ``probe`` imports nothing of ours (a subject that imports it must not pull in the collector);
- ``pipeline`` imports ``probe`` only, and the rest runs it (``python -m tickscope.pipeline...``),
  never imports it;
- ``collectors`` imports ``probe`` only;
- the session package (``collectors/session/``), the one hinge between collecting and reporting,
  imports nothing of ours but itself, so ``reports`` reaching it reaches nothing else;
- ``reports`` imports only the session package;
- ``main.py`` may import anything (tests, benchmarks and fuzz harnesses are outside the product).

And between the product and its tests: no test module imports another (what two test files share
lives in ``tests/support/``), and the product imports nothing from ``tests/``.

"Imports" counts every ``import``/``from`` statement anywhere in a module (a lazy import inside a
function is still a dependency), and a ``-m tickscope.X`` argv is an edge too: running a module of
a higher layer is reaching up to it by another road.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("probe", "pipeline", "collectors", "reports")
SESSION = "tickscope.collectors.session"

# folder -> (what it may import, what it may run as a process, the rule in words)
RULES = {
    "probe": (("tickscope.probe",), (), "probe imports nothing of ours"),
    "pipeline": (
        ("tickscope.pipeline", "tickscope.probe"),
        ("tickscope.pipeline",),
        "pipeline imports probe only",
    ),
    "collectors": (
        ("tickscope.collectors", "tickscope.probe"),
        ("tickscope.collectors", "tickscope.pipeline"),
        "collectors imports probe only (and runs the pipeline as processes)",
    ),
    "session": ((SESSION,), (), "the session package imports nothing of ours but itself"),
    "reports": (("tickscope.reports", SESSION), (), "reports imports only the session package"),
}
_MODULE_NAME = re.compile(r"tickscope(\.\w+)+")


def _module_of(path: Path, root: Path) -> list[str]:
    rel = path.relative_to(root).with_suffix("")
    parts = ["tickscope", *rel.parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _edges(path: Path, root: Path):
    """(line, kind, target module) for every import of ours and every ``-m tickscope.X`` it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module = _module_of(path, root)
    package = module if path.name == "__init__.py" else module[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, "imports", alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:  # `from tickscope.collectors import session` names a module
                yield node.lineno, "imports", f"{target}.{alias.name}"
        elif isinstance(node, ast.List | ast.Tuple):
            items = node.elts
            for flag, arg in zip(items, items[1:], strict=False):
                if isinstance(flag, ast.Constant) and flag.value == "-m" and isinstance(arg, ast.Constant):
                    yield arg.lineno, "runs", str(arg.value)


def _within(target: str, allowed: tuple[str, ...]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            layer = "session" if rel.parts[:2] == ("collectors", "session") else folder
            may_import, may_run, rule = RULES[layer]
            for line, kind, target in _edges(path, root):
                if not _MODULE_NAME.fullmatch(target):
                    continue  # not ours (numpy, hdrh, ...)
                if kind == "imports" and target.split(".")[:2] == ["tickscope", "main"]:
                    ok = False
                elif kind == "imports":
                    ok = _within(target, may_import)
                else:
                    ok = _within(target, may_run)
                if not ok:
                    found.append(f"{rel}:{line}: {kind} {target} ({rule})")
    return found


def test_no_upward_imports():
    found = violations()
    assert not found, f"{len(found)} imports against the layers:\n" + "\n".join(found)


def test_the_check_sees_every_kind_of_edge(tmp_path):
    """The rules bite: an absolute, a relative, a lazy and a ``from package import module`` import
    and a ``-m`` run, each against its layer, are all reported with file:line and the rule."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "bad.py").write_text(
        "from tickscope.collectors.rings.collector import Collector\n"
        "from ..collectors.run import sweep\n"
        "def f():\n"
        "    import tickscope.pipeline.itch\n"
        "from tickscope.collectors.session import Session\n"
    )
    (tmp_path / "collectors" / "session").mkdir(parents=True)
    (tmp_path / "collectors" / "runner.py").write_text(
        "import sys\nARGV = [sys.executable, '-m', 'tickscope.main', 'profile']\n"
        "OK = [sys.executable, '-m', 'tickscope.pipeline.venue']\n"
    )
    (tmp_path / "collectors" / "session" / "files.py").write_text("from ..rings.reader import RingReader\n")
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "x.py").write_text("from tickscope.collectors import session\n")
    found = violations(tmp_path)
    assert found == [
        "probe/x.py:1: imports tickscope.collectors.session (probe imports nothing of ours)",
        "collectors/runner.py:2: runs tickscope.main (collectors imports probe only (and runs the pipeline as processes))",
        "collectors/session/files.py:1: imports tickscope.collectors.rings.reader.RingReader "
        "(the session package imports nothing of ours but itself)",
        "reports/bad.py:1: imports tickscope.collectors.rings.collector.Collector (reports imports only the session package)",
        "reports/bad.py:2: imports tickscope.collectors.run.sweep (reports imports only the session package)",
        "reports/bad.py:4: imports tickscope.pipeline.itch (reports imports only the session package)",
    ]


# -- the run engine asks its plug-ins through declared hooks only ----------------------------------
ENGINE = ("collectors/run", "collectors/side")


def undeclared_reaches(root: Path = ROOT) -> list[str]:
    """``hasattr``/``getattr`` in the run engine and side collectors (a hook found by probing is a
    hook nobody declared: declare it, with its default, on ``SideCollectorBase`` or ``Subject``), and
    an import of another module's private name (``from x import _name``): make it public API."""
    found = []
    for folder in ENGINE:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id in ("hasattr", "getattr"):
                        found.append(f"{rel}:{node.lineno}: {node.func.id}() (declare the hook instead)")
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tickscope."):
                    for alias in node.names:
                        if alias.name.startswith("_"):
                            found.append(f"{rel}:{node.lineno}: imports {node.module}.{alias.name} (private)")
    return found


def test_the_run_engine_probes_nothing_and_imports_no_private_name():
    found = undeclared_reaches()
    assert not found, "\n".join(found)


def test_the_engine_check_bites(tmp_path):
    (tmp_path / "collectors" / "run").mkdir(parents=True)
    (tmp_path / "collectors" / "side").mkdir(parents=True)
    (tmp_path / "collectors" / "run" / "loop.py").write_text(
        "from tickscope.collectors.run.profile import _interrupt\n"
        "def f(s):\n    return hasattr(s, 'conclude') or getattr(s, 'bind', None)\n"
    )
    found = undeclared_reaches(tmp_path)
    assert [f.split(": ", 1)[0] for f in found] == ["collectors/run/loop.py:1", "collectors/run/loop.py:3",
                                                    "collectors/run/loop.py:3"], found  # fmt: skip


# -- the tests and the product ----------------------------------------------------------------------
PRODUCT = (*FOLDERS, "main.py")
# What a module of tests/ is importable as: pytest puts tests/ (for conftest.py) and each test
# file's folder on sys.path, so ``support``, ``conftest`` and every ``test_*`` file by its bare name.
HARNESS = ("tests", "support", "conftest")


def harness_violations(root: Path = ROOT) -> list[str]:
    test_modules = {p.stem for p in (root / "tests").rglob("test_*.py")}
    found = []
    for path in sorted((root / "tests").rglob("*.py")):
        for line, kind, target in _edges(path, root):
            if kind == "imports" and set(target.split(".")) & test_modules:
                rel = path.relative_to(root)
                found.append(
                    f"{rel}:{line}: imports {target} (a test module imports no other: share through tests/support/)"
                )
    product = [root / "main.py"] if (root / "main.py").exists() else []
    for path in sorted(product + [p for f in FOLDERS for p in (root / f).rglob("*.py")]):
        for line, kind, target in _edges(path, root):
            if kind == "imports" and (
                target.split(".")[0] in HARNESS or target.split(".")[0] in test_modules
            ):
                found.append(
                    f"{path.relative_to(root)}:{line}: imports {target} (the product imports nothing from tests/)"
                )
    return found


def test_no_test_module_imports_another_and_the_product_none_of_the_tests():
    found = harness_violations()
    assert not found, f"{len(found)} imports across the tests' boundary:\n" + "\n".join(found)


def test_the_harness_check_sees_test_to_test_and_product_to_test_imports(tmp_path):
    """A test module importing another (at the top or lazily, by bare name or by path), support/
    importing a test module, and product code importing support/, conftest or a test module are all
    reported; importing support/ and conftest from a test is the rule, not a breach."""
    (tmp_path / "tests" / "cli").mkdir(parents=True)
    (tmp_path / "tests" / "pipeline").mkdir()
    (tmp_path / "tests" / "support").mkdir()
    (tmp_path / "tests" / "cli" / "test_a.py").write_text(
        "from conftest import need_tool\nfrom support.cli import run_cli\nfrom test_b import start_venue\n"
        "def test_x():\n    from tests.pipeline.test_b import GAPS\n"
    )
    (tmp_path / "tests" / "pipeline" / "test_b.py").write_text("import test_a\n")
    (tmp_path / "tests" / "support" / "venues.py").write_text(
        "from support import free_port\nimport test_b\n"
    )
    (tmp_path / "collectors").mkdir()
    (tmp_path / "collectors" / "launch.py").write_text("from support import free_port\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "synth.py").write_text("def f():\n    from tests.support.cli import run_cli\n")
    (tmp_path / "main.py").write_text("import conftest\nimport test_b\n")
    assert harness_violations(tmp_path) == [
        "tests/cli/test_a.py:3: imports test_b.start_venue (a test module imports no other: share through tests/support/)",
        "tests/cli/test_a.py:5: imports tests.pipeline.test_b.GAPS (a test module imports no other: share through tests/support/)",
        "tests/pipeline/test_b.py:1: imports test_a (a test module imports no other: share through tests/support/)",
        "tests/support/venues.py:2: imports test_b (a test module imports no other: share through tests/support/)",
        "collectors/launch.py:1: imports support.free_port (the product imports nothing from tests/)",
        "main.py:1: imports conftest (the product imports nothing from tests/)",
        "main.py:2: imports test_b (the product imports nothing from tests/)",
        "reports/synth.py:2: imports tests.support.cli.run_cli (the product imports nothing from tests/)",
    ]


# -- test code stays out of the product ----------------------------------------------------------------
# What tests/, benchmarks/ and fuzz/ import as the suite's own helpers (tests/ on sys.path).
TEST_CODE = ("support", "conftest", "tests")


def _product_modules(root: Path) -> dict[str, Path]:
    mods = {
        ".".join(_module_of(p, root)): p for folder in FOLDERS for p in sorted((root / folder).rglob("*.py"))
    }
    if (root / "main.py").exists():
        mods["tickscope.main"] = root / "main.py"
    return mods


def fixture_violations(root: Path = ROOT) -> list[str]:
    """Both ways: no product module imports the suite's helpers, and every product module is used by
    the product (imported or run by another module, or an entry point: ``main``, a ``__main__``,
    the ``probe`` API users import). A module only tests, benchmarks or fuzz import is a test
    fixture living in product code: it belongs in tests/support/."""
    mods = _product_modules(root)
    found, used = [], set()
    for path in mods.values():
        for line, _, target in _edges(path, root):
            if target.split(".")[0] in TEST_CODE:
                found.append(
                    f"{path.relative_to(root)}:{line}: imports {target} (test code; the product must run without tests/)"
                )
            parts = target.split(".")
            used.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    for name, path in mods.items():
        entry = name == "tickscope.main" or name.endswith(".__main__") or name.startswith("tickscope.probe")
        if not entry and name not in used:
            found.append(f"{path.relative_to(root)}: nothing in the product imports or runs it "
                         "(a fixture only tests use? move it to tests/support/)")  # fmt: skip
    return found


def test_test_fixtures_live_in_tests_not_in_the_product():
    found = fixture_violations()
    assert not found, "\n".join(found)


def test_the_fixture_check_sees_both_directions(tmp_path):
    for folder in (*FOLDERS, "collectors/session"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "main.py").write_text(
        "from tickscope.collectors import capture\nimport tickscope.reports.html\n"
    )
    (tmp_path / "collectors" / "capture.py").write_text("def f():\n    from support import wire_synth\n")
    (tmp_path / "reports" / "html.py").write_text("import conftest\n")
    (tmp_path / "reports" / "synth.py").write_text("from tickscope.collectors.session import SessionWriter\n")
    (tmp_path / "probe" / "api.py").write_text("")  # users import it, the product need not
    (tmp_path / "probe" / "__main__.py").write_text("")
    assert fixture_violations(tmp_path) == [
        "collectors/capture.py:2: imports support.wire_synth (test code; the product must run without tests/)",
        "reports/html.py:1: imports conftest (test code; the product must run without tests/)",
        "reports/synth.py: nothing in the product imports or runs it (a fixture only tests use? move it to tests/support/)",
    ]


WIRE_MODULE_MAX_LINES = 400


def test_the_wire_package_is_split_by_concern():
    """collectors/wire/ is modules a reader takes in one sitting (~70-300 lines), none past 400."""
    modules = sorted((ROOT / "collectors" / "wire").glob("*.py"))
    assert len(modules) > 1, "collectors/wire/ is a package of modules by concern"
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in modules}
    assert max(sizes.values()) <= WIRE_MODULE_MAX_LINES, sizes
