"""Where a request's time goes, in-process (no HTTP server): the availability endpoint and the floor view, on the
benchmark database, with the same seeded bodies as run.py.

    .venv/bin/python bench/availability/profile_requests.py [--requests 500] [--db o2o_bench] [--cprofile 25]

Prints per endpoint: mean wall time and CPU time per request through the whole Django stack (test client: middleware, URL routing,
view, rendering), the SQL statements per request with their share of the time, and the top functions by cumulative
time (cProfile) for the endpoint.
"""

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cprofile", type=int, default=30, help="functions to list (0: skip cProfile)")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.db}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.availability.settings"
    os.environ.setdefault("O2O_LOG_LEVEL", "WARNING")
    os.environ["O2O_DB_CONN_MAX_AGE"] = "600"
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import resolve

    from bench.availability.run import bodies

    resolve("/bench/floor/")  # imports the bench urls
    from o2o.models import SalesChannel, SalesChannelKey

    channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
    _, key = SalesChannelKey.objects.create_key(name="bench-profile", channel=channel)
    ns = argparse.Namespace(db=args.db, seed=args.seed, bodies=args.requests, radius=10.0)
    sample = bodies(ns)
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    endpoints = {"ours": "/api/v1/availability/", "floor": "/bench/floor/"}
    for name, url in endpoints.items():
        for body in sample[:50]:  # warm-up
            assert client.post(url, body, content_type="application/json").status_code == 200
        times, cpu = [], []
        for body in sample:
            t0, c0 = time.perf_counter(), time.process_time()
            client.post(url, body, content_type="application/json")
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        with CaptureQueriesContext(connection) as queries:
            for body in sample[:100]:
                client.post(url, body, content_type="application/json")
        sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000 / 100
        print(f"\n## {name}: {url}")
        print(f"mean {statistics.mean(times):.2f} ms, median {statistics.median(times):.2f} ms per request "
              f"(in-process, one at a time), CPU of this process {statistics.mean(cpu):.2f} ms per request (less "
              f"sensitive to other jobs than wall time); {len(queries.captured_queries) / 100:.1f} SQL statements per request, "
              f"{sql_ms:.2f} ms of them in the database driver (round trip included)")
        per_statement: dict[str, list[float]] = {}
        for q in queries.captured_queries:
            head = " ".join(q["sql"].split())[:110]
            per_statement.setdefault(head, []).append(float(q["time"]) * 1000)
        for head, ts in sorted(per_statement.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {len(ts) / 100:4.1f}/req  {statistics.mean(ts):6.3f} ms  {head}")
        if args.cprofile and name == "ours":
            profiler = cProfile.Profile()
            profiler.enable()
            for body in sample[:200]:
                client.post(url, body, content_type="application/json")
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(args.cprofile)
            print(out.getvalue())
    SalesChannelKey.objects.filter(name="bench-profile").delete()


if __name__ == "__main__":
    main()
