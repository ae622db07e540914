"""The HTTP API's contract does not drift: the OpenAPI schema generated now is the committed copy, byte for byte.

tests/openapi.yaml was the schema of 35a9c31 through issue 17's restructuring (which had to change nothing), and
was regenerated for issue 18's additions (POST /api/v1/pos/damage/, change offers on orders, a routing decision's
cause, a receipt's taken_from_online, no stock refusal at the till). A change that alters the schema on purpose regenerates the copy in the same commit:
    O2O_NO_BOOTSTRAP=1 .venv/bin/python manage.py spectacular --file tests/openapi.yaml
"""

import difflib
from pathlib import Path

from django.core.management import call_command

COMMITTED = Path(__file__).with_name("openapi.yaml")


def _generate(tmp_path: Path, name: str) -> str:
    # The management command itself, so the rendering (YAML dumper, key order, hooks) is the one the copy came from.
    out = tmp_path / name
    call_command("spectacular", file=str(out))
    return out.read_text(encoding="utf-8")


def test_openapi_schema_is_the_committed_copy(tmp_path):
    current = _generate(tmp_path, "openapi.yaml")
    expected = COMMITTED.read_text(encoding="utf-8")
    if current != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), current.splitlines(keepends=True),
            fromfile="tests/openapi.yaml (committed)", tofile="generated now", n=3,
        ))
        raise AssertionError(f"the OpenAPI schema changed:\n{diff}")


def test_openapi_schema_generation_is_deterministic(tmp_path):
    # A diff that came and went from run to run (set order, dict order of a registry) would make the check above noise.
    assert _generate(tmp_path, "first.yaml") == _generate(tmp_path, "second.yaml")
