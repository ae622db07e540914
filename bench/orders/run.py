"""Order benchmarks on PostgreSQL (a separate database, default `o2o_bench_orders`).

1. Single-order routing as placement does it: load the problem from PostgreSQL (candidate stores, online ATP with
   live holds, opening hours, slot load) and route it: p50/p99 over random carts at random points, on a 1,000-store
   chain (600 stores in Ho Chi Minh City, 300 in Hà Nội, 100 in Đà Nẵng; 500 SKUs, ~20 % scarce).
2. Order placement over HTTP (reserve + route + write + outbox + idempotency record): wrk, 32 connections, to
   nginx in front of gunicorn as deployed (`--proxy none`: straight to gunicorn; needs `apt-get install wrk
   nginx-light`): first closed loop (each connection sends its next order as soon as it has an answer: the most
   orders per second), then open loop at --rate requests per second (orders sent on a schedule, as customers do:
   the latency at that load, with late sends counted); then the ledger audit (stock = sum of movements, reserved =
   sum of reservations) and a count of the orders written against the 201s wrk saw.

    .venv/bin/python bench/orders/run.py --routing 500 --http 30
    .venv/bin/python bench/orders/run.py --reset ...     # drop and regenerate the bench database

Writes bench/orders/RESULTS-orders.md (figures, date, machine) unless --no-write.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from datetime import time as dtime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import PG, machine, prepare_database, server_cpu_seconds, setup_django, start_buffering_proxy  # noqa: E402 - after the path insert

CITIES = [  # name, lat, lon, spread (deg), stores
    ("HCM", 10.7769, 106.7009, 0.09, 600),
    ("HN", 21.0285, 105.8542, 0.08, 300),
    ("DN", 16.0544, 108.2022, 0.05, 100),
]


POLICY = "keep"  # --policy: applied to every chain generate_chain makes or finds


def apply_policy(seed: int) -> None:
    if POLICY == "keep":
        return
    from bench.pricing.policy import clear_policy, load_bench_policy

    print(load_bench_policy(seed=seed) if POLICY == "bench" else clear_policy() or "pricing policy: none", flush=True)


def generate_chain(*, seed: int, skus: int) -> None:
    """The chain, unless the database already has one; then the --policy."""
    _generate_chain(seed=seed, skus=skus)
    apply_policy(seed)


def _generate_chain(*, seed: int, skus: int) -> None:
    from django.core.management import call_command

    from inventory import services
    from inventory.models import OpeningHours, Product, Store

    call_command("migrate", verbosity=0)
    if Store.objects.exists():
        return
    rng = random.Random(seed)
    stores = []
    for city, lat, lon, spread, count in CITIES:
        for i in range(count):
            stores.append(
                Store(
                    code=f"{city}-{i + 1:04d}", name=f"{city} store {i + 1}", city=city,
                    lat=lat + rng.gauss(0, spread / 2), lon=lon + rng.gauss(0, spread / 2),
                    delivery_radius_km=rng.choice([5, 6, 8, 8, 10]), picking_capacity_per_hour=rng.choice([20, 30, 40]),
                    offers_pickup=rng.random() > 0.1,
                )
            )
    Store.objects.bulk_create(stores, batch_size=1000)
    ids = list(Store.objects.values_list("pk", flat=True))
    OpeningHours.objects.bulk_create(
        [OpeningHours(store_id=s, weekday=d, opens=dtime(0, 0), closes=dtime(23, 59, 59)) for s in ids for d in range(7)],
        batch_size=5000,
    )
    Product.objects.bulk_create(
        [Product(sku=f"SKU-{i:05d}", name=f"Product {i}", price_vnd=rng.choice([99_000, 149_000, 199_000, 349_000]))
         for i in range(skus)],
        batch_size=1000,
    )
    for start in range(0, len(ids), 100):
        services.load_synthetic_stock_postgres(store_ids=ids[start : start + 100], seed=seed, actor="bench")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def hcm_points(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    _, lat, lon, spread, _ = CITIES[0]
    return [(lat + rng.gauss(0, spread / 2), lon + rng.gauss(0, spread / 2)) for _ in range(n)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_routing(n: int, seed: int) -> dict:
    """Placement's routing step (load from PostgreSQL + route), and the route() call alone."""
    from django.db import reset_queries
    from django.utils import timezone

    from inventory.models import Product
    from orders import promises

    try:
        from orders import routing_input as problems
    except ImportError:  # the code before the restructuring, run side by side with this script
        from orders import problem as problems

    rng = random.Random(seed)
    skus = dict(Product.objects.values_list("pk", "sku"))
    pids = list(skus)
    points = hcm_points(n, seed)
    total_ms, route_ms, served, shipments, candidates, statuses = [], [], 0, 0, [], {}
    for i in range(n + 20):
        lat, lon = points[i % n]
        lines = {pid: rng.choice([1, 1, 2]) for pid in rng.sample(pids, rng.choice([1, 2, 3]))}
        t0 = time.perf_counter()
        now = timezone.now()
        cands = problems.load_candidates(lat=lat, lon=lon, lines=lines, method="delivery", at=now)
        routed = promises.fastest_delivery(
            lines=lines, candidates=cands, skus=skus, lat=lat, lon=lon, allow_split=True, at=now, tiers=("express_2h",)
        )
        elapsed = (time.perf_counter() - t0) * 1000
        reset_queries()
        if i < 20:
            continue  # warm-up
        total_ms.append(elapsed)
        candidates.append(len(cands))
        if routed:
            served += 1
            shipments += len(routed[0].shipments)
            route_ms.append(routed[0].solve_ms)
            statuses[routed[0].plan.get("status")] = statuses.get(routed[0].plan.get("status"), 0) + 1
    return {
        "orders": n,
        "load_and_route_p50_ms": round(pct(total_ms, 50), 2),
        "load_and_route_p99_ms": round(pct(total_ms, 99), 2),
        "load_and_route_mean_ms": round(statistics.mean(total_ms), 2),
        "route_only_p50_ms": round(pct(route_ms, 50), 2) if route_ms else None,
        "route_only_p99_ms": round(pct(route_ms, 99), 2) if route_ms else None,
        "served": served,
        "shipments_per_served_order": round(shipments / served, 3) if served else None,
        "candidates_mean": round(statistics.mean(candidates), 1),
        "plan_statuses": statuses,
    }


