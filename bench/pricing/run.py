"""Pricing benchmarks on PostgreSQL, with the issue's policy (200 active promotions, 5,000 price-list rows; see
bench/pricing/policy.py) on the orders bench's 1,000-store chain (database `o2o_bench_orders` by default; made if
missing).

1. Quote: POST /api/v1/pricing/quote/ with a 10-line cart at a random store, as deployed (wrk -> nginx -> gunicorn):
   one connection (the latency a checkout sees alone) then --connections at once (throughput, server CPU per quote).
2. Snapshot for an offline till: the policy's build time from the tables (a cold process), each store's snapshot's
   build time and size (JSON and gzip), and GET /api/v1/pos/pricing/snapshot/ over HTTP with one connection.
3. Placement with pricing off and on is the orders bench under each policy, run side by side (see RESULTS):
       .venv/bin/python bench/orders/run.py --routing 0 --http 20 --rate 0 --policy none --no-write
       .venv/bin/python bench/orders/run.py --routing 0 --http 20 --rate 0 --policy bench --no-write

    .venv/bin/python bench/pricing/run.py [--seconds 15 --connections 8] [--no-write]

Writes bench/pricing/RESULTS-pricing.md (figures, date, machine) unless --no-write.
"""

import argparse
import gzip
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402 - after the path insert
    machine,
    prepare_database,
    server_cpu_seconds,
    setup_django,
    start_buffering_proxy,
    start_gunicorn,
)

# Counts 200s and the rest per wrk thread; one RESULT line of JSON at the end (read by _wrk).
LUA_RESULT = """
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, x = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); x = x + t:get("other") end
  io.write(string.format('RESULT {"ok":%%d,"other":%%d,"requests":%%d,"errors":%%d,"p50_ms":%%.2f,"p99_ms":%%.2f,' ..
    '"max_ms":%%.2f,"duration_s":%%.3f}\\n', o, x, summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, summary.duration / 1e6))
end
"""

QUOTE_LUA = """
local skus = {%(skus)s}
local stores = {%(stores)s}
counter, ok, other = 0, 0, 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) math.randomseed(os.time() * 1000 + #threads) end
function request()
  counter = counter + 1
  local lines = {}
  local used = {}
  local i = 0
  while i < 10 do
    local s = skus[math.random(#skus)]
    if not used[s] then
      used[s] = true
      i = i + 1
      lines[i] = string.format('{"sku":"%%s","qty":%%d}', s, math.random(1, 3))
    end
  end
  local body = string.format('{"lines":[%%s],"store":"%%s"}', table.concat(lines, ","), stores[math.random(#stores)])
  return wrk.format("POST", "/api/v1/pricing/quote/", {
    ["Content-Type"] = "application/json", ["Authorization"] = "Api-Key %(key)s"}, body)
end
""" + LUA_RESULT

GET_LUA = """
counter, ok, other = 0, 0, 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function request()
  return wrk.format("GET", "/api/v1/pos/pricing/snapshot/", {["Authorization"] = "Api-Key %(key)s",
    ["Accept-Encoding"] = "gzip"})
end
""" + LUA_RESULT


def _wrk(lua: str, *, url: str, connections: int, seconds: int, cpu) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    cpu0 = cpu()
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", f.name, url], capture_output=True, text=True, check=False)
    used = cpu() - cpu0
    os.unlink(f.name)
    match = re.search(r"RESULT (\{.*\})", out.stdout)
    if not match:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["requests_per_s"] = round(result["requests"] / result["duration_s"], 1)
    result["server_cpu_ms_per_request"] = round(used * 1000 / max(result["requests"], 1), 2)
    result["connections"] = connections
    return result


