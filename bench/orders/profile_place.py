"""Profile order placement in one process on the bench database (no HTTP server): SQL statements, wall time and CPU
per POST /api/v1/orders/ through Django's test client, optionally under pyinstrument.

    .venv/bin/python bench/orders/profile_place.py -n 50            # timings
    .venv/bin/python bench/orders/profile_place.py -n 50 --sql      # and the statements of the last request
    .venv/bin/python bench/orders/profile_place.py -n 50 --pyinstrument
"""

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench_orders")
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--cprofile", action="store_true", help="cProfile (stdlib), top functions by own time")
    parser.add_argument("--sql", action="store_true", help="print the statements of the last request")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")
    os.environ.setdefault("O2O_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from run import hcm_points

    from inventory.models import Product
    from o2o.models import SalesChannel, SalesChannelKey

    channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
    _, key = SalesChannelKey.objects.create_key(name=f"profile-{time.time():.0f}", channel=channel)
    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:200])
    points = hcm_points(400, args.seed)
    rng = random.Random(args.seed)
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    run = f"profile{int(time.time())}"

    def one(i: int):
        lat, lon = rng.choice(points)
        body = {
            "lines": [{"sku": rng.choice(skus), "qty": 1} for _ in range(rng.randint(1, 3))],
            "customer": {"name": "Bench", "phone": "0901234567"},
            "method": "delivery",
            "destination": {"lat": round(lat, 6), "lon": round(lon, 6)},
        }
        return client.post(
            "/api/v1/orders/", data=json.dumps(body), content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"{run}-{i}",
        )

    for i in range(10):  # warm-up
        one(-1 - i)
    profiler = None
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    elif args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    wall, cpu, codes = [], [], {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    pg0 = backend_cpu_seconds(backend)
    for i in range(args.n):
        w0, c0 = time.perf_counter(), time.process_time()
        # Capturing the statements costs CPU of its own: only with --sql, and then only for the last request.
        ctx = CaptureQueriesContext(connection) if args.sql and i == args.n - 1 else contextlib.nullcontext()
        with ctx:
            response = one(i)
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
    pg_cpu = backend_cpu_seconds(backend) - pg0
    if args.cprofile:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(80)
    elif profiler:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.sql:
        for q in ctx.captured_queries:
            print(f"{q['time']}  {q['sql'][:300]}")
    print(json.dumps({
        "requests": args.n, "codes": codes,
        "wall_p50_ms": round(statistics.median(wall), 2), "wall_mean_ms": round(statistics.mean(wall), 2),
        "python_cpu_mean_ms": round(statistics.mean(cpu), 2),
        "postgres_cpu_mean_ms": round(pg_cpu * 1000 / args.n, 2),
        **({"statements_last_request": len(ctx.captured_queries)} if args.sql else {}),
    }))


def backend_cpu_seconds(pid: int) -> float:
    """User + system CPU of one PostgreSQL backend so far (from /proc: the server runs on this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
