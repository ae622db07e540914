"""Loyalty ledger throughput on PostgreSQL: postings per second with N concurrent clients.

Each client is a thread with its own database connection (spread over a few processes so the GIL is not the
limit) calling loyalty.services in a loop, as the orders flow and the POS sync do: earn at the till or online,
redeem at the till, hold + capture at checkout, hold + void, and reverse an earlier earning. Members are picked at
random from `--members` (a `--hot` share of the calls all go to one member, to show contention on one row).
After the run, the ledger audit must pass (every posting balances, every balance equals its entries).

    .venv/bin/python bench/loyalty/run.py --seconds 20 --clients 32
    .venv/bin/python bench/loyalty/run.py --reset ...     # drop and recreate the bench database

Uses its own database (default `o2o_bench_loyalty`). Writes bench/loyalty/RESULTS-loyalty.md unless --no-write.

CPU per posting: the client processes' own CPU (user + system, all threads) and the CPU of the PostgreSQL backends
serving the bench connections (utime + stime from /proc/<pid>/stat, each backend found by pg_backend_pid()), over
the timed window, divided by the postings the clients made. On a shared machine this is far steadier than
postings/s: it does not count the time spent waiting for a CPU. `O2O_BENCH_CODE=<dir>` runs the services of
another tree (compare.py's "before") under this same harness.
"""

import argparse
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = Path(os.environ.get("O2O_BENCH_CODE") or ROOT)  # whose loyalty services run (compare.py: the old tree)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(CODE))
from bench.common import machine, prepare_database, setup_django  # noqa: E402 - after the path insert


def phone(i: int) -> str:
    return f"+8490{i:07d}"


def seed_members(count: int) -> None:
    """`count` members with 2,000 points each (one earning), unless they exist."""
    from django.core.management import call_command

    from loyalty import services
    from loyalty.models import Member

    call_command("migrate", verbosity=0)
    have = Member.objects.count()
    if have >= count:
        return
    from django.db import transaction

    Member.objects.bulk_create([Member(phone=phone(i)) for i in range(have, count)], ignore_conflicts=True)
    with transaction.atomic():
        for m in Member.objects.filter(phone__in=[phone(i) for i in range(have, count)]):
            services.earn_points(member=m, amount_paid_vnd=20_000_000, source=services.PostingSource(actor="bench"),
                                 idempotency_key=f"bench:seed:{m.pk}")


TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend on this machine has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of the line)


