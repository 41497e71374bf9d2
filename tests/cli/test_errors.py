"""One error contract for every command: a usage or input error, click's own included, is one
line on stderr, ``tickscope <command>: <what> (<what to do>)``, exit 2. The commands come from the
typer app, so a command added later is held to it without touching this file."""

import ast
import re
from pathlib import Path

import pytest
import typer

from support.cli import run_cli
from tickscope.main import app

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = typer.main.get_command(app).commands
CHECKED = {"DURATION", "RATE", "N", "RATE,...", "PCT=LATENCY,...", "PCT=SHARE,...", "SHARE"}


def contract(name: str) -> re.Pattern:
    return re.compile(rf"tickscope {re.escape(name)}: \S.* \(.+\)")


def assert_one_line(r, name: str, *needles: str):
    assert r.returncode == 2, (r.returncode, r.stdout[-1000:], r.stderr[-1000:])
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and contract(name).fullmatch(lines[0]), r.stderr
    assert "Traceback" not in r.stdout + r.stderr and "Usage:" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def arguments(cmd) -> list[str]:
    """Stand-ins for a command's required arguments (never read: the error comes first)."""
    return [f"arg{i}" for i, p in enumerate(cmd.params) if p.param_type_name == "argument" and p.required]


def value_options(cmd) -> list:
    return [p for p in cmd.params if p.param_type_name == "option" and not p.is_flag and not p.hidden]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_option_is_one_line(name):
    r = run_cli(name, "--no-such-flag", *arguments(COMMANDS[name]))
    assert_one_line(r, name, "no such option: --no-such-flag", f"see tickscope {name} --help")


@pytest.mark.parametrize("name", COMMANDS)
def test_something_missing_is_one_line(name):
    """A required argument left out, else an option left without its value, else an argument
    given to a command that takes none."""
    cmd = COMMANDS[name]
    if arguments(cmd):
        r, needle = run_cli(name), "missing argument"
    elif value_options(cmd):
        opt = max(value_options(cmd)[0].opts, key=len)
        r, needle = run_cli(name, opt), f"option '{opt}' requires an argument"
    else:
        r, needle = run_cli(name, "stray"), "unexpected argument stray"
    assert_one_line(r, name, needle)


def checked_options(name: str):
    return [p for p in value_options(COMMANDS[name]) if p.metavar in CHECKED]


@pytest.mark.parametrize(
    "name, option",
    [(n, max(p.opts, key=len)) for n in COMMANDS for p in checked_options(n)],
)
def test_a_bad_value_is_one_line_before_anything_starts(name, option, tmp_path):
    r = run_cli(name, option, "bogus", *arguments(COMMANDS[name]), cwd=tmp_path)
    assert_one_line(r, name, option)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_every_value_option_has_a_metavar_for_people(name):
    """`--duration DURATION`, `SESSION...`: never the parser's types (<list[Path]>, <int range>)."""
    text = run_cli(name, "--help", env={"COLUMNS": "200"}).stdout
    names = [text.splitlines()[0]] + re.findall(r"^  (-\S.*?)(?:  |$)", text, re.M)
    assert not [n for n in names if re.search(r"[<>{}]", n)], names
    assert text.startswith(f"Usage: tickscope {name} ")
    if name in ("profile", "sweep"):
        assert "[-- CMD [ARG...]]" in text.splitlines()[0]


def test_every_command_but_the_argument_free_ones_has_a_checked_value():
    """The bad-value test covers a command through its checked options: a command with value
    options and none of them checked would slip through."""
    unchecked = [n for n in COMMANDS if value_options(COMMANDS[n]) and not checked_options(n)]
    assert unchecked in ([], ["report"]), unchecked  # report: paths only, refused when read


def test_report_with_a_missing_session_is_one_line(tmp_path):
    assert_one_line(run_cli("report", str(tmp_path / "nope"), cwd=tmp_path), "report", "no session at")
    assert_one_line(run_cli("report", cwd=tmp_path), "report", "no session given")


# -- the wording of the errors raised below the CLI ----------------------------------------------------
# The CLI prints what the session, ring, run and wire code raise as it is: those messages follow the
# contract too. A fix is said in parentheses at the end, never as a ": do this" or "; do this" tail.
RAISING = ("collectors/session", "collectors/rings", "collectors/run", "collectors/wire")
IMPERATIVES = {
    "add", "apt-get", "attach", "call", "check", "choose", "convert", "cut", "declare", "delete", "disable",
    "drop", "enable", "give", "install", "label", "leave", "pass", "pick", "put", "raise", "re-record",
    "rebuild", "remove", "rename", "restart", "run", "see", "set", "start", "stop", "try", "upgrade", "use",
    "write",
}  # fmt: skip


def message_text(node) -> str | None:
    """A message literal as written, each f-string field as ``{}``; None when it is not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = message_text(node.left), message_text(node.right)
        return None if left is None or right is None else left + right
    return None


def fix_tail(message: str) -> str | None:
    """The ``: do this`` / ``; do this`` tail of a message (what its parentheses leave), if any."""
    bare = message
    while (stripped := re.sub(r"\([^()]*\)", "", bare)) != bare:
        bare = stripped
    tail = re.split(r"[:;] ", bare)[1:]
    for part in tail:
        words = part.split()
        if words and words[0].lower() in IMPERATIVES:
            return part.strip()
    return None


def raised_messages(root=ROOT, folders=RAISING):
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
                    text = message_text(node.exc.args[0])
                    if text is not None:
                        yield f"{path.relative_to(root)}:{node.lineno}", text


def test_errors_raised_below_the_cli_say_their_fix_in_parentheses():
    found = [f"{where}: {text!r}" for where, text in raised_messages() if fix_tail(text)]
    assert not found, "\n".join(found)


def test_the_fix_tail_scan_tells_the_two_wordings_apart(tmp_path):
    (tmp_path / "collectors" / "run").mkdir(parents=True)
    (tmp_path / "collectors" / "run" / "x.py").write_text(
        "def f(d):\n"
        "    raise ProfileError(f'cannot find a name next to {d}: use --out DIR')\n"
        "    raise ProfileError(f'{d}: owned by another user; attach as the writer' + 's user')\n"
        "    raise ProfileError(f'{d} is taken (choose another --out)')\n"
        "    raise ProfileError(f'{d}: permission denied (rings are mode 0600: run as the writer)')\n"
    )
    found = [(w, fix_tail(t)) for w, t in raised_messages(tmp_path, ("collectors/run",)) if fix_tail(t)]
    assert found == [
        ("collectors/run/x.py:2", "use --out DIR"),
        ("collectors/run/x.py:3", "attach as the writers user"),
    ]
