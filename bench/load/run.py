"""Load: a realistic mix of the service's traffic at increasing concurrency, until p99 passes 250 ms (the knee).

The mix (issue #9): 80 % availability and promises (cart availability near a point 50 %, checkout promise 20 %,
stores near a point 10 %), 15 % order placement (delivery and pickup, each with its Idempotency-Key), 5 % POS
sales sync (one receipt). Against the demo chain (44 stores in Ho Chi Minh City, Hà Nội and Đà Nẵng, 366 SKUs,
restocked once so that the run does not sell the chain empty), on PostgreSQL, served by gunicorn; closed-loop
clients on loopback, each waiting for its answer before the next request. After the run: the inventory and loyalty
audits, and the orders written against the 201s the clients saw.

    .venv/bin/python bench/load/run.py                      # levels 2,4,8,16,32,64; 20 s each
    .venv/bin/python bench/load/run.py --levels 4,16 --seconds 10 --no-write

Writes bench/load/RESULTS-load.md (figures, date, machine, load average) unless --no-write.
"""

import argparse
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import (  # noqa: E402 - the path above makes the package importable when run as a script
    JsonClient,
    load_average,
    machine,
    percentile,
    prepare_database,
    setup_django,
    start_gunicorn,
)

HERE = Path(__file__).resolve().parent
KNEE_P99_MS = 250.0
MIX = [("availability", 50), ("promise", 20), ("stores", 10), ("place", 15), ("pos_sync", 5)]
CITY_CENTRES = [(10.7769, 106.7009, 0.07), (21.0285, 105.8542, 0.06), (16.0544, 108.2022, 0.04)]


def prepare(db: str, *, reset: bool) -> dict:
    """The demo chain, restocked once; a website key and one till key per store (fresh each run)."""
    prepare_database(db, reset=reset)
    setup_django(db)
    from django.core.management import call_command
    from django.db.models import Min

    from inventory import services as stock
    from inventory.models import MovementReason, Product, Stock, Store
    from o2o.models import SalesChannel, SalesChannelKey
    from orders.pos.models import StoreApiKey

    call_command("migrate", verbosity=0)
    if not Store.objects.exists():
        call_command("load_demo_chain", verbosity=0)
    if (Stock.objects.aggregate(m=Min("on_hand"))["m"] or 0) < 50:
        print("restocking the demo chain for the load run (once) ...", flush=True)
        for row in Stock.objects.select_related("store", "product").filter(on_hand__lt=50).iterator():
            stock.adjust_stock(store=row.store, product=row.product, reason=MovementReason.GOODS_RECEIPT,
                               actor="bench/load", on_hand=200)
    channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
    _, web_key = SalesChannelKey.objects.create_key(name=f"load {uuid.uuid4().hex[:6]}", channel=channel)
    stores = list(Store.objects.filter(is_active=True).values("code", "lat", "lon", "offers_pickup"))
    till_keys = {s.code: StoreApiKey.objects.create_key(name="load-till", store=s)[1]
                 for s in Store.objects.filter(is_active=True)}
    skus = list(Product.objects.filter(is_active=True).values_list("sku", flat=True))
    return {"web_key": web_key, "till_keys": till_keys, "stores": stores, "skus": skus}


class Client(threading.Thread):
    def __init__(self, index: int, ctx: dict, port: int, until: float, run: str, out: list, lock: threading.Lock,
                 out_numbers: list):
        super().__init__(daemon=True)
        self.out_numbers = out_numbers
        self.rng = random.Random(f"{run}-{index}")
        self.ctx, self.until, self.run_id, self.out, self.lock = ctx, until, run, out, lock
        self.web = JsonClient(port, ctx["web_key"])
        self.store = self.rng.choice(ctx["stores"])
        self.till = JsonClient(port, ctx["till_keys"][self.store["code"]])
        self.n = 0
        self.numbers: list[str] = []  # orders the server said it placed (201)

    def point(self) -> dict:
        lat, lon, spread = self.rng.choice(CITY_CENTRES)
        return {"lat": round(lat + self.rng.uniform(-spread, spread), 5),
                "lon": round(lon + self.rng.uniform(-spread, spread), 5)}

    def cart(self, most: int = 5) -> list[dict]:
        return [{"sku": sku, "qty": 1} for sku in self.rng.sample(self.ctx["skus"], self.rng.randint(1, most))]

    def call(self, op: str) -> int:
        self.n += 1
        if op == "availability":
            return self.web.request("POST", "/api/v1/availability/", {**self.point(), "radius_km": 10,
                                                                      "lines": self.cart()})[0]
        if op == "promise":
            return self.web.request("POST", "/api/v1/promises/", {"destination": self.point(),
                                                                  "lines": self.cart(3)})[0]
        if op == "stores":
            p = self.point()
            return self.web.request("GET", f"/api/v1/stores/?lat={p['lat']}&lon={p['lon']}&radius_km=10&limit=5")[0]
        if op == "place":
            body = {"lines": self.cart(2), "customer": {"name": "Khách tải", "phone": "0901234567"}}
            if self.rng.random() < 0.5:
                body |= {"method": "delivery", "destination": self.point()}
            else:
                body |= {"method": "pickup", "pickup_store": self.rng.choice(self.ctx["stores"])["code"]}
            key = f"{self.run_id}-{self.name}-{self.n}"
            status, raw = self.web.request("POST", "/api/v1/orders/", body, {"Idempotency-Key": key})
            if status == 201:
                self.numbers.append(json.loads(raw)["number"])
            return status
        receipt = {
            "receipt_id": f"{self.run_id}-{self.name}-{self.n}", "sold_at": datetime.now(UTC).isoformat(),
            "lines": [{"sku": line["sku"], "qty": 1, "unit_price_vnd": 100_000} for line in self.cart(2)],
        }
        receipt["tenders"] = [{"type": "cash", "amount_vnd": 100_000 * len(receipt["lines"])}]
        return self.till.request("POST", "/api/v1/pos/sales/", {"receipts": [receipt]})[0]

    def run(self) -> None:
        ops, weights = zip(*MIX, strict=True)
        mine = []
        while time.monotonic() < self.until:
            op = self.rng.choices(ops, weights)[0]
            t0 = time.perf_counter()
            try:
                status = self.call(op)
            except Exception:  # noqa: BLE001 - a dropped connection counts as an error
                status = 599
            mine.append((op, status, (time.perf_counter() - t0) * 1000))
        with self.lock:
            self.out.extend(mine)
            self.out_numbers.extend(self.numbers)


