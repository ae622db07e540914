"""The router at another commit against the working tree's, side by side in one run (interleaved problem by problem,
call by call), so that a shared machine's load hits both alike.

    .venv/bin/python bench/routing/before_after.py --before 1cec483 [--problems 20] [--single 400]

The other version of orders/routing/ is taken with `git archive` into a temporary directory and imported under
another package name; the nearest-store-first baseline (unchanged) is the yardstick for the like-for-like km.
Writes the markdown to stdout and bench/out/routing-before-after.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import scenario  # noqa: E402

from bench.common import load_average, machine  # noqa: E402
from orders.routing import nearest_store_first  # noqa: E402
from orders.routing import route as route_after  # noqa: E402


def load_router(commit: str, where: Path):
    """orders/routing/ at `commit`, imported as the package `before_orders.routing`; returns its route()."""
    data = subprocess.run(["git", "archive", commit, "orders/routing"], cwd=ROOT, check=True, capture_output=True)
    tarfile.open(fileobj=io.BytesIO(data.stdout)).extractall(where, filter="data")
    parent = types.ModuleType("before_orders")
    parent.__path__ = [str(where / "orders")]
    sys.modules["before_orders"] = parent
    pkg_dir = where / "orders" / "routing"
    spec = importlib.util.spec_from_file_location(
        "before_orders.routing", pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["before_orders.routing"] = module
    spec.loader.exec_module(module)
    return module.route


def per_order(plan: dict) -> dict[str, tuple[int, float]]:
    return {a["order"]: (len(a["shipments"]), sum(sh["cost"] for sh in a["shipments"])) for a in plan["assignments"]}


def quality(routers: dict, n_problems: int, time_limit: float) -> dict:
    agg = {name: dict(served=0, shipments=0, km=0.0, common=0, km_c=0.0, base_km_c=0.0) for name in routers}
    agg["nearest_store_first"] = dict(served=0, shipments=0, km=0.0)
    for i in range(n_problems):
        raw = scenario.problem(1 + i, 100, 200)
        base = nearest_store_first(raw)
        base_po = per_order(base)
        for key in ("served", "shipments"):
            agg["nearest_store_first"][key] += base[key]
        agg["nearest_store_first"]["km"] += base["total_cost"]
        # alternate which version runs first, so neither always gets the warmer (or quieter) slot
        names = list(routers) if i % 2 == 0 else list(reversed(routers))
        for name in names:
            plan = routers[name](raw, time_limit_s=time_limit, explain=False)
            a, po = agg[name], per_order(plan)
            a["served"] += plan["served"]
            a["shipments"] += plan["shipments"]
            a["km"] += plan["total_cost"]
            common = po.keys() & base_po.keys()
            a["common"] += len(common)
            a["km_c"] += sum(po[o][1] for o in common)
            a["base_km_c"] += sum(base_po[o][1] for o in common)
    return agg


def speed(routers: dict, n_single: int, waves: int) -> dict:
    ch = scenario.chain(1, 1000, 500)
    orders = scenario.orders(1, ch, n_single, prefix="CHK")
    by_sku: dict[str, list] = {}
    for row in ch["stock"]:
        by_sku.setdefault(row["sku"], []).append(row)
    times: dict[str, list[float]] = {name: [] for name in routers}
    for i, o in enumerate(orders):
        stock = [row for ln in o["lines"] for row in by_sku.get(ln["sku"], [])]
        raw = {"stores": ch["stores"], "stock": stock, "orders": [o], "settings": {"time_limit_s": 1.0}}
        for name in list(routers) if i % 2 == 0 else list(reversed(routers)):
            t0 = time.perf_counter()
            routers[name](raw)
            times[name].append((time.perf_counter() - t0) * 1000)
    out = {}
    for name, ts in times.items():
        q = statistics.quantiles(sorted(ts), n=100)
        out[name] = {"p50": q[49], "p99": q[98], "wave": [], "wave_plan": None}
    raw = scenario.problem(1, 1000, 1000)
    for k in range(waves):
        for name in list(routers) if k % 2 == 0 else list(reversed(routers)):
            t0 = time.perf_counter()
            plan = routers[name](raw, time_limit_s=4.5, explain=False)
            out[name]["wave"].append(time.perf_counter() - t0)
            out[name]["wave_plan"] = plan
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="commit of the earlier router")
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--single", type=int, default=400)
    ap.add_argument("--waves", type=int, default=2)
    args = ap.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        routers = {f"before ({args.before})": load_router(args.before, Path(tmp)), "after (working tree)": route_after}
        q = quality(routers, args.problems, 2.0)
        s = speed(routers, args.single, args.waves)
    lines = [
        f"# Router before/after, side by side ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)",
        "",
        f"{machine()}; load average {load_before} before, {load_average()} after. Command: "
        f"`.venv/bin/python bench/routing/before_after.py --before {args.before}`.",
        "",
        f"Quality: {args.problems} problems of 200 orders / 100 stores, time limit 2 s.",
        "",
        "| method | served | shipments / served order | total km | km / served order "
        "| on the orders nearest-first also serves: orders, km (vs nearest) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, a in q.items():
        common = ""
        if "common" in a:
            common = (
                f"{a['common']}, {a['km_c']:.0f} ({a['base_km_c']:.0f}, {100 * (a['km_c'] / a['base_km_c'] - 1):+.1f}%)"
            )
        lines.append(
            f"| {name} | {a['served']} | {a['shipments'] / a['served']:.3f} | {a['km']:.0f} "
            f"| {a['km'] / a['served']:.3f} | {common} |"
        )
    lines += [
        "",
        f"Speed (1,000-store chain): single order {args.single} calls each, interleaved; "
        f"wave of 1,000 orders, time limit 4.5 s, {args.waves} runs each, interleaved.",
        "",
        "| router | single p50 ms | single p99 ms | wave s (each run) | wave plan: served, shipments, km |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, v in s.items():
        p = v["wave_plan"]
        lines.append(
            f"| {name} | {v['p50']:.2f} | {v['p99']:.2f} | {', '.join(f'{w:.2f}' for w in v['wave'])} "
            f"| {p['served']}, {p['shipments']}, {p['total_cost']:.0f} |"
        )
    md = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing-before-after.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
