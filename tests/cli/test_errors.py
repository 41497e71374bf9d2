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


# -- the wording of every error and warning the code writes ------------------------------------------
# The CLI prints what the session, ring, run, side and wire code raise as it is, and main.py's own
# errors and every warning a side collector or the run says: those lines follow the contract too.
SCANNED = ("collectors/session", "collectors/rings", "collectors/run", "collectors/side", "collectors/wire",
           "main.py")  # fmt: skip
# Raised only to be wrapped into another message, never printed alone: a histogram's decode error
# becomes part of "<file>: line N is not an HdrHistogram interval: ..." (whose fix is that line's);
# a plain ValueError here is an invariant of ours (a bug), not input.
FRAGMENTS = {"HistogramDecodeError", "LayoutLimitError", "ValueError"}
WARNING_CALLS = {"warn", "note"}  # self.warn(...), a collector's note(...)
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


def wraps_another(node) -> bool:
    """``f"--rates {text}: {e}"``: the message ends in another error's own text, which says its
    fix where that error is raised (and is scanned there)."""
    while isinstance(node, ast.BinOp):
        node = node.right
    return (
        isinstance(node, ast.JoinedStr)
        and isinstance(node.values[-1], ast.FormattedValue)
        and isinstance(node.values[-1].value, ast.Name)
    )


def fix_tail(message: str) -> str | None:
    """The ``: do this`` / ``; do this`` tail of a message (what its parentheses leave), if any."""
    tail = re.split(r"[:;] ", outside_parentheses(message))[1:]
    for part in tail:
        words = part.split()
        if words and words[0].lower() in IMPERATIVES:
            return part.strip()
    return None


def outside_parentheses(message: str) -> str:
    bare = message
    while (stripped := re.sub(r"\([^()]*\)", "", bare)) != bare:
        bare = stripped
    return bare


def says_what_to_do(message: str) -> bool:
    """``<what> (<what to do>)``: the message ends in parentheses, and an ``expected ...`` list of
    the accepted values is inside them."""
    ends = re.search(r"\S \([^()]*(\([^()]*\)[^()]*)*\)$", message.strip())
    return bool(ends) and not re.search(r"[:;,] expected ", outside_parentheses(message))


def call_name(node) -> str | None:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def written_messages(root=ROOT, folders=SCANNED):
    """(where, kind, text, wraps another) of every literal message: ``error`` for what is raised
    (fragments left out) and main.py's ``fail(...)``, ``warning`` for ``warn``/``note``/``warnings.append``."""
    for folder in folders:
        top = root / folder
        for path in [top] if top.suffix == ".py" else sorted(top.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                kind, arg = None, None
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
                    if call_name(node.exc) not in FRAGMENTS:
                        kind, arg = "error", node.exc.args[0]
                elif isinstance(node, ast.Call) and node.args:
                    name = call_name(node)
                    if name == "fail" and path.name == "main.py":
                        kind, arg = "error", node.args[0]
                    elif name in WARNING_CALLS or (
                        name == "append" and isinstance(node.func, ast.Attribute)
                        and ast.unparse(node.func.value).endswith("warnings")
                    ):  # fmt: skip
                        kind, arg = "warning", node.args[0]
                text = message_text(arg) if arg is not None else None
                if text is not None:
                    yield f"{path.relative_to(root)}:{node.lineno}", kind, text, wraps_another(arg)


def test_errors_and_warnings_say_their_fix_in_parentheses():
    """A fix is said in parentheses at the end, never as a ``: do this`` or ``; do this`` tail."""
    found = [f"{where}: {text!r}" for where, _, text, _ in written_messages() if fix_tail(text)]
    assert not found, "\n".join(found)


def test_every_error_says_what_to_do():
    """Every error is ``<what> (<what to do>)``: it ends in parentheses holding the fix. The rule
    for "expected X": a message listing the accepted values says what to do, as long as the list
    is the parenthesised part (``--trader 'x' is not a trader (expected python or rust)``); an
    ``: expected X`` tail with nothing in parentheses is refused like any fix said outside them.
    A message ending in another error's text (``{e}``) carries that one's fix. Warnings are held
    to the parentheses rule above, not to this one: many say what happened and that the session
    went on, which is all there is to say."""
    found = [f"{where}: {text!r}" for where, kind, text, wraps in written_messages()
             if kind == "error" and not wraps and not says_what_to_do(text)]  # fmt: skip
    assert not found, f"{len(found)} errors say no fix:\n" + "\n".join(found)


def test_the_scans_tell_the_wordings_apart(tmp_path):
    (tmp_path / "collectors" / "run").mkdir(parents=True)
    (tmp_path / "collectors" / "run" / "x.py").write_text(
        "def f(d, e):\n"
        "    raise ProfileError(f'cannot find a name next to {d}: use --out DIR')\n"
        "    raise ProfileError(f'{d}: owned by another user; attach as the writer' + 's user')\n"
        "    raise ProfileError(f'{d} is taken (choose another --out)')\n"
        "    raise ProfileError(f'{d}: permission denied (rings are mode 0600: run as the writer)')\n"
        "    raise ProfileError(f'--trader {d!r}: expected python or rust')\n"
        "    raise ProfileError(f'--trader {d!r} is not a trader (expected python or rust)')\n"
        "    raise ProfileError(f'--loop {d!r}: expected busy or tokio (--trader rust)')\n"
        "    raise ProfileError(f'--rates {d!r}: {e}')\n"
        "    raise ValueError(f'slope {d} must be positive')\n"
        "    self.warn(f'{d} not found: apt-get install tcpdump (no wire capture)')\n"
        "    self.warnings.append(f'{d}: it stopped (the session goes on)')\n"
    )
    got = list(written_messages(tmp_path, ("collectors/run",)))
    assert [(w, fix_tail(t)) for w, _, t, _ in got if fix_tail(t)] == [
        ("collectors/run/x.py:2", "use --out DIR"),
        ("collectors/run/x.py:3", "attach as the writers user"),
        ("collectors/run/x.py:11", "apt-get install tcpdump"),
    ]
    errors = [(w, says_what_to_do(t) or wraps) for w, kind, t, wraps in got if kind == "error"]
    assert errors == [
        ("collectors/run/x.py:2", False),
        ("collectors/run/x.py:3", False),
        ("collectors/run/x.py:4", True),
        ("collectors/run/x.py:5", True),
        ("collectors/run/x.py:6", False),
        ("collectors/run/x.py:7", True),
        ("collectors/run/x.py:8", False),
        ("collectors/run/x.py:9", True),
    ]
