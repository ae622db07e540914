"""Availability benchmark: POST /api/v1/availability/ against the framework floor, on the same chain, in one run.

    .venv/bin/python bench/availability/run.py                          # 1,000 stores x 10,000 SKUs, 32 clients, 30 s
    .venv/bin/python bench/availability/run.py --stores 100 --skus 2000 --duration 10    # a quick run

1. Creates (or reuses) the PostgreSQL database `o2o_bench`, migrates it, and generates the chain with
   `manage.py generate_chain` unless a generated chain of that size is already there (timed when generated).
2. Creates a sales-channel API key for the website channel.
3. Starts gunicorn (sync workers, default 2 x cores) on 127.0.0.1 with bench/availability/settings.py, which routes
   /bench/floor/: a bare Django view that runs just the equivalent SQL (floor.py), and /bench/floor-prepared/: the
   same view with its statements prepared once per connection, as the endpoint's are (o2o/prepared.py).
4. Checks that both endpoints give the same stores and units for a few carts.
5. Runs wrk on loopback against both endpoints, interleaved (ours, floor, ours, floor, ... for --rounds rounds),
   with the same parameters: --connections clients, --duration seconds each, a request body per request drawn from
   a seeded list of random points in Ho Chi Minh City (within 10 km of the centre) and random 5-SKU carts.
   Then lower-concurrency passes (--low-connections, default 1,2,4,8) for the latency without queueing: at which
   concurrency ours still answers with p95 < 25 ms, and the ratio to the floor at each.
6. Prints a markdown table and writes bench/availability/RESULTS-availability.md (unless --no-write).
"""

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import server_cpu_seconds  # noqa: E402 - after the path insert

PG = "postgres://postgres@127.0.0.1:5432"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
HCM = (10.7769, 106.7009)

WRK_SCRIPT = r"""
local bodies = {%(bodies)s}
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  counter = tid * 7919
end
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Api-Key %(key)s"},
                    bodies[(counter %% #bodies) + 1])
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {"requests":%%d,"duration_s":%%.3f,"non_2xx":%%d,"socket_errors":%%d,' ..
    '"p50_ms":%%.2f,"p95_ms":%%.2f,"p99_ms":%%.2f,"max_ms":%%.2f,"mean_ms":%%.2f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
"""


def sh(cmd: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, check=True, **kwargs)


def prepare_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def ensure_chain(args, env: dict) -> float | None:
    """Migrate and generate the chain unless one of this size is there. Returns the generation time, if any."""
    import psycopg

    sh([PYTHON, "manage.py", "migrate", "-v0"], env)
    with psycopg.connect(f"{PG}/{args.db}") as conn:
        stores = conn.execute("SELECT count(*) FROM inventory_store WHERE code LIKE 'GEN-%%'").fetchone()[0]
        skus = conn.execute("SELECT count(*) FROM inventory_product WHERE sku LIKE 'GEN-%%'").fetchone()[0]
        stock = conn.execute(
            "SELECT count(*) FROM inventory_stock s JOIN inventory_store st ON st.id = s.store_id "
            "WHERE st.code LIKE 'GEN-%%'"
        ).fetchone()[0] if stores else 0
    if (stores, skus, stock) == (args.stores, args.skus, args.stores * args.skus):
        print(f"reusing the generated chain in {args.db}: {stores} stores x {skus} SKUs", flush=True)
        return None
    print(f"generating {args.stores} x {args.skus} in {args.db} ...", flush=True)
    t0 = time.perf_counter()
    sh([PYTHON, "manage.py", "generate_chain", "--stores", str(args.stores), "--skus", str(args.skus),
        "--seed", str(args.seed), "--replace"], env)
    return time.perf_counter() - t0


def api_key(env: dict) -> str:
    code = (
        "from o2o.models import SalesChannel, SalesChannelKey\n"
        "channel, _ = SalesChannel.objects.get_or_create(code='website', defaults={'name': 'Website'})\n"
        "_, key = SalesChannelKey.objects.create_key(name='bench-availability', channel=channel)\n"
        "print('KEY', key)\n"
    )
    out = sh([PYTHON, "manage.py", "shell", "-c", code], env, capture_output=True, text=True).stdout
    return re.search(r"KEY (\S+)", out).group(1)


