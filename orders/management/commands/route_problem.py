"""Solve a routing problem file and print the plan: `manage.py route_problem problem.json [--time-limit 5]`.
A returns problem (`kind: "returns"`, orders/routing/returns.py) goes to the returns router.

No database: operations use it for what-ifs ("what if store X closes") on an exported problem.
"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from orders.routing import ProblemError, check_plan, route
from orders.routing.returns import route_returns


class Command(BaseCommand):
    help = "Route the orders of a problem JSON file (or - for stdin) and print the plan JSON."
    requires_system_checks: list = []  # pure computation: nothing in the project's configuration can break it
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("problem", help="problem JSON file, or - for stdin")
        parser.add_argument("--time-limit", type=float, default=None, help="CP-SAT time limit in seconds")
        parser.add_argument("--workers", type=int, default=None, help="CP-SAT workers")
        parser.add_argument("--no-explain", action="store_true", help="leave out the per-assignment candidates")
        parser.add_argument("--indent", type=int, default=2)

    def handle(self, *args, **opts):
        path = opts["problem"]
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path}: not UTF-8 text") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        if opts["time_limit"] is not None and opts["time_limit"] < 0:
            raise CommandError("--time-limit must be >= 0")
        if isinstance(raw, dict) and raw.get("kind") == "returns":
            # A stored return-routing decision's problem: the returns router answers it (as route_returns does).
            if opts["time_limit"] is not None:
                raw["settings"] = {**(raw.get("settings") or {}), "time_limit_s": opts["time_limit"]}
            try:
                plan = route_returns(raw)
            except ProblemError as exc:
                raise CommandError(f"{path}: invalid problem: {exc.message}") from None
            self.stdout.write(json.dumps(plan, indent=opts["indent"] or None, ensure_ascii=False))
            return
        try:
            plan = route(
                raw,
                time_limit_s=opts["time_limit"],
                num_workers=opts["workers"],
                explain=False if opts["no_explain"] else None,
            )
        except ProblemError as exc:
            raise CommandError(f"{path}: invalid problem: {exc.message}") from None
        # The same gate the service applies before it commits a plan; a failure here is a router bug.
        violations = check_plan(raw, plan)
        if violations:
            raise CommandError("the router produced an invalid plan: " + "; ".join(violations[:5]))
        self.stdout.write(json.dumps(plan, indent=opts["indent"] or None, ensure_ascii=False))
