"""Fault test: a Celery worker SIGKILLed while it delivers outbox events, again and again, on the real Redis broker.

Every event must reach the website stand-in (which verifies signatures, deduplicates by id and counts), none may be
applied twice, each aggregate's events must be applied in order, and the raw deliveries must be ≥ the events.

    .venv/bin/python bench/couriers/fault_kill_worker.py                  # 100 kills (the bench)
    O2O_FAULT_ITERATIONS=8 .venv/bin/python bench/couriers/fault_kill_worker.py    # CI mode (~80 s; 10 ≈ 100 s)

Each worker start costs ~6 s (Django setup imports the admin, hence the router and OR-Tools), so a round is ~8 s.

Own database `o2o_fault` (created and migrated here, never the test database), own Redis DB 13 (flushed at start and
end), own loopback receiver. Each round: commit a batch of events (no worker running: "a crash between the business
commit and the delivery"), start `celery -A o2o worker --pool=solo`, queue deliveries (as the beat would), wait for
the first new delivery, sleep a random 0-250 ms, SIGKILL the worker's process group. Then one last worker drains.
"""

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
    DJANGO_SETTINGS_MODULE="o2o.settings", DATABASE_URL=f"{PG}/{DB_NAME}", CELERY_BROKER_URL=BROKER,
    O2O_OUTBOX_KICK="0", O2O_LOG_LEVEL="WARNING", O2O_OUTBOX_BASE_DELAY_SECONDS="1",
)

ITERATIONS = int(os.environ.get("O2O_FAULT_ITERATIONS", "100"))
BATCH = int(os.environ.get("O2O_FAULT_BATCH", "30"))  # events committed before each round
AGGREGATES = 7
SECRET = "fault-site-secret"


def ensure_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def start_worker(n: int, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "o2o", "worker", "--pool=solo", "--concurrency=1",
           "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"fault{n}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)  # this worker's own session only
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def main() -> int:
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

    call_command("migrate", interactive=False, verbosity=0)
    broker = redis.Redis.from_url(BROKER)
    broker.flushdb()
    OutboxEvent.objects.all().delete()
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("O2O_FAULT_SEED", "20260107")))
    seq: dict[str, int] = defaultdict(int)
    kills_mid_delivery = 0
    log = open(os.environ.get("O2O_FAULT_LOG", "/tmp/o2o_fault_kill_worker.log"), "w")  # the workers' output
    with Receiver(SECRET, delay_s=0.01) as site:
        channel, _ = SalesChannel.objects.update_or_create(
            code="fault-site", defaults={"name": "Fault-test site", "webhook_url": site.url, "webhook_secret": SECRET}
        )
        total = 0
        for i in range(ITERATIONS):
            for _ in range(BATCH):
                aggregate = f"order:F-{rng.randrange(AGGREGATES)}"
                seq[aggregate] += 1
                with transaction.atomic():  # the business commit: the event row is there, nothing sent yet
                    outbox.emit(topic="delivery.fault_test", aggregate=aggregate, channel=channel,
                                payload={"seq": seq[aggregate], "round": i})
                total += 1
            worker = start_worker(i, log)
            before = site.deliveries
            for _ in range(3):
                deliver_outbox.apply_async()
            deadline = time.monotonic() + 30
            while site.deliveries == before and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.25))
            pending = OutboxEvent.objects.filter(status="pending").count()
            kills_mid_delivery += pending > 0 and site.deliveries > before  # it was delivering, and not done
            kill(worker)
            print(f"round {i + 1:3}/{ITERATIONS}: killed with {pending:3} pending; deliveries so far {site.deliveries}",
                  flush=True)
        # Drain with a worker left alone; the beat's job is done by queuing a delivery every second.
        worker = start_worker(ITERATIONS, log)
        deadline = time.monotonic() + 120
        while OutboxEvent.objects.exclude(status="delivered").exists() and time.monotonic() < deadline:
            deliver_outbox.apply_async()
            time.sleep(1)
        kill(worker, signal.SIGTERM)
        time.sleep(0.2)
    broker.flushdb()
    ids = {str(e) for e in OutboxEvent.objects.filter(channel=channel).values_list("event_id", flat=True)}
    received = {e["id"] for e in site.received}
    twice = [i for i, n in site.applied.items() if n > 1]
    by_aggregate = defaultdict(list)
    for e in site.received:
        by_aggregate[e["aggregate"]].append(e["data"]["seq"])
    out_of_order = [a for a, s in by_aggregate.items() if s != sorted(s)]
    undelivered = OutboxEvent.objects.exclude(status="delivered").count()
    print(
        f"\nevents {total}, kills {ITERATIONS} ({kills_mid_delivery} while delivering, events still pending), "
        f"raw deliveries {site.deliveries}, applied {len(received)}, duplicates absorbed {site.deliveries - len(received)}, "
        f"applied twice {len(twice)}, out of order {len(out_of_order)}, bad signatures {site.bad_signatures}, "
        f"undelivered rows {undelivered}, {time.monotonic() - started:.1f} s"
    )
    ok = (received == ids and len(ids) == total and not twice and not out_of_order and undelivered == 0
          and site.deliveries >= total and site.bad_signatures == 0)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
