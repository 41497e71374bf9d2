"""docs/session.schema.json holds for every kind of session tickscope writes: profiled, synthetic, merged."""

import json
from pathlib import Path

import jsonschema
import pytest

from support import QUIET, SUBJECT
from support.cli import run_cli
from support.synth import synth_session

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "session.schema.json").read_text())
PARTS = ("meta", "summary", "slowest")


def validator(part: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{part}"})


def validate_session(path: Path) -> list[str]:
    """Validate each of the session's JSON files that exists; return the parts validated."""
    seen = []
    for part in PARTS:
        f = path / f"{part}.json"
        if f.exists():
            validator(part).validate(json.loads(f.read_text()))
            seen.append(part)
    return seen


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    out = run_cli("profile", "--duration", "20s", "--out", str(d / "profiled"), *QUIET, "--", *SUBJECT, "500", "--rate", "5000")  # fmt: skip
    assert out.returncode == 0, out.stderr
    synth_session(d / "synthetic", intervals=3, per_interval=200)
    out = run_cli("merge", str(d / "merged"), str(d / "profiled"), str(d / "synthetic"))
    assert out.returncode == 0, out.stderr
    return d


def test_the_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(PARTS) <= set(SCHEMA["$defs"])


@pytest.mark.parametrize("kind, parts", [("profiled", PARTS), ("synthetic", ("meta",)), ("merged", PARTS)])
def test_every_kind_of_session_validates(sessions, kind, parts):
    assert validate_session(sessions / kind) == list(parts)


def test_the_schema_rejects_what_a_reader_could_not_use(sessions):
    meta = json.loads((sessions / "profiled" / "meta.json").read_text())
    assert meta["clocks"]["realtime"]["knots"], "a profiled session says how REALTIME moved (validated above)"
    summary = json.loads((sessions / "profiled" / "summary.json").read_text())
    slowest = json.loads((sessions / "profiled" / "slowest.json").read_text())
    bad = [
        ("meta", {k: v for k, v in meta.items() if k != "status"}),
        ("meta", {**meta, "format_version": "1"}),
        ("meta", {**meta, "counters": {**meta["counters"], "produced": -1}}),
        (
            "meta",
            {
                **meta,
                "clocks": {
                    **meta["clocks"],
                    "realtime": {k: v for k, v in meta["clocks"]["realtime"].items() if k != "knots"},
                },
            },
        ),  # fmt: skip
        ("summary", {"feed": {k: v for k, v in summary["feed"].items() if k != "p99"}}),
        ("summary", {"feed": {**summary["feed"], "count": 1.5}}),
        ("summary", {**summary, "attribution": {**summary["attribution"], "tails": {"p99": {"traces": 3}}}}),
        ("slowest", [{**slowest[0], "stamps": [{"point": "md.rx"}]}]),
        ("slowest", {"not": "a list"}),
    ]
    for part, doc in bad:
        assert not validator(part).is_valid(doc), (part, doc)


def test_a_session_with_dimensions_validates_and_its_per_value_rows_are_checked(tmp_path):
    """summary.json's ``dimensions`` (tests/programs/dims_subject.py: symbols on the tick, venues
    on legs): every value's populations, rows per tag and tail attribution are in the schema."""
    import sys

    from support import PROGRAMS

    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable,
                  str(PROGRAMS / "dims_subject.py"), "300")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert validate_session(tmp_path / "s") == list(PARTS)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    s0 = summary["dimensions"]["symbol"]["values"]["S0"]
    assert s0["ticks"] and "attribution" in s0 and {"strategy", "send", "tick_to_trade"} <= set(s0["tags"])

    def with_s0(row: dict) -> dict:
        values = {**summary["dimensions"]["symbol"]["values"], "S0": row}
        return {**summary, "dimensions": {**summary["dimensions"], "symbol": {"cap": 16, "values": values}}}

    bad = [
        with_s0({k: v for k, v in s0.items() if k != "tags"}),
        with_s0({**s0, "ticks": -1}),
        with_s0({**s0, "tags": {"send": {"count": 3}}}),
        with_s0({**s0, "attribution": {**s0["attribution"], "tails": {"p99": {"traces": 3}}}}),
        {**summary, "dimensions": {"symbol": {"values": {}}}},
    ]
    for doc in bad:
        assert not validator("summary").is_valid(doc)
