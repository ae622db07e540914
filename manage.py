#!/usr/bin/env python3
"""Django's command-line utility, and the project's bootstrap.

Run with any Python 3.11: when Django is not importable from the current interpreter, this script installs uv
(in a private tool environment under `.tools/`), creates `.venv` from `uv.lock`, and re-runs itself inside it.
That is what makes `python3 manage.py demo` and `python3 manage.py test` the only two set-up commands.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _uv() -> str:
    """Path of a uv binary: the one on PATH, else one installed into .tools/ with the running Python's pip."""
    from shutil import which

    found = which("uv")
    if found:
        return found
    tools = ROOT / ".tools"
    uv_bin = tools / "bin" / "uv"
    if not uv_bin.exists():
        print("o2o: installing uv into .tools/ ...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", str(tools)])
        subprocess.check_call([str(tools / "bin" / "python"), "-m", "pip", "install", "--quiet", "uv"])
    return str(uv_bin)


def _bootstrap() -> None:
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    if os.environ.get("O2O_NO_BOOTSTRAP"):
        return
    print("o2o: syncing .venv from uv.lock ...", file=sys.stderr)
    subprocess.check_call([_uv(), "sync", "--frozen", "--quiet", "--python", "3.11"], cwd=ROOT)
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(ROOT / "manage.py"), *sys.argv[1:]])


def main() -> None:
    _bootstrap()
    if sys.argv[1:2] == ["test"]:
        # The suite runs on PostgreSQL, the system of record; SQLite is only the demo's embedded default.
        os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/o2o")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