def bodies(args) -> list[str]:
    """Seeded request bodies: a point within 10 km of the centre of Ho Chi Minh City and a 5-SKU cart."""
    import psycopg

    with psycopg.connect(f"{PG}/{args.db}") as conn:
        skus = [r[0] for r in conn.execute("SELECT sku FROM inventory_product WHERE sku LIKE 'GEN-%%' ORDER BY sku")]
    rng = random.Random(args.seed)
    out = []
    for _ in range(args.bodies):
        r, theta = 10 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        lat = HCM[0] + r * math.cos(theta) / 111.32
        lon = HCM[1] + r * math.sin(theta) / (111.32 * math.cos(math.radians(HCM[0])))
        lines = [{"sku": sku, "qty": rng.choice([1, 1, 1, 2, 3])} for sku in rng.sample(skus, 5)]
        out.append(json.dumps({"lat": round(lat, 6), "lon": round(lon, 6), "lines": lines,
                               "radius_km": args.radius, "limit": 20}))
    return out


def post(url: str, body: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Api-Key {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def check_equivalent(base: str, key: str, sample: list[str]) -> int:
    """Both endpoints name the same stores, in the same order, with the same units. Returns stores compared."""
    compared = 0
    for body in sample:
        _, ours = post(f"{base}/api/v1/availability/", body, key)
        _, floor = post(f"{base}/bench/floor/", body, key)
        a = [(s["store"]["code"], s["available"]) for s in ours["stores"]]
        b = [(s["store"]["code"], s["available"]) for s in floor["stores"]]
        if a != b:
            raise SystemExit(f"the floor view disagrees with the endpoint for {body}:\n{a}\n{b}")
        compared += len(a)
    return compared


def wrk(url: str, lua: str, *, connections: int, seconds: int, threads: int, pin: str | None) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", lua, url]
    if pin:
        cmd = ["taskset", "-c", pin, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    match = re.search(r"RESULT (\{.*\})", out.stdout)
    if not match:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["rps"] = round(result["requests"] / result["duration_s"], 1)
    return result


VARIANTS = {"current": "current code", "unprepared": "current code, O2O_PREPARED_STATEMENTS=0"}
VARIANT_ENV = {"unprepared": {"O2O_PREPARED_STATEMENTS": "0"}}


def run_variant(variant: str, args, env: dict, key: str, sample: list[str]) -> list[tuple[str, str, dict]]:
    """Start gunicorn for this variant, check the two endpoints agree, then load both, interleaved."""
    serve_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "bench.availability.settings",
                 "O2O_DB_CONN_MAX_AGE": "600", "PYTHONPATH": str(ROOT), **VARIANT_ENV.get(variant, {})}
    gunicorn = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "o2o.wsgi", "-w", str(args.workers), "-k", "sync",
         "-b", f"127.0.0.1:{args.port}", "--log-level", "warning", "--backlog", "512", "--preload"],
        cwd=ROOT, env=serve_env, start_new_session=True,
    )
    base = f"http://127.0.0.1:{args.port}"
    results = []
    try:
        for _ in range(150):
            try:
                post(f"{base}/bench/floor/", sample[0], key)
                break
            except Exception:  # noqa: BLE001 - gunicorn is still starting
                time.sleep(0.2)
        compared = check_equivalent(base, key, sample[:20])
        print(f"[{variant}] floor and endpoint agree on {compared} store answers over 20 carts", flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_SCRIPT % {"bodies": ",".join("[[" + b + "]]" for b in sample), "key": key})
            lua = f.name
        endpoints = [("ours: POST /api/v1/availability/", f"{base}/api/v1/availability/"),
                     ("floor: bare Django view, same SQL", f"{base}/bench/floor/"),
                     ("prepared floor: the same view, statements prepared", f"{base}/bench/floor-prepared/")]
        for _, url in endpoints:  # warm-up: every worker connects and fills its caches
            wrk(url, lua, connections=args.connections, seconds=args.warmup, threads=args.wrk_threads, pin=args.pin_wrk)
        passes = [(args.connections, args.duration)] + [(n, args.low_duration) for n in args.low_levels]
        for clients, seconds in passes:
            for round_no in range(args.rounds):
                for name, url in endpoints:
                    cpu0 = server_cpu_seconds(gunicorn.pid, args.db)
                    r = wrk(url, lua, connections=clients, seconds=seconds,
                            threads=min(args.wrk_threads, clients), pin=args.pin_wrk)
                    # Backends that closed during the run are missed (persistent connections: none do).
                    r["server_cpu_ms_per_req"] = round(
                        (server_cpu_seconds(gunicorn.pid, args.db) - cpu0) * 1000 / max(r["requests"], 1), 2)
                    r["connections"] = clients
                    label = name if args.rounds == 1 else f"{name} (round {round_no + 1})"
                    results.append((variant, label, r))
                    print(f"[{variant}] {label}", json.dumps(r), flush=True)
        os.unlink(lua)
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(timeout=30)
    return results


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} cores ({cpu}), {kb / 1024 / 1024:.0f} GiB RAM, {platform.system()} {platform.release()}"