HISTORY_ORDERS = 2000  # placed (and analysed) before timing, when the bench database has fewer

WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } o2o_timespec; int clock_gettime(int, o2o_timespec *); ]]
local ts = ffi.new("o2o_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local threads = {}
counter, created, conflict, other, late, max_late_ms = 0, 0, 0, 0, 0, 0
local skus = {%(skus)s}
local points = {%(points)s}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  run_id = "%(run)s-" .. (args[1] or "main")
  math.randomseed(os.time() * 100 + tid)
  -- Open loop (args[2] = this thread's orders per second): requests leave on a fixed schedule, whatever the
  -- answers' latency, as a shop's customers would send them; a request that leaves more than 10 ms after its slot
  -- (every connection busy) is counted as late, so a latency that hides queueing in the client is visible.
  rate = tonumber(args[2] or "0")
  if rate > 0 then
    interval = 1000 / rate
    next_at = now_ms() + math.random() * interval
  end
end
function delay()
  if rate == 0 then return 0 end
  local slot = next_at
  next_at = next_at + interval
  local wait = slot - now_ms()
  if wait < -10 then
    late = late + 1
    if -wait > max_late_ms then max_late_ms = -wait end
  end
  return math.max(0, wait)
end
function request()
  counter = counter + 1
  local n = math.random(1, 3)
  local lines = {}
  for i = 1, n do
    lines[i] = string.format('{"sku":"%%s","qty":1}', skus[math.random(#skus)])
  end
  local p = points[math.random(#points)]
  local body = string.format(
    '{"lines":[%%s],"customer":{"name":"Bench","phone":"0901234567"},"method":"delivery","destination":{"lat":%%.6f,"lon":%%.6f}}',
    table.concat(lines, ","), p[1], p[2])
  return wrk.format("POST", "/api/v1/orders/", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Api-Key %(key)s",
    ["Idempotency-Key"] = run_id .. "-" .. tid .. "-" .. counter,
  }, body)
end
function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 409 then conflict = conflict + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local c, k, o, l, ml = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created"); k = k + t:get("conflict"); o = o + t:get("other"); l = l + t:get("late")
    ml = math.max(ml, t:get("max_late_ms"))
  end
  io.write(string.format('RESULT {"created":%%d,"conflict":%%d,"other":%%d,"late_sends":%%d,"max_late_ms":%%.1f,' ..
    '"requests":%%d,"errors":%%d,"p50_ms":%%.2f,"p90_ms":%%.2f,"p99_ms":%%.2f,"max_ms":%%.2f,"duration_s":%%.3f}\\n',
    c, k, o, l, ml, summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.duration / 1e6))
end
"""


def _wrk_result(out, *, server_cpu: float) -> dict:
    match = re.search(r"RESULT (\{.*\})", out.stdout)
    if not match:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["orders_per_s"] = round(result["created"] / result["duration_s"], 1)
    result["requests_per_s"] = round(result["requests"] / result["duration_s"], 1)
    # Backends opened and closed during the run are missed (persistent connections: none are).
    result["server_cpu_ms_per_request"] = round(server_cpu * 1000 / max(result["requests"], 1), 2)
    return result


def bench_http(
    *, db_name: str, seconds: int, connections: int, workers: int, seed: int, rate: float = 0, proxy: str = "nginx"
) -> dict:
    from django.db import connection

    from inventory.models import Product
    from inventory.selectors import reservation_differences, stock_ledger_differences
    from o2o.models import SalesChannel, SalesChannelKey
    from orders.models import Order

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
    _, key = SalesChannelKey.objects.create_key(name=f"bench-{time.time():.0f}", channel=channel)
    rng = random.Random(seed)
    # Best-sellers: the first 200 SKUs, so that scarce ones run out and 409s happen too.
    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:200])
    points = hcm_points(400, seed + 1)
    rng.shuffle(points)
    run_id = f"bench{int(time.time())}"
    script = WRK_SCRIPT % {
        "skus": ",".join(f'"{s}"' for s in skus),
        "points": ",".join(f"{{{lat:.6f},{lon:.6f}}}" for lat, lon in points),
        "key": key,
        "run": run_id,
    }
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{db_name}",
        "O2O_LOG_LEVEL": "WARNING",
        "O2O_DB_CONN_MAX_AGE": "600",
    }
    port = 8765
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        lua = f.name

    def start_gunicorn() -> subprocess.Popen:
        import urllib.request

        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "o2o.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
             "--log-level", "warning", "--backlog", "256", "--preload"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=2)
                break
            except Exception:  # noqa: BLE001 - waiting for gunicorn
                time.sleep(0.2)
        return server

    def warm_up(phase: str, secs: int, *, to: int = port) -> None:
        subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{secs}s", "-s", lua, f"http://127.0.0.1:{to}", "--", phase],
                       capture_output=True, text=True, check=False)

    if Order.objects.count() < HISTORY_ORDERS:
        # A chain that has been trading: PostgreSQL caches plans per connection (the prepared statements' and its
        # own foreign-key checks'), and plans made while the order tables are empty scan them whole, which costs
        # more with every order until an ANALYZE replaces them. In production autovacuum analyses a new table
        # after its first ~50 rows; this machine runs PostgreSQL with autovacuum off, so the bench places a
        # history first, analyses, and times fresh server processes.
        gunicorn = start_gunicorn()
        try:
            for round_no in range(1000):  # each round its own Idempotency-Keys
                if Order.objects.count() >= HISTORY_ORDERS:
                    break
                warm_up(f"history{round_no}", 5)
        finally:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            gunicorn.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        connection.close()
    with connection.cursor() as cursor:
        # The set-up's writes (a new chain, the history) leave ~1 GB of WAL behind; without this the checkpoint it
        # triggers would spread its writes over the timed run, whose own WAL is what the figures should carry.
        cursor.execute("CHECKPOINT")
    orders_before = Order.objects.count()
    connection.close()
    gunicorn = start_gunicorn()
    front, front_dir = (None, None)
    target = port
    if proxy == "nginx":
        target = port - 1
        front, front_dir = start_buffering_proxy(port=target, upstream=port)
    try:
        # warm-up: every worker connects, imports OR-Tools and fills its caches
        warm_up("warmup", 5, to=target)
        # Closed loop (rate 0): each connection sends its next order as soon as it has an answer. Open loop: the
        # same connections at `rate` requests per second (two wrk threads, half each), the latency a customer sees
        # at that load rather than Little's law at saturation (32 clients always waiting make the mean latency
        # 32 / throughput, whatever the server does).
        phase = ["main"] if not rate else ["paced", str(rate / 2)]
        also = (front.pid,) if front else ()
        cpu0 = server_cpu_seconds(gunicorn.pid, db_name, also_pgids=also)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", lua,
             f"http://127.0.0.1:{target}", "--", *phase],
            capture_output=True, text=True, check=False,
        )
        result = _wrk_result(out, server_cpu=server_cpu_seconds(gunicorn.pid, db_name, also_pgids=also) - cpu0)
        if rate:
            result = {"offered_requests_per_s": rate, **result}
    finally:
        if front:
            os.killpg(front.pid, signal.SIGQUIT)  # nginx: graceful stop
            front.wait(timeout=30)
            shutil.rmtree(front_dir, ignore_errors=True)
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(timeout=30)
    result["connections"], result["workers"], result["proxy"] = connections, workers, proxy
    result["orders_per_s_if_2_cores_were_the_servers_own"] = round(2000 / max(result["server_cpu_ms_per_request"], 0.01), 1)
    orders_written = Order.objects.count() - orders_before
    ledger = stock_ledger_differences(limit=10)
    reservations = reservation_differences(limit=10)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM inventory_stock WHERE reserved + unavailable > on_hand OR on_hand < 0 OR reserved < 0"
        )
        oversold = cursor.fetchone()[0]
    result["audit"] = {
        "orders_written_incl_warmup": orders_written,
        "ledger_differences": len(ledger),
        "reservation_differences": len(reservations),
        "oversold_rows": oversold,
    }
    return result


def write_results(path: Path, *, routing: dict | None, http: dict | None, args) -> None:
    lines = [
        "# Orders benchmark",
        "",
        f"Date: {datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {machine()}  ",
        f"Chain: {sum(c[4] for c in CITIES)} stores (HCM 600, Hà Nội 300, Đà Nẵng 100), {args.skus} SKUs, "
        f"seed {args.seed}, database `{args.db}`.",
        "",
    ]
    if routing:
        lines += [
            "## Single-order routing, including loading the problem from PostgreSQL",
            "",
            f"`{args.command_line}`",
            "",
            "What placement does before it writes: candidate stores around the point (bounding box + great circle, "
            "own delivery radius), online ATP with live holds, opening hours, slot load; then `route()`. Carts of 1–3 "
            "random SKUs at random points in Ho Chi Minh City; 20 warm-up orders not counted.",
            "",
            "| metric | value |",
            "| --- | --- |",
        ]
        lines += [f"| {k} | {v} |" for k, v in routing.items()]
        lines.append("")
    if http:
        lines += [
            f"## Order placement over HTTP ({http['connections']} connections, "
            f"{'nginx, ' if http['proxy'] == 'nginx' else ''}gunicorn {http['workers']} sync workers, wrk)",
            "",
            f"`{args.command_line}`",
            "",
            "POST /api/v1/orders/ with a unique Idempotency-Key, 1–3 lines from the 200 first SKUs, a random point in "
            "Ho Chi Minh City: idempotency record, routing, reservation (row locks), order, lines, fulfillment(s), "
            "routing decision, two outbox events, one transaction. 409 = no store can serve the cart now.",
            "",
            "| metric | value |",
            "| --- | --- |",
        ]
        lines += [f"| {k} | {v} |" for k, v in http.items() if k not in ("audit", "open_loop")]
        lines += [f"| audit: {k} | {v} |" for k, v in http["audit"].items()]
        for rate, open_loop in http.get("open_loop", {}).items():
            lines += [f"| open loop {rate:g}/s: {k} | {v} |" for k, v in open_loop.items() if k != "audit"]
            lines += [f"| open loop {rate:g}/s audit: {k} | {v} |" for k, v in open_loop["audit"].items()]
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench_orders")
    parser.add_argument("--reset", action="store_true", help="drop and regenerate the bench database")
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--routing", type=int, default=500, help="orders for the routing bench (0: skip)")
    parser.add_argument("--http", type=int, default=30, help="seconds of HTTP load (0: skip)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--rate", default="150",
                        help="after the closed-loop run, an open-loop run at this many requests/s from the same "
                        "starting state; several as 60,100,150 (0: skip)")
    parser.add_argument("--proxy", choices=["nginx", "none"], default="nginx",
                        help="nginx in front of gunicorn, as deployed (default), or wrk straight to gunicorn")
    parser.add_argument("--policy", choices=["keep", "none", "bench"], default="keep",
                        help="pricing policy before the runs: keep what the database has, none (base prices only), "
                        "or the pricing bench's (200 promotions, 5,000 price-list rows: bench/pricing/policy.py)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.command_line = "python bench/orders/run.py " + " ".join(sys.argv[1:])
    global POLICY
    POLICY = args.policy
    prepare_database(args.db, reset=args.reset)
    setup_django(args.db)
    t0 = time.perf_counter()
    generate_chain(seed=args.seed, skus=args.skus)
    print(f"chain ready in {time.perf_counter() - t0:.1f} s", flush=True)
    # Fresh statistics for the tables earlier runs grew (orders, fulfillments, holds, outbox): where autovacuum is
    # off (this machine's PostgreSQL) the planner would otherwise plan for the sizes of the first run.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    routing = bench_routing(args.routing, args.seed) if args.routing else None
    if routing:
        print(json.dumps(routing, indent=2), flush=True)
    http = None
    if args.http:
        http = bench_http(db_name=args.db, seconds=args.http, connections=args.connections, workers=args.workers,
                          seed=args.seed, proxy=args.proxy)
        print(json.dumps(http, indent=2), flush=True)
    rates = [float(r) for r in str(args.rate).split(",") if float(r) > 0]
    if args.http and rates:
        http["open_loop"] = {}
        for rate in rates:
            # Each open-loop run starts from the same state as the closed-loop one (a new chain and the same
            # history): orders are never picked here, so every run leaves the stores' queues longer.
            connection.close()
            prepare_database(args.db, reset=True)
            generate_chain(seed=args.seed, skus=args.skus)
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
            http["open_loop"][rate] = bench_http(db_name=args.db, seconds=args.http, connections=args.connections,
                                                 workers=args.workers, seed=args.seed, rate=rate, proxy=args.proxy)
            print(json.dumps(http["open_loop"][rate], indent=2), flush=True)
    if not args.no_write:
        write_results(Path(__file__).with_name("RESULTS-orders.md"), routing=routing, http=http, args=args)


if __name__ == "__main__":
    main()