def analyze() -> None:
    """Fresh planner statistics and visibility maps before the clock starts. Autovacuum may be off (it is on this
    shared machine): a database that grew by tens of thousands of postings since its last ANALYZE gets plans made
    for a small one, and the figures then measure the planner's guesses, differently from run to run."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("loyalty_member", "loyalty_posting", "loyalty_entry", "loyalty_lot", "loyalty_redemptionhold",
                      "loyalty_holdallocation", "o2o_outboxevent"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def client_thread(seed: int, start_at: float, end_at: float, members: list[int], hot: float, out: list) -> None:
    from django.db import connection

    from loyalty import services
    from loyalty.exceptions import InsufficientPoints, NothingToReverse, RedemptionNotHeld

    rng = random.Random(seed)
    src_pos = services.PostingSource(channel="pos", store="BENCH-01", reference="R", actor="pos:BENCH-01")
    src_web = services.PostingSource(channel="website", reference="WEB", actor="channel:website")
    postings, refused, latencies = 0, 0, []
    earnings: list[int] = []
    n = 0
    with connection.cursor() as cursor:  # connect before the clock starts, as a pooled server would be
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    time.sleep(max(0.0, start_at - time.time()))
    server_cpu = backend_cpu(backend)
    try:
        while time.time() < end_at:
            n += 1
            member = members[0] if rng.random() < hot else rng.choice(members)
            key = f"bench:{seed}:{n}:{time.time_ns()}"
            op = rng.random()
            started = time.perf_counter()
            try:
                if op < 0.40:
                    p = services.earn_points(member=member, amount_paid_vnd=rng.randint(50_000, 2_000_000),
                                             source=src_pos, idempotency_key=key)
                    earnings.append(p.pk)
                    postings += 1
                elif op < 0.65:
                    services.redeem_points(member=member, points=rng.randint(1, 50), source=src_pos, idempotency_key=key)
                    postings += 1
                elif op < 0.85:
                    h = services.hold_redemption(member=member, points=rng.randint(1, 50), source=src_web,
                                                 idempotency_key=key)
                    services.capture_redemption(hold=h, reference=f"WEB-{n}")
                    postings += 2
                elif op < 0.93:
                    h = services.hold_redemption(member=member, points=rng.randint(1, 50), source=src_web,
                                                 idempotency_key=key)
                    services.void_redemption(hold=h)
                    postings += 2
                elif earnings:
                    services.reverse_earning(earning=earnings.pop(rng.randrange(len(earnings))), fraction="0.5",
                                             source=src_pos, idempotency_key=key)
                    postings += 1
            except (InsufficientPoints, NothingToReverse, RedemptionNotHeld):
                refused += 1
            latencies.append(time.perf_counter() - started)
    finally:
        server_cpu = backend_cpu(backend) - server_cpu
        connection.close()
    out.append((postings, refused, latencies, server_cpu))


def client_process(db: str, first_seed: int, threads: int, seconds: float, members: list[int], hot: float, ready, go,
                   queue) -> None:
    setup_django(db)
    from loyalty import services  # noqa: F401 - import before the clock starts

    ready.put(os.getpid())
    start_at = go.get()
    end_at = start_at + seconds
    time.sleep(max(0.0, start_at - time.time()))
    client_cpu = time.process_time()
    out: list = []
    workers = [
        threading.Thread(target=client_thread, args=(first_seed + i, start_at, end_at, members, hot, out)) for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((out, time.process_time() - client_cpu))


def run(args) -> dict:
    from django.db import connections

    from loyalty.models import Member, Posting

    members = list(Member.objects.filter(merged_into__isnull=True).order_by("pk").values_list("pk", flat=True)[: args.members])
    connections.close_all()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    per = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)]
    # Processes start Django before the clock starts; all clients start and stop at the same wall-clock times.
    ready, go = ctx.Queue(), ctx.Queue()
    procs = []
    seed = args.seed * 1000
    for threads in per:
        p = ctx.Process(target=client_process, args=(args.db, seed, threads, args.seconds, members, args.hot, ready, go, queue))
        seed += threads
        p.start()
        procs.append(p)
    for _ in procs:
        ready.get(timeout=300)
    start_at = time.time() + 0.5
    end_at = start_at + args.seconds
    for _ in procs:
        go.put(start_at)
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    from datetime import UTC

    window = {"created_at__gte": datetime.fromtimestamp(start_at, UTC), "created_at__lt": datetime.fromtimestamp(end_at, UTC)}
    postings = Posting.objects.filter(**window).count()
    flat = [r for chunk, _ in results for r in chunk]
    latencies = sorted(x for _, _, lat, _ in flat for x in lat)
    made = sum(p for p, _, _, _ in flat)
    client_cpu = sum(cpu for _, cpu in results)
    server_cpu = sum(cpu for _, _, _, cpu in flat)
    return {
        "clients": args.clients,
        "procs": args.procs,
        "members": len(members),
        "hot": args.hot,
        "seconds": args.seconds,
        "postings": postings,
        "postings_counted": made,
        "refused": sum(r for _, r, _, _ in flat),
        "per_second": postings / args.seconds,
        "calls": len(latencies),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0,
        "mean_ms": 1000 * statistics.mean(latencies) if latencies else 0,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "client_ms_per_posting": 1000 * client_cpu / made if made else 0,
        "server_ms_per_posting": 1000 * server_cpu / made if made else 0,
    }


def audit() -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    started = time.perf_counter()
    call_command("loyalty_audit", stdout=out)
    return f"{out.getvalue().strip()} ({time.perf_counter() - started:.1f} s)"


def table(rows: list[dict]) -> str:
    head = ("| clients | members | hot share | seconds | postings | postings/s | refused (no points) | call p50 ms | "
            "call p99 ms | CPU ms/posting: client + PostgreSQL |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['members']} | {r['hot']:.0%} | {r['seconds']} | {r['postings']} | "
            f"**{r['per_second']:.0f}** | {r['refused']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['client_ms_per_posting']:.2f} + {r['server_ms_per_posting']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--procs", type=int, default=4, help="processes the client threads are spread over")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--hot", type=float, default=0.0, help="share of calls that go to one member (contention)")
    parser.add_argument("--also-hot", type=float, default=None, help="a second run with this hot share")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="o2o_bench_loyalty")
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line at the end (compare.py)")
    args = parser.parse_args()

    prepare_database(args.db, reset=args.reset)
    setup_django(args.db)
    seed_members(args.members)
    analyze()
    rows = [run(args)]
    if args.also_hot is not None:
        args.hot = args.also_hot
        rows.append(run(args))
    load = os.getloadavg()
    verdict = audit()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    report = "\n".join(
        [
            "# Loyalty ledger benchmark",
            "",
            f"Date: {subprocess.run(['date'], capture_output=True, text=True).stdout.strip()} "
            f"({datetime.now().astimezone().isoformat(timespec='seconds')})  ",
            f"Machine: {machine()}, PostgreSQL {pg} on the same machine  ",
            f"Command: `.venv/bin/python bench/loyalty/run.py {' '.join(sys.argv[1:])}`  ",
            f"Database `{args.db}`; clients are threads with one connection each, over {args.procs} processes.  ",
            f"Load average at the end (1/5/15 min): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared machine).",
            "",
            "Mix per call: 40 % earn (till), 25 % redeem at the till, 20 % checkout hold + capture (2 postings), "
            "8 % hold + void (2 postings), 7 % reverse half of an earlier earning. Every posting: member row lock, "
            "posting + balanced entries, lots (oldest first), counters by conditional UPDATE, one transaction.",
            "",
            table(rows),
            "",
            f"Audit after the run: {verdict}",
            "",
        ]
    )
    print(report)
    if args.json:
        import json

        print(json.dumps({"rows": rows, "load": load}))
    if not args.no_write:
        Path(__file__).with_name("RESULTS-loyalty.md").write_text(report)


if __name__ == "__main__":
    main()
