"""Faults under load: the service keeps its promises while its parts fail, and recovers without a restart.

The realistic mix of bench/load runs (8 closed-loop clients by default) against gunicorn, whose database
connections go through a resetting TCP proxy (bench/faults/proxy.py), with a Celery worker delivering the outbox
to a website stand-in (bench/couriers/receiver.py) over the real Redis broker. One phase per fault, each injected
while the load runs:

1. every database connection reset (RST) at once;
2. PostgreSQL restarted (`pg_ctlcluster ... restart`: all connections gone, the server away for a moment);
3. Redis stopped, then started again (the broker away: orders must still be placed; deliveries catch up);
4. the Celery worker SIGKILLed mid-delivery, a new one started;
5. nothing: a quiet tail that must have no error at all (the service recovered without a restart).

After each phase, with the clients stopped: the outbox drained, then the checks: inventory and loyalty audits
clean, every order the clients were told was placed is in the database with its fulfillments and lines (none
lost or half-written), every event of the phase delivered and applied exactly once by the receiver.

PostgreSQL and Redis are the machine's own (127.0.0.1:5432, 127.0.0.1:6379): this restarts them, so run it alone.

    .venv/bin/python bench/faults/run.py [--clients 8] [--phase 8] [--no-write]

Writes bench/faults/RESULTS-faults.md unless --no-write.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import ROOT, load_average, machine, start_gunicorn  # noqa: E402
from bench.couriers.receiver import Receiver  # noqa: E402
from bench.faults.proxy import ResettingProxy  # noqa: E402
from bench.load.run import Client, prepare  # noqa: E402

HERE = Path(__file__).resolve().parent
PROXY_PORT = 15432
BROKER = "redis://127.0.0.1:6379/12"
SECRET = "faults-site-secret"
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def pg_restart() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"], check=True)


def redis_stop() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], check=False,
                   capture_output=True)


def redis_start() -> None:
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    subprocess.run(REDIS_START, check=True)
    for _ in range(50):
        if subprocess.run(["redis-cli", "ping"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)


def start_worker(env: dict, log) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv/bin/celery"), "-A", "o2o", "worker", "--pool=prefork", "--concurrency=1",
           "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n",
           f"faults-{uuid.uuid4().hex[:4]}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


class Load:
    """Clients of bench/load in a loop until stopped, every request timestamped."""

    def __init__(self, ctx: dict, *, port: int, clients: int, run: str) -> None:
        self.records: list = []
        self.numbers: list[str] = []
        self.lock = threading.Lock()
        self._latencies: list = []  # what bench/load's clients record; here every request is timestamped instead
        self.clients = [Client(i, ctx, port, float("inf"), run, self._latencies, self.lock, self.numbers)
                        for i in range(clients)]
        for c in self.clients:
            c.call = self._timed(c)

    def _timed(self, client: Client):
        inner = client.call

        def call(op: str) -> int:
            t0 = time.time()
            try:
                status = inner(op)
            except Exception:  # noqa: BLE001 - a dropped connection is an error the client saw
                status = 599
            with self.lock:
                self.records.append((t0, op, status))
            return status

        return call

    def start(self) -> None:
        for c in self.clients:
            c.until = float("inf")
            c.start()

    def stop(self) -> None:
        for c in self.clients:
            c.until = 0
        for c in self.clients:
            c.join(120)


def window(records: list, start: float, end: float) -> dict:
    inside = [r for r in records if start <= r[0] < end]
    errors = [r for r in inside if r[2] >= 500]
    return {"requests": len(inside), "errors": len(errors),
            "error_ops": sorted({r[1] for r in errors}),
            "recovered_after_s": round(max((r[0] for r in errors), default=start) - start, 2) if errors else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench_faults")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--phase", type=float, default=8.0, help="seconds between faults")
    parser.add_argument("--port", type=int, default=18920)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    os.environ["CELERY_BROKER_URL"] = BROKER
    ctx = prepare(args.db, reset=False)
    from django.db import connection

    from o2o.models import OutboxEvent, SalesChannel

    site = Receiver(SECRET)
    site.__enter__()
    SalesChannel.objects.filter(code="website").update(webhook_url=site.url, webhook_secret=SECRET)
    connection.close()

    proxy = ResettingProxy(listen_port=PROXY_PORT, target=("127.0.0.1", 5432)).start()
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PROXY_PORT}/{args.db}",
           "CELERY_BROKER_URL": BROKER, "O2O_OUTBOX_KICK": "1", "O2O_LOG_LEVEL": "WARNING"}
    server = start_gunicorn(args.db, workers=4, port=args.port,
                            extra_env={"DATABASE_URL": env["DATABASE_URL"], "CELERY_BROKER_URL": BROKER})
    log = open(HERE / "worker.log", "w")  # noqa: SIM115 - lives as long as the run
    run = uuid.uuid4().hex[:8]
    workers = {"current": start_worker(env, log)}

    from django.db.models import Count

    from bench.load.run import audits
    from o2o.tasks import deliver_outbox
    from orders.models import Order

    def drain(since: int) -> int:
        """Let the worker deliver what the phase left behind (the beat would queue it; here one kick a second)."""
        deadline = time.time() + 90
        pending = -1
        while time.time() < deadline:
            pending = OutboxEvent.objects.filter(pk__gt=since, status=OutboxEvent.Status.PENDING).count()
            if pending == 0:
                break
            try:
                deliver_outbox.apply_async(retry=False)
            except Exception:  # noqa: BLE001 - the broker may still be coming back: try again
                pass
            time.sleep(1)
        return pending

    def kill_worker() -> None:
        os.killpg(workers["current"].pid, signal.SIGKILL)
        workers["current"].wait()
        workers["current"] = start_worker(env, log)

    def stop_redis_for_a_while() -> None:
        redis_stop()
        time.sleep(args.phase / 2)
        redis_start()

    faults = [
        ("all database connections reset (RST)", proxy.reset_all),
        ("PostgreSQL restarted", pg_restart),
        (f"Redis stopped for {args.phase / 2:g} s, started again", stop_redis_for_a_while),
        ("Celery worker SIGKILLed, a new one started", kill_worker),
        ("none (quiet tail: must have no error at all)", lambda: None),
    ]
    phases = []
    try:
        for n, (name, inject) in enumerate(faults):
            since = OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            connection.close()
            load = Load(ctx, port=args.port, clients=args.clients, run=f"faults-{run}-{n}")
            load.start()
            time.sleep(args.phase / 2)
            t = time.time()
            inject()
            time.sleep(args.phase)
            end = time.time()
            load.stop()
            pending = drain(since)
            placed = Order.objects.filter(number__in=load.numbers)
            events = OutboxEvent.objects.filter(pk__gt=since)
            ids = [str(e) for e in events.values_list("event_id", flat=True)]
            phases.append({
                "fault": name,
                "before": window(load.records, 0, t),
                "after": window(load.records, t, end),
                "orders_told_placed": len(load.numbers), "orders_in_db": placed.count(),
                "half_written": placed.filter(fulfillments__isnull=True).count()
                + placed.filter(lines__isnull=True).count(),
                "events": len(ids), "event_states": dict(events.values_list("status").annotate(c=Count("pk")).order_by()),
                "undelivered": pending, "received": sum(1 for i in ids if i in site.applied),
                "applied_twice": sum(1 for i in ids if site.applied.get(i, 0) > 1),
                **audits(),
            })
            connection.close()
            print(json.dumps(phases[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(30)
        os.killpg(workers["current"].pid, signal.SIGTERM)
        workers["current"].wait(30)
        proxy.stop()
        site.__exit__(None, None, None)

    results = {"phases": phases, "load": load_average()}
    if not args.no_write:
        write(HERE / "RESULTS-faults.md", results, args)


def write(path: Path, r: dict, args) -> None:
    lines = [
        "# Faults under load", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; load average after: {r['load']}.", "",
        f"Command: `.venv/bin/python bench/faults/run.py --clients {args.clients} --phase {args.phase:g}`", "",
        f"Each phase: {args.clients} clients of the bench/load mix for {args.phase / 2:g} s, the fault, {args.phase:g} s "
        "more, the clients stopped; then the outbox drained and everything checked before the next phase.", "",
        "| fault | errors before it | requests after it | errors after it (5xx or dropped) | last error (s after the fault) "
        "| orders told placed / in the database / half-written | events written / delivered once / applied twice / "
        "undelivered | inventory audit | loyalty audit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in r["phases"]:
        lines.append(
            f"| {p['fault']} | {p['before']['errors']} | {p['after']['requests']} | {p['after']['errors']} "
            f"({', '.join(p['after']['error_ops']) or '-'}) | {p['after']['recovered_after_s']} | "
            f"{p['orders_told_placed']} / {p['orders_in_db']} / {p['half_written']} | "
            f"{p['events']} / {p['received']} / {p['applied_twice']} / {p['undelivered']} | "
            f"{p['inventory_audit']} | {p['loyalty_audit']} |"
        )
    lines.append("")
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