def run_level(ctx: dict, *, port: int, clients: int, seconds: float, run: str, numbers: list) -> dict:
    out: list = []
    lock = threading.Lock()
    until = time.monotonic() + seconds
    threads = [Client(i, ctx, port, until, f"{run}-c{clients}", out, lock, numbers) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies = [ms for _, _, ms in out]
    by_op: dict[str, list[float]] = defaultdict(list)
    for op, _, ms in out:
        by_op[op].append(ms)
    statuses = Counter((op, status) for op, status, _ in out)
    return {
        "clients": clients, "requests": len(out), "rps": len(out) / elapsed,
        "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
        "errors_5xx": sum(n for (_, s), n in statuses.items() if s >= 500),
        "placed": statuses[("place", 201)], "place_409": statuses[("place", 409)],
        "per_op_p99": {op: percentile(v, 99) for op, v in sorted(by_op.items())},
        "statuses": {f"{op} {s}": n for (op, s), n in sorted(statuses.items())},
        "load": load_average(),
    }


def audits() -> dict:
    from io import StringIO

    from django.core.management import call_command

    result = {}
    for name in ("inventory_audit", "loyalty_audit"):
        try:
            call_command(name, stdout=StringIO(), stderr=StringIO())
            result[name] = "clean"
        except SystemExit as exc:
            result[name] = "clean" if not exc.code else f"DIFFERENCES (exit {exc.code})"
    return result


def write(path: Path, rows: list[dict], *, args, ctx_size: str, after: dict, knee: dict | None) -> None:
    lines = [
        "# Load: the realistic mix at increasing concurrency", "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; gunicorn {args.workers} sync workers, "
        f"PostgreSQL on the same machine, the clients in one Python process on the same 2 cores.", "",
        f"Command: `.venv/bin/python bench/load/run.py --levels {args.levels} --seconds {args.seconds:g} "
        f"--workers {args.workers}`", "",
        f"Mix: {', '.join(f'{op} {w} %' for op, w in MIX)}. Data: {ctx_size}.", "",
        "| clients | req/s | p50 ms | p95 ms | p99 ms | 5xx | orders placed | place 409 (stock moved) | load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
                     f"{r['errors_5xx']} | {r['placed']} | {r['place_409']} | {r['load']} |")
    lines += ["", "p99 per operation (ms):", "", "| clients | " + " | ".join(op for op, _ in MIX) + " |",
              "| --- |" + " --- |" * len(MIX)]
    for r in rows:
        lines.append(f"| {r['clients']} | " + " | ".join(f"{r['per_op_p99'].get(op, float('nan')):.0f}" for op, _ in MIX)
                     + " |")
    lines += ["", (f"**Knee**: the highest concurrency with p99 ≤ {KNEE_P99_MS:.0f} ms is {knee['clients']} clients, "
                   f"{knee['rps']:.0f} req/s (p99 {knee['p99']:.0f} ms)." if knee else
                   f"**Knee**: p99 was above {KNEE_P99_MS:.0f} ms at every level measured."),
              "", f"After the run: inventory_audit {after['inventory_audit']}, loyalty_audit {after['loyalty_audit']}; "
              f"orders in the database for this run's 201s: {after['orders_written']} of {after['orders_seen']}.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="o2o_bench_load")
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--levels", default="2,4,8,16,32,64")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=18910)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    ctx = prepare(args.db, reset=args.reset)
    ctx_size = f"{len(ctx['stores'])} stores, {len(ctx['skus'])} SKUs"
    run = uuid.uuid4().hex[:8]
    server = start_gunicorn(args.db, workers=args.workers, port=args.port)
    rows: list[dict] = []
    numbers: list[str] = []
    try:
        run_level(ctx, port=args.port, clients=2, seconds=3, run=f"{run}-warm", numbers=numbers)  # warm up
        for clients in [int(x) for x in args.levels.split(",")]:
            row = run_level(ctx, port=args.port, clients=clients, seconds=args.seconds, run=run, numbers=numbers)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "statuses"}), flush=True)
            if row["p99"] > KNEE_P99_MS:
                break
    finally:
        server.terminate()
        server.wait(30)

    from orders.models import Order

    after = audits()
    after["orders_seen"] = len(numbers)
    after["orders_written"] = Order.objects.filter(number__in=numbers).count()
    knee = max((r for r in rows if r["p99"] <= KNEE_P99_MS), key=lambda r: r["clients"], default=None)
    print(json.dumps(after))
    if not args.no_write:
        write(HERE / "RESULTS-load.md", rows, args=args, ctx_size=ctx_size, after=after, knee=knee)
        print(f"wrote {HERE / 'RESULTS-load.md'}")


if __name__ == "__main__":
    main()
