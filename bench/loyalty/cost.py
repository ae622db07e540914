"""What one posting costs, counted rather than timed (steady on a shared machine):

    * round trips to PostgreSQL per action, BEGIN and COMMIT included, counted from libpq's own protocol trace
      (every simple Query and every extended-protocol Sync the client sends), with the hot statements prepared as
      in production (after a warm-up, so the one-off PREPAREs are not counted);
    * with --cpu N, CPU per action (client process + its PostgreSQL backend, from /proc), each action N times in
      a row on one connection, in the same order as the round-trip count;
    * with --profile SECONDS, a single client running run.py's mix under cProfile: where the client's CPU goes.

    .venv/bin/python bench/loyalty/cost.py
    .venv/bin/python bench/loyalty/cost.py --profile 10

Uses the bench database (default `o2o_bench_loyalty`, created and seeded by run.py); its own members.
`O2O_BENCH_CODE=<dir>` counts another tree's services (compare.py does, for "before").
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = Path(os.environ.get("O2O_BENCH_CODE") or ROOT)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(CODE))
from bench.common import prepare_database, setup_django  # noqa: E402 - after the path insert


def _harness():
    """This tree's run.py (its client loop, backend CPU, ANALYZE), whichever tree's services are measured."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("loyalty_bench_harness", ROOT / "bench/loyalty/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RoundTrips:
    """Counts the messages that make the client wait for the server, from libpq's trace of the connection."""

    def __init__(self, connection):
        self.connection = connection
        self.count = 0
        self.sent: list[str] = []

    def __enter__(self):
        self.connection.ensure_connection()
        self.file = tempfile.TemporaryFile(mode="w+")
        pgconn = self.connection.connection.pgconn
        pgconn.trace(self.file.fileno())
        pgconn.set_trace_flags(1)  # PQTRACE_SUPPRESS_TIMESTAMPS
        return self

    def __exit__(self, *exc) -> None:
        self.connection.connection.pgconn.untrace()
        self.file.seek(0)
        for line in self.file.read().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0] == "F" and parts[2].split()[0] in ("Query", "Sync"):
                self.count += 1
                self.sent.append(parts[2][:60])
        self.file.close()


def _actions(m, key):
    """The six hot actions on one member, in an order that keeps its points topped up; yields (name, call)."""
    from loyalty import services

    src = services.PostingSource(channel="pos", store="BENCH-01", reference="R", actor="pos:BENCH-01")
    web = services.PostingSource(channel="website", reference="WEB", actor="channel:website")
    state = {}

    def earn():
        state["earning"] = services.earn_points(member=m, amount_paid_vnd=1_000_000, source=src, idempotency_key=key())

    def hold():
        state["hold"] = services.hold_redemption(member=m, points=20, source=web, idempotency_key=key())

    yield "earn", earn
    yield "redeem", lambda: services.redeem_points(member=m, points=20, source=src, idempotency_key=key())
    yield "hold", hold
    yield "capture", lambda: services.capture_redemption(hold=state["hold"], reference=key())
    hold()
    yield "void", lambda: services.void_redemption(hold=state["hold"])
    yield (
        "reverse",
        lambda: services.reverse_earning(earning=state["earning"], fraction="0.5", source=src, idempotency_key=key()),
    )


def _member_and_keys():
    from loyalty import services

    m, _ = services.get_or_create_member(phone=f"+8498{random.randrange(10**7):07d}")
    n = [0]

    def key() -> str:
        n[0] += 1
        return f"bench:cost:{m.pk}:{n[0]}:{time.time_ns()}"

    src = services.PostingSource(actor="bench")
    services.earn_points(member=m, amount_paid_vnd=200_000_000, source=src, idempotency_key=key())
    return m, key


def statement_counts(rounds: int = 3) -> dict[str, int]:
    """Round trips per action, the most frequent count over a few repetitions (after one warm-up round)."""
    from django.db import connection

    m, key = _member_and_keys()
    seen: dict[str, list[int]] = {}
    for i in range(rounds + 1):
        for action, call in _actions(m, key):
            with RoundTrips(connection) as t:
                call()
            if i:  # the first round prepares the statements
                seen.setdefault(action, []).append(t.count)
    return {action: max(set(counts), key=counts.count) for action, counts in seen.items()}


def cpu_per_action(repeat: int) -> dict[str, tuple[float, float]]:
    """(client ms, PostgreSQL backend ms) of CPU per action, over `repeat` rounds of the six actions."""
    from django.db import connection

    backend_cpu = _harness().backend_cpu
    m, key = _member_and_keys()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    for _, call in _actions(m, key):  # prepare the statements
        call()
    totals: dict[str, list[float]] = {}
    for _ in range(repeat):
        for action, call in _actions(m, key):
            client, server = time.process_time(), backend_cpu(backend)
            call()
            spent = totals.setdefault(action, [0.0, 0.0])
            spent[0] += time.process_time() - client
            spent[1] += backend_cpu(backend) - server
    return {action: (1000 * c / repeat, 1000 * s / repeat) for action, (c, s) in totals.items()}


def profile(seconds: float, members: list[int]) -> None:
    import cProfile
    import pstats

    client_thread = _harness().client_thread
    out: list = []
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting for the server
    start = time.time()
    cpu = time.process_time()
    profiler.enable()
    client_thread(1, start, start + seconds, members, 0.0, out)
    profiler.disable()
    cpu = time.process_time() - cpu
    postings = out[0][0]
    print(
        f"one client, {seconds:.0f} s under cProfile: {postings} postings, client CPU {1000 * cpu / postings:.2f} "
        f"ms/posting (profiled: slower than without)",
        file=sys.stderr,
    )
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench_loyalty")
    parser.add_argument("--profile", type=float, default=0, help="seconds of one client under cProfile")
    parser.add_argument("--cpu", type=int, default=0, help="rounds of the six actions for CPU per action")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    prepare_database(args.db, reset=False)
    setup_django(args.db)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _harness().analyze()
    counts = statement_counts()
    for action, count in counts.items():
        print(f"{action:8} {count} round trips")
    cpu = cpu_per_action(args.cpu) if args.cpu else {}
    for action, (client, server) in cpu.items():
        print(f"{action:8} CPU {client:.2f} ms client + {server:.2f} ms PostgreSQL = {client + server:.2f} ms")
    if args.profile:
        from loyalty.models import Member

        members = list(
            Member.objects.filter(merged_into__isnull=True).order_by("pk").values_list("pk", flat=True)[:2000]
        )
        profile(args.profile, members)
    if args.json:
        print(json.dumps({"statements": counts, "cpu": cpu}))


if __name__ == "__main__":
    main()
