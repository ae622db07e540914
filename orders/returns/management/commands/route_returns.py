"""Choose receiving stores for a returns problem file and print the plan: `manage.py route_returns problem.json`.

The problem format is in orders/routing/returns.py (`kind: "returns"`); each stored ReturnRoutingDecision keeps the
problem it solved, so operations can replay a decision with other settings ("what if the shortage preference were
5 km"). No database.
"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from orders.routing import ProblemError
from orders.routing.returns import route_returns


class Command(BaseCommand):
    help = "Route the returns of a problem JSON file (or - for stdin) and print the plan JSON."
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("problem", help="problem JSON file, or - for stdin")
        parser.add_argument("--prefer-shortage-km", type=float, default=None)
        parser.add_argument("--time-limit", type=float, default=None, help="CP-SAT time limit in seconds")
        parser.add_argument("--indent", type=int, default=2)

    def handle(self, *args, **opts):
        path = opts["problem"]
        try:
            raw = json.loads(sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{path}: not a UTF-8 JSON file ({exc})") from None
        if isinstance(raw, dict):
            overrides = {"prefer_shortage_km": opts["prefer_shortage_km"], "time_limit_s": opts["time_limit"]}
            raw["settings"] = {**(raw.get("settings") or {}), **{k: v for k, v in overrides.items() if v is not None}}
        try:
            plan = route_returns(raw)
        except ProblemError as exc:
            raise CommandError(f"{path}: {exc.message}") from None
        self.stdout.write(json.dumps(plan, indent=opts["indent"], ensure_ascii=False))
