"""docs/cli.md's reference section, written from the commands' own ``--help`` so the two cannot
drift: tests/cli/test_docs.py compares, and ``python tests/support/cli_reference.py`` rewrites the
section after a command or option changes."""

import sys
from pathlib import Path

import typer
from typer._click.core import Context

from tickscope.main import PROG, app

PAGE = Path(__file__).parents[2] / "docs" / "cli.md"
BEGIN = (
    "<!-- reference: generated from each command's --help by tests/support/cli_reference.py; do not edit -->"
)
END = "<!-- end of reference -->"
WIDTH = 100


def commands() -> dict:
    """The app's commands by name, in the order ``tickscope --help`` lists them."""
    return dict(typer.main.get_command(app).commands)


def help_text(name: str) -> str:
    group = typer.main.get_command(app)
    root = Context(group, info_name=PROG, terminal_width=WIDTH, max_content_width=WIDTH)
    cmd = group.commands[name]
    ctx = Context(cmd, info_name=name, parent=root, terminal_width=WIDTH, max_content_width=WIDTH)
    return cmd.get_help(ctx)


def reference() -> str:
    parts = [BEGIN, ""]
    for name in commands():
        parts += [f"### tickscope {name}", "", "```text", help_text(name).rstrip(), "```", ""]
    return "\n".join([*parts, END])


def page_with_reference(text: str) -> str:
    """The page with its reference section replaced (appended when it has none)."""
    if BEGIN in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + reference() + tail
    return text.rstrip("\n") + "\n\n## Reference\n\n" + reference() + "\n"


if __name__ == "__main__":
    PAGE.write_text(page_with_reference(PAGE.read_text()))
    print(f"rewrote the reference in {PAGE}", file=sys.stderr)