def snapshot_figures(stores: list[str]) -> dict:
    from django.utils import timezone

    from orders.pricing import selectors

    selectors.forget_cached_policy()
    t0 = time.perf_counter()
    policy = selectors.active_policy()
    load_ms = (time.perf_counter() - t0) * 1000
    builds, sizes, gz = [], [], []
    now = timezone.now()
    for code in stores:
        t0 = time.perf_counter()
        body = json.dumps(selectors.store_snapshot(policy, store_code=code, channel="store", at=now),
                          separators=(",", ":")).encode()
        builds.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(body))
        gz.append(len(gzip.compress(body)))
    return {
        "policy_load_ms": round(load_ms, 1),
        "promotions": len(policy.promotions), "price_lists": len(policy.price_lists),
        "price_list_rows": sum(len(pl.prices) for pl in policy.price_lists),
        "snapshot_build_ms_p50": round(statistics.median(builds), 2), "snapshot_build_ms_max": round(max(builds), 2),
        "snapshot_bytes_median": int(statistics.median(sizes)), "snapshot_gzip_bytes_median": int(statistics.median(gz)),
        "stores_sampled": len(stores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench_orders")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk nginx-light)")
    prepare_database(args.db, reset=False)
    setup_django(args.db)
    from django.db import connection

    from bench.orders.run import _generate_chain
    from bench.pricing.policy import load_bench_policy
    from inventory.models import Product, Store
    from o2o.models import SalesChannel, SalesChannelKey
    from orders.pos.models import StoreApiKey

    _generate_chain(seed=args.seed, skus=500)
    counts = load_bench_policy(seed=args.seed)
    print(counts, flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    rng = random.Random(args.seed)
    stores = list(Store.objects.order_by("code").values_list("code", flat=True))
    snap = snapshot_figures(rng.sample(stores, 20))
    print(json.dumps(snap, indent=2), flush=True)
    channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
    _, web_key = SalesChannelKey.objects.create_key(name=f"bench-pricing-{time.time():.0f}", channel=channel)
    till_store = Store.objects.get(code=rng.choice(stores))
    _, till_key = StoreApiKey.objects.create_key(name=f"bench-pricing-{time.time():.0f}", store=till_store)
    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:500])
    quote_lua = QUOTE_LUA % {"skus": ",".join(f'"{s}"' for s in skus),
                             "stores": ",".join(f'"{s}"' for s in rng.sample(stores, 200)), "key": web_key}
    connection.close()
    port = 8775
    server = start_gunicorn(args.db, workers=args.workers, port=port)
    front, front_dir = start_buffering_proxy(port=port - 1, upstream=port)
    url = f"http://127.0.0.1:{port - 1}"

    def cpu() -> float:
        return server_cpu_seconds(server.pid, args.db, also_pgids=(front.pid,))

    try:
        _wrk(quote_lua, url=url, connections=args.connections, seconds=3, cpu=cpu)  # warm-up: every worker
        quote_one = _wrk(quote_lua, url=url, connections=1, seconds=args.seconds, cpu=cpu)
        quote_many = _wrk(quote_lua, url=url, connections=args.connections, seconds=args.seconds, cpu=cpu)
        snap_http = _wrk(GET_LUA % {"key": till_key}, url=url, connections=1, seconds=max(5, args.seconds // 3),
                         cpu=cpu)
    finally:
        os.killpg(front.pid, signal.SIGQUIT)
        front.wait(timeout=30)
        shutil.rmtree(front_dir, ignore_errors=True)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    result = {"policy": counts, "snapshot": snap, "quote_1_connection": quote_one,
              f"quote_{args.connections}_connections": quote_many, "snapshot_http_1_connection": snap_http}
    print(json.dumps(result, indent=2), flush=True)
    if not args.no_write:
        lines = [
            "# Pricing bench", "",
            f"Date: {datetime.now().astimezone().isoformat(timespec='seconds')}. Machine: {machine()}.",
            f"Command: `python bench/pricing/run.py {' '.join(sys.argv[1:])}` (wrk -> nginx -> gunicorn "
            f"{args.workers} workers; database {args.db}).", "",
            "```json", json.dumps(result, indent=2), "```", "",
        ]
        Path(__file__).with_name("RESULTS-pricing.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