def table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| endpoint | clients | req/s | p50 ms | p95 ms | p99 ms | max ms | server CPU ms/req | non-2xx | socket errors | requests |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['connections']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                     f"{r['max_ms']} | {r.get('server_cpu_ms_per_req', '')} | {r['non_2xx']} | {r['socket_errors']} | {r['requests']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench")
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--skus", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--low-connections", default="1,2,4,8",
                        help="lower-concurrency passes, comma-separated (empty: skip)")
    parser.add_argument("--duration", type=int, default=30, help="seconds per endpoint per round")
    parser.add_argument("--low-duration", type=int, default=15, help="seconds of the low-concurrency pass")
    parser.add_argument("--variants", default="current",
                        help="comma-separated: current, unprepared (the endpoint without prepared statements)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (ours, floor, ours, floor, ...)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--radius", type=float, default=10.0)
    parser.add_argument("--bodies", type=int, default=2000)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--pin-wrk", default=None, help="CPU list for taskset, e.g. 1 (default: no pinning)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.low_levels = [int(n) for n in args.low_connections.split(",") if n.strip()]
    command_line = ("python bench/availability/run.py " + " ".join(sys.argv[1:])).strip()
    if not shutil.which("wrk"):
        print("wrk is missing: installing it (apt-get install -y wrk)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)

    env = {"DATABASE_URL": f"{PG}/{args.db}", "O2O_LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "o2o.settings"}
    prepare_database(args.db)
    generated_s = ensure_chain(args, env)
    key = api_key(env)
    sample = bodies(args)

    load_start = Path("/proc/loadavg").read_text().split()[:3]
    results: list[tuple[str, str, dict]] = []  # (variant, endpoint label, wrk figures)
    for variant in args.variants.split(","):
        results += run_variant(variant, args, env, key, sample)

    summary = []
    for variant in dict.fromkeys(v for v, _, _ in results):
        def rows(endpoint: str, clients: int, variant=variant) -> list[dict]:
            return [r for v, n, r in results if v == variant and n.startswith(endpoint) and r["connections"] == clients]

        def rate(endpoint: str, clients: int) -> float:
            picked = rows(endpoint, clients)
            return sum(r["requests"] for r in picked) / sum(r["duration_s"] for r in picked)

        summary.append(
            f"- **{VARIANTS[variant]}**: ours / floor throughput at {args.connections} clients = "
            f"**{rate('ours', args.connections) / rate('floor', args.connections):.0%}** (goal ≥ 60 %); ours p95 at "
            f"{args.connections} clients = **{max(r['p95_ms'] for r in rows('ours', args.connections))} ms** "
            "(goal < 25 ms; with closed-loop clients mean latency = clients / throughput)"
        )
        summary.append(
            f"- against the floor with prepared statements (the endpoint prepares its statements too): ours / "
            f"prepared floor throughput at {args.connections} clients = "
            f"**{rate('ours', args.connections) / rate('prepared floor', args.connections):.0%}**"
        )

        def cpu(endpoint: str, clients: int) -> float:
            picked = rows(endpoint, clients)
            return sum(r["server_cpu_ms_per_req"] * r["requests"] for r in picked) / sum(r["requests"] for r in picked)

        summary.append(
            f"- server CPU per request at {args.connections} clients (gunicorn + PostgreSQL backends, measured from "
            f"/proc, so other jobs on the machine do not count): ours {cpu('ours', args.connections):.2f} ms, floor "
            f"{cpu('floor', args.connections):.2f} ms: floor / ours = **{cpu('floor', args.connections) / cpu('ours', args.connections):.0%}**"
            " (the throughput ratio the two would have on a machine of their own, when CPU-bound); prepared floor "
            f"{cpu('prepared floor', args.connections):.2f} ms: prepared floor / ours = "
            f"**{cpu('prepared floor', args.connections) / cpu('ours', args.connections):.0%}**"
        )
        met = []
        for clients in args.low_levels:
            p95 = max(r["p95_ms"] for r in rows("ours", clients))
            floor_p95 = max(r["p95_ms"] for r in rows("floor", clients))
            summary.append(
                f"- {clients} client(s): ours p95 {p95} ms (floor {floor_p95} ms), ours / floor throughput "
                f"{rate('ours', clients) / rate('floor', clients):.0%}"
            )
            if p95 < 25:
                met.append(clients)
        summary.append(
            f"- highest tested concurrency with ours p95 < 25 ms: **{max(met) if met else 'none'}**"
            f" (tested {', '.join(str(n) for n in [*args.low_levels, args.connections])})"
        )
    errors = sum(r["non_2xx"] + r["socket_errors"] for _, _, r in results)
    load = Path("/proc/loadavg").read_text().split()[:3]
    lines = [
        "# Availability benchmark",
        "",
        f"Date: {subprocess.run(['date'], capture_output=True, text=True).stdout.strip()}  ",
        f"Machine: {machine()}; PostgreSQL, gunicorn and wrk on the same machine (loopback)  ",
        f"Command: `{command_line}`  ",
        f"Chain: {args.stores} stores x {args.skus} SKUs (`generate_chain --seed {args.seed}`), database `{args.db}`"
        + (f"; generated in this run in {generated_s:.0f} s" if generated_s else "") + "  ",
        f"Server: gunicorn {args.workers} sync workers, persistent DB connections; wrk {args.wrk_threads} threads"
        + (f", pinned to CPU {args.pin_wrk}" if args.pin_wrk else ", not pinned") + "  ",
        f"Load: {args.duration} s per endpoint per round, {args.rounds} round(s) interleaved, after {args.warmup} s "
        f"warm-up each; bodies drawn from {args.bodies} seeded (point within 10 km of the centre of Ho Chi Minh City, "
        f"5 random SKUs, radius {args.radius:g} km, limit 20)",
        "",
        f"Other load on the machine: load average {' '.join(load_start)} at the start, {' '.join(load)} at the end (other engineers' jobs "
        "share the 2 cores; figures are noisy accordingly)",
        "",
        *table([(f"{n} [{VARIANTS[v]}]", r) for v, n, r in results]),
        "",
        *summary,
        f"- non-2xx responses + socket errors over all runs: **{errors}**",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        # Earlier runs stay below the new one (a before/after comparison needs both), demoted one heading level.
        out = Path(__file__).with_name("RESULTS-availability.md")
        earlier = out.read_text() if out.exists() else ""
        marker = "\n---\n\n# Earlier runs\n\n"
        if earlier:
            earlier = marker + earlier.replace(marker, "\n").replace("# Availability benchmark", "## Earlier run", 1)
        out.write_text(text + earlier)


if __name__ == "__main__":
    main()
