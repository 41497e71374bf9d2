"""The manual (README.md and docs/*.md) stays true: its links land and its commands still run.

Convention, kept light so the pages stay clean: a fenced block marked ``bash``, ``sh`` or ``console``
holds commands (in ``console``, the lines after ``$ ``; the rest is output). Unmarked fences are
output or diagrams and are not read. Every ``tickscope`` command found there names a real
subcommand and only options its ``--help`` lists; the cheap ones (``report``, ``compare``,
``merge``, ``include-dir``, ``--version``) run for real, in a scratch directory where each input
path the page names is a synthetic session (``.hlog``: its log). An HTML comment
``<!-- not run: reason -->`` on the line before a block keeps its commands from running (their
options are still checked)."""

import re
import shlex
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from support.cli import run_cli
from support.synth import synth_session

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_FENCES = {"bash", "sh", "console"}
RUN = {"report", "compare", "merge", "include-dir", "alerts", "--version"}
# Options whose value a command writes (or a number), never an input to make up.
VALUE_OPTIONS = {"-o", "--out", "--markdown", "--junit", "--json", "--html", "--perfetto", "--digits",
                 "--threshold", "--max-inconclusive", "--dashboard", "--sla", "--window", "--for", "--job"}  # fmt: skip
FENCE = re.compile(r"^(```+|~~~+)\s*([\w-]*)")
NOT_RUN = re.compile(r"<!--\s*not run:\s*\S.*-->")


@dataclass
class Command:
    page: str
    line: int
    argv: list[str]
    run: bool

    def __str__(self):
        return f"{self.page}:{self.line}: {shlex.join(self.argv)}"


def fenced_blocks(path: Path):
    """(info string, first line number, lines, line before the fence) of each fenced block."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence = i, m.group(1)
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        yield m.group(2), start + 1, body, lines[start - 1] if start else ""
        i += 1


def commands(path: Path) -> list[Command]:
    found = []
    for info, first, body, before in fenced_blocks(path):
        if info not in COMMAND_FENCES:
            continue
        for n, text in enumerate(body, first + 1):
            if info == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            argv = shlex.split(text, comments=True)
            if argv[:1] == ["tickscope"]:
                found.append(
                    Command(path.relative_to(ROOT).as_posix(), n, argv[1:], not NOT_RUN.search(before))
                )
    return found


ALL_COMMANDS = [c for p in PAGES for c in commands(p)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation but - and _ removed,
    spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def relative_links(path: Path):
    in_fence = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                yield n, target


def test_the_pages_have_commands_to_check():
    assert len(ALL_COMMANDS) >= 15 and sum(c.run for c in ALL_COMMANDS if c.argv[0] in RUN) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_lands_on_a_file_and_heading(page):
    broken = []
    for n, target in relative_links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{page.name}:{n}: {target}: no file {file}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{page.name}:{n}: {target}: no heading #{anchor} in {dest.name}")
    assert not broken, "\n".join(broken)


@cache
def help_text(sub: str) -> str:
    out = run_cli(sub, "--help", env={"COLUMNS": "200"})
    assert out.returncode == 0, f"tickscope {sub} --help: {out.stderr}"
    return out.stdout


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=str)
def test_every_command_names_a_real_subcommand_and_options(cmd):
    sub = cmd.argv[0]
    if sub.startswith("-"):
        assert sub in help_text_root(), f"{cmd}: tickscope has no option {sub}"
        return
    assert re.search(rf"^\s*│?\s*{re.escape(sub)}\s", help_text_root(), re.M), f"{cmd}: no subcommand {sub}"
    text = help_text(sub)
    args = cmd.argv[1 : cmd.argv.index("--") if "--" in cmd.argv else None]
    for opt in (a.split("=")[0] for a in args if a.startswith("-") and not a.startswith("---")):
        opt = opt.strip("[]")
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (
            f"{cmd}: `tickscope {sub} --help` lists no {opt}"
        )


@cache
def help_text_root() -> str:
    out = run_cli("--help", env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_inputs(argv: list[str], cwd: Path) -> None:
    """A synthetic session (or its log) at each input path the command names and cwd lacks."""
    positional = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a in VALUE_OPTIONS:
            skip = True
        elif not a.startswith("-"):
            positional.append(a)
    if argv[0] == "merge":
        positional = positional[1:]  # merge OUT INPUT...: OUT is written
    for p in positional:
        dest = cwd / p
        if dest.exists():
            continue
        host = Path(p).parts[0].strip("/") or "synth-host"
        if p.endswith(".hlog"):
            s = synth_session(cwd / ".made" / p, intervals=3, per_interval=300, hostname=host)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(s / "latency.hlog", dest)
        else:
            synth_session(dest, intervals=3, per_interval=300, hostname=host)


def runnable_blocks():
    """The cheap commands, grouped by page (a page's commands share one scratch directory, so
    `merge fleet/ ...` then `report fleet/` reads what the first wrote)."""
    pages: dict[str, list[Command]] = {}
    for c in ALL_COMMANDS:
        if c.run and c.argv[0] in RUN:
            pages.setdefault(c.page, []).append(c)
    return list(pages.items())


@pytest.mark.parametrize("page, cmds", runnable_blocks(), ids=[p for p, _ in runnable_blocks()])
def test_the_cheap_commands_run(page, cmds, tmp_path):
    for cmd in cmds:
        argv = [a.replace("<", "").replace(">", "") for a in cmd.argv]  # sessions/<time>-sweep: a name
        make_inputs(argv, tmp_path)
        out = run_cli(*argv, cwd=tmp_path, timeout=120)
        assert out.returncode == 0, f"{cmd}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr}"
        assert "Traceback" not in out.stdout + out.stderr, f"{cmd}:\n{out.stderr}"


def test_the_cli_reference_is_the_commands_own_help():
    """docs/cli.md's reference is each command's --help, verbatim: a changed option shows here
    until `python tests/support/cli_reference.py` rewrites the page."""
    from support.cli_reference import PAGE, page_with_reference

    text = PAGE.read_text()
    assert text == page_with_reference(text), "docs/cli.md: run python tests/support/cli_reference.py"


def test_the_commands_table_names_every_command():
    from support.cli_reference import PAGE, commands

    table = PAGE.read_text().split("\n\n")[1]
    missing = [n for n in commands() if f"`tickscope {n}" not in table]
    assert missing == [], f"docs/cli.md's commands table lacks {missing}"
