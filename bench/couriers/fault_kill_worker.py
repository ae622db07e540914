"""Fault test: a Celery worker SIGKILLed while it delivers outbox events, again and again, on the real Redis broker.

Every event must reach the website stand-in (which verifies signatures, deduplicates by id and counts), none may be
applied twice, each aggregate's events must be applied in order and none missing, and raw deliveries ≥ events.

    .venv/bin/python bench/couriers/fault_kill_worker.py              # 100 kills (the bench)
    .venv/bin/python bench/couriers/fault_kill_worker.py --kills 8    # the CI step (.ci/run), about a minute

Two kinds of kill, both SIGKILL while a delivery is in flight:
- the pool process that runs the task (`celery worker --pool=prefork --concurrency=1`): the parent sees the
  worker lost and, with acks_late + reject_on_worker_lost, puts the task message back on Redis; a new pool process
  takes it again;
- every `--whole-every`-th kill (default 4), the whole worker (its process group): nothing acknowledges or rejects
  anything; the next worker and the next queued delivery (as the beat would) carry on.

Workers run with bench/couriers/fault_settings.py (the project's settings and Celery configuration, only the apps the
outbox needs): with every app a start costs ~6 s of CPU (orders imports the router, OR-Tools and pandas); `--full-apps`
uses o2o.settings.

Own database `o2o_fault` (created and migrated here, never the test database), own Redis DB 13 (flushed at start and
end; DB 0 is refused), own loopback receiver. Each round first commits a batch of events with no delivery running
(what a crash between the business commit and the delivery leaves behind), then queues deliveries, waits for the
worker to deliver a random number of events (1 to the batch size), sleeps a random 0-250 ms and kills. Then one last worker drains.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("O2O_FAULT_DB", "o2o_fault")
PG = os.environ.get("O2O_FAULT_PG", "postgres://postgres@127.0.0.1:5432")
BROKER = os.environ.get("O2O_FAULT_BROKER", "redis://127.0.0.1:6379/13")
os.environ.update(
    DATABASE_URL=f"{PG}/{DB_NAME}", CELERY_BROKER_URL=BROKER, O2O_OUTBOX_KICK="0", O2O_LOG_LEVEL="WARNING",
    O2O_OUTBOX_BASE_DELAY_SECONDS="1",
)

AGGREGATES = 7
SECRET = "fault-site-secret"


def ensure_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def start_worker(n: int, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "o2o", "worker", "--pool=prefork", "--concurrency=1",
           "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"fault{n}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def children(pid: int) -> list[int]:
    """The worker's pool processes (their parent is the worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)  # this worker's own session only
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=int(os.environ.get("O2O_FAULT_ITERATIONS", "100")),
                        help="SIGKILLs (rounds); 100 for the bench, 8 in CI")
    parser.add_argument("--whole-every", type=int, default=4,
                        help="every N-th kill takes the whole worker down, the others its pool process (1: always)")
    parser.add_argument("--batch", type=int, default=int(os.environ.get("O2O_FAULT_BATCH", "30")),
                        help="events committed before each round")
    parser.add_argument("--full-apps", action="store_true",
                        help="workers with every app (o2o.settings; ~6 s of CPU per start) instead of the outbox's")
    args = parser.parse_args()
    iterations, batch = args.kills, args.batch
    os.environ["DJANGO_SETTINGS_MODULE"] = "o2o.settings" if args.full_apps else "bench.couriers.fault_settings"
    ensure_database()
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import transaction

    from bench.couriers.receiver import Receiver
    from o2o import outbox
    from o2o.models import OutboxEvent, SalesChannel
    from o2o.tasks import deliver_outbox

    broker = redis.Redis.from_url(BROKER)
    # The script empties its broker DB before and after; never one that other workers may be using.
    if broker.connection_pool.connection_kwargs.get("db", 0) == 0:
        print(f"refusing to flush Redis DB 0 ({BROKER}); set O2O_FAULT_BROKER to a dedicated DB", file=sys.stderr)
        return 2
    call_command("migrate", interactive=False, verbosity=0)
    broker.flushdb()
    OutboxEvent.objects.all().delete()
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("O2O_FAULT_SEED", "20260107")))
    seq: dict[str, int] = defaultdict(int)
    kills_mid_delivery = whole_kills = 0
    log = open(os.environ.get("O2O_FAULT_LOG", "/tmp/o2o_fault_kill_worker.log"), "w")  # the workers' output
    worker = None
    with Receiver(SECRET, delay_s=0.01) as site:
        channel, _ = SalesChannel.objects.update_or_create(
            code="fault-site", defaults={"name": "Fault-test site", "webhook_url": site.url, "webhook_secret": SECRET}
        )
        total = 0
        for i in range(iterations):
            for _ in range(batch):
                aggregate = f"order:F-{rng.randrange(AGGREGATES)}"
                seq[aggregate] += 1
                with transaction.atomic():  # the business commit: the event row is there, nothing sent yet
                    outbox.emit(topic="delivery.fault_test", aggregate=aggregate, channel=channel,
                                payload={"seq": seq[aggregate], "round": i})
                total += 1
            if worker is None:
                worker = start_worker(i, log)
            before = site.deliveries
            for _ in range(3):
                deliver_outbox.apply_async()
            # Let it deliver a random share of the backlog (at least one event), then kill it mid-stream; stop
            # waiting if nothing is left to deliver.
            target, deadline, checked = before + rng.randint(1, batch), time.monotonic() + 60, time.monotonic()
            while site.deliveries < target and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.005)
                if site.deliveries > before and time.monotonic() - checked > 0.1:
                    checked = time.monotonic()
                    if not OutboxEvent.objects.filter(status="pending").exists():
                        break
            if worker.poll() is not None:  # it died by itself: a set-up error, not a kill
                print(f"the worker exited with {worker.returncode} before it was killed; see {log.name}", file=sys.stderr)
                return 1
            time.sleep(rng.uniform(0, 0.25))
            pending = OutboxEvent.objects.filter(status="pending").count()
            kills_mid_delivery += pending > 0 and site.deliveries > before  # it was delivering, and not done
            if (i + 1) % args.whole_every == 0:
                kill(worker)
                worker, what = None, "worker"
                whole_kills += 1
            else:
                pool = children(worker.pid)
                for pid in pool:
                    os.kill(pid, signal.SIGKILL)
                what = f"pool process {pool}"
            print(f"round {i + 1:3}/{iterations}: killed the {what} with {pending:3} pending; "
                  f"deliveries so far {site.deliveries}; {time.monotonic() - started:.1f} s", flush=True)
        # Drain with a worker left alone; the beat's job is done by queuing a delivery every second.
        if worker is None:
            worker = start_worker(iterations, log)
        deadline = time.monotonic() + 180
        while OutboxEvent.objects.exclude(status="delivered").exists() and time.monotonic() < deadline:
            deliver_outbox.apply_async()
            time.sleep(1)
        drained = time.monotonic() - started
        kill(worker, signal.SIGTERM)
        time.sleep(0.2)
    broker.flushdb()
    ids = {str(e) for e in OutboxEvent.objects.filter(channel=channel).values_list("event_id", flat=True)}
    received = {e["id"] for e in site.received}
    twice = [i for i, n in site.applied.items() if n > 1]
    redelivered = sum(1 for n in site.raw.values() if n > 1)
    by_aggregate = defaultdict(list)
    for e in site.received:
        by_aggregate[e["aggregate"]].append(e["data"]["seq"])
    # Applied in order, none missing: each aggregate's sequence numbers arrive exactly as 1, 2, 3, ...
    out_of_order = [a for a, s in by_aggregate.items() if s != list(range(1, seq[a] + 1))]
    undelivered = OutboxEvent.objects.exclude(status="delivered").count()
    print(
        f"\nevents {total}, kills {iterations} ({whole_kills} whole worker, {iterations - whole_kills} pool process; "
        f"{kills_mid_delivery} with events still pending), raw deliveries {site.deliveries}, applied {len(received)}, "
        f"duplicates absorbed {site.deliveries - len(received)} ({redelivered} events delivered more than once), "
        f"applied twice {len(twice)}, out of order or missing {len(out_of_order)}, bad signatures "
        f"{site.bad_signatures}, undelivered rows {undelivered}, drained at {drained:.1f} s, "
        f"{time.monotonic() - started:.1f} s"
    )
    ok = (received == ids and len(ids) == total and not twice and not out_of_order and undelivered == 0
          and site.deliveries >= total and site.bad_signatures == 0)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
