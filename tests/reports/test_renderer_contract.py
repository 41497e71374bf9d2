"""The renderer contract of reports/__init__.py, pinned: renderers never load or write files (the
CLI does), and every renderer module has the one entry point ``render(subject, ...)``.

Read from the source (stdlib AST), so a new module or a new ``write_text`` is caught without
running it."""

from __future__ import annotations

import ast
from pathlib import Path

from rich.console import Console

from tickscope.reports import RENDERERS

REPORTS = Path(__file__).resolve().parents[2] / "reports"
# Modules of reports/ that are not renderers, and why.
NOT_RENDERERS = {
    "progress": "profile's plain progress lines: an observer the run engine drives, not a renderer",
    "synth": "synthetic sessions for tests and benchmarks (moving to tests/support)",
    "assets": "the package's own static files (plotly.js bundles) that pages inline",
}
# Method names that read or write a file whatever the receiver (Path, Session, a file).
FILE_METHODS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "unlink", "rmdir",
                "touch", "load", "dump", "side_file"}  # fmt: skip
# Functions that read or write a file by name.
FILE_FUNCTIONS = {"open", "read_hlog", "load_sweep", "log_anchor", "write_json_atomic", "HistogramLogWriter",
                  "SessionWriter"}  # fmt: skip
OS_FILE_CALLS = {
    "open",
    "remove",
    "unlink",
    "makedirs",
    "mkdir",
    "rename",
    "replace",
    "rmdir",
    "listdir",
    "scandir",
}
FILE_MODULES = {"shutil", "tempfile"}  # every call of these touches the file system
# (module, call): the one file a reports module opens, and why it may.
ALLOWED = {
    ("progress", "os.open"),  # /dev/null over a stdout whose reader went away (| head)
    ("assets", ".read_text"),  # the package's own plotly.js bundle, as plotly's get_plotlyjs reads its own
}


def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        base = f.value.id if isinstance(f.value, ast.Name) else ""
        return f"{base}.{f.attr}" if base else f".{f.attr}"
    return ""


def file_io(root: Path = REPORTS) -> list[str]:
    """Every call in reports/ that loads or writes a file: ``path:line: call``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        module = path.stem
        if module in ("synth",):
            continue  # a test fixture that writes sessions by design; it leaves reports/
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            base, _, attr = name.rpartition(".")
            io = (
                (not base and name in FILE_FUNCTIONS)
                or (attr in FILE_METHODS and base not in ("json",))
                or (base == "json" and attr in ("load", "dump"))
                or (base == "os" and attr in OS_FILE_CALLS)
                or (base in FILE_MODULES)
                or attr in FILE_FUNCTIONS
            )
            if io and (module, name) not in ALLOWED:
                found.append(f"{rel}:{node.lineno}: {name.lstrip('.')}()")
    return found


def renderer_modules(root: Path = REPORTS) -> dict[str, ast.Module]:
    return {
        p.stem: ast.parse(p.read_text(encoding="utf-8"))
        for p in sorted(root.glob("*.py"))
        if p.stem != "__init__"
    }


def contract_breaches(root: Path = REPORTS, declared: dict = RENDERERS) -> list[str]:
    out = []
    modules = renderer_modules(root)
    for name in sorted(set(modules) - set(declared) - set(NOT_RENDERERS)):
        out.append(f"reports/{name}.py: not in reports.RENDERERS (a renderer module joins the contract)")
    for name in sorted(declared):
        tree = modules.get(name)
        fn = (
            next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "render"), None)
            if tree
            else None
        )
        if fn is None:
            out.append(f"reports/{name}.py: no top-level render(subject, ...)")
        elif not (fn.args.posonlyargs or fn.args.args):
            out.append(f"reports/{name}.py: render() takes no subject")
    return out


def test_reports_do_no_file_io():
    found = file_io()
    assert not found, "renderers never load or write files (main.py does):\n" + "\n".join(found)


def test_every_renderer_module_has_the_one_entry_point():
    assert contract_breaches() == []


def test_the_checks_bite(tmp_path):
    root = tmp_path / "reports"
    (root / "analysis").mkdir(parents=True)
    (root / "shiny.py").write_text(
        "from pathlib import Path\n"
        "def render(session, out):\n"
        "    Path(out).write_text('x')\n"
        "    s = Session.load(out)\n"
        "    return open(out).read()\n"
    )
    (root / "analysis" / "views.py").write_text("def f(p):\n    return read_hlog(p), p.read_bytes()\n")
    (root / "nameless.py").write_text("def table(x):\n    return x\n")
    assert file_io(root) == [
        "reports/analysis/views.py:2: read_hlog()",
        "reports/analysis/views.py:2: p.read_bytes()",
        "reports/shiny.py:3: write_text()",
        "reports/shiny.py:4: Session.load()",
        "reports/shiny.py:5: open()",
    ]
    assert contract_breaches(root, {"shiny": "", "nameless": ""}) == [
        "reports/nameless.py: no top-level render(subject, ...)"
    ]
    assert contract_breaches(root, {"shiny": ""}) == [
        "reports/nameless.py: not in reports.RENDERERS (a renderer module joins the contract)"
    ]


def test_console_renderers_return_renderables_that_print(tmp_path):
    """The plain-data renderers (doctor, bench) render without the collectors: what main.py prints."""
    from tickscope.reports import bench, doctor

    console = Console(record=True, width=160, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(
        doctor.render([{"name": "clocksource", "status": "warn", "value": "hpet", "fix": "use tsc"}])
    )
    console.print(bench.render({"c_probe_ns": 40.0}))
    text = console.export_text()
    assert "clocksource" in text and "use tsc" in text and "misses target (≤ 15)" in text
