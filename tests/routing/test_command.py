"""manage.py route_problem: a file (or stdin) in, plan JSON out, clean errors; no database."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from orders.routing import check_plan


def test_route_problem_file(build, tmp_path):
    b = build
    p = b.problem([b.store("A")], {("A", "X"): 2}, [b.order("o", {"X": 1}), b.order("far", {"X": 1}, 1.0)])
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(p))
    out = io.StringIO()
    call_command("route_problem", str(path), "--time-limit", "1", stdout=out)
    plan = json.loads(out.getvalue())
    assert plan["served"] == 1 and plan["unassigned"] == [{"order": "far", "reason": "no_store_in_range"}]
    assert check_plan(p, plan) == []


def test_stdin(build, monkeypatch):
    b = build
    p = b.problem([b.store("A")], {("A", "X"): 2}, [b.order("o", {"X": 1})])
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(p)))
    out = io.StringIO()
    call_command("route_problem", "-", "--no-explain", stdout=out)
    assert "candidates" not in out.getvalue() and json.loads(out.getvalue())["served"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"stores": []}', "invalid problem: problem: missing field 'orders'"),
        (
            '{"stores": [], "orders": [{"id": "o", "lines": [{"sku": "X", "qty": -2}], "lat": 1, "lon": 1}]}',
            "qty must be >= 1",
        ),
    ],
)
def test_bad_input_is_a_command_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("route_problem", str(path))


def test_missing_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("route_problem", str(tmp_path / "nope.json"))
