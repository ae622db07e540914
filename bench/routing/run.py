"""Routing benchmark: quality vs the two baselines, optimality (bound and exact MIP), speed.

    .venv/bin/python bench/routing/run.py [--quick] [--seed 1]

Writes bench/out/routing.json, bench/out/routing.png and the markdown tables (bench/routing/RESULTS-routing.md on a
full run, bench/out/RESULTS-routing-quick.md with --quick). Self-contained: the HCMC scenario is generated from the
seed (scenario.py). The Solomon VRPTW instances under /work/shared/data/solomon are vehicle-routing problems, not
this store-assignment problem, and are deliberately not used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import exact  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import scenario  # noqa: E402

from bench.common import load_average, machine  # noqa: E402
from orders.routing import check_plan, nearest_store_first, parse_problem, priority_list, route  # noqa: E402

OUT = ROOT / "bench" / "out"
METHODS = ("router", "nearest_store_first", "priority_list")


def quality(seed: int, n_problems: int, n_stores: int, n_orders: int, time_limit: float) -> dict:
    rows = []
    for i in range(n_problems):
        raw = scenario.problem(seed + i, n_stores, n_orders)
        # the chain's "flagship first" list: biggest picking capacity first
        ranking = [s["id"] for s in sorted(raw["stores"], key=lambda s: -s["capacity"])]
        plans = {
            "router": route(raw, time_limit_s=time_limit, explain=False),
            "nearest_store_first": nearest_store_first(raw),
            "priority_list": priority_list(raw, ranking),
        }
        for name, plan in plans.items():
            violations = check_plan(raw, plan)
            assert not violations, (name, violations[:3])
        row = {
            name: {k: plan[k] for k in ("served", "unserved", "shipments", "total_cost", "objective", "status")}
            for name, plan in plans.items()
        }
        per_order = {name: _per_order(plan) for name, plan in plans.items()}
        row["like_for_like"] = {b: _like_for_like(per_order["router"], per_order[b]) for b in METHODS[1:]}
        rows.append(row)
    agg = {}
    for name in METHODS:
        served = sum(r[name]["served"] for r in rows)
        ships = sum(r[name]["shipments"] for r in rows)
        km = sum(r[name]["total_cost"] for r in rows)
        agg[name] = {
            "served": served,
            "unserved": sum(r[name]["unserved"] for r in rows),
            "shipments_per_order": ships / served,
            "total_km": km,
            "km_per_order": km / served,
            "objective": sum(r[name]["objective"] for r in rows),
        }
    lfl = {}
    for b in METHODS[1:]:
        lfl[b] = {k: sum(r["like_for_like"][b][k] for r in rows) for k in rows[0]["like_for_like"][b]}
    worse = sum(1 for r in rows if r["router"]["served"] < max(r[b]["served"] for b in METHODS[1:]))
    return {
        "problems": n_problems,
        "stores": n_stores,
        "orders": n_orders,
        "time_limit_s": time_limit,
        "aggregate": agg,
        "like_for_like": lfl,
        "problems_router_serves_fewer": worse,
        "per_problem": rows,
    }


def _per_order(plan: dict) -> dict[str, tuple[int, float]]:
    """order -> (shipments, delivery km) for every served order."""
    return {a["order"]: (len(a["shipments"]), sum(sh["cost"] for sh in a["shipments"])) for a in plan["assignments"]}


def _like_for_like(router: dict, base: dict) -> dict:
    """The router against one baseline on the orders both serve, and what each serves that the other does not."""
    common = router.keys() & base.keys()
    only_r, only_b = router.keys() - base.keys(), base.keys() - router.keys()
    return {
        "common": len(common),
        "router_km": sum(router[o][1] for o in common),
        "base_km": sum(base[o][1] for o in common),
        "router_shipments": sum(router[o][0] for o in common),
        "base_shipments": sum(base[o][0] for o in common),
        "router_only": len(only_r),
        "router_only_km": sum(router[o][1] for o in only_r),
        "base_only": len(only_b),
        "base_only_km": sum(base[o][1] for o in only_b),
    }


def optimality(
    seed: int, waves: list[tuple[int, int]], time_limit: float, small: int, small_size: tuple[int, int]
) -> dict:
    out = {"waves": [], "exact": []}
    for n_stores, n_orders in waves:
        raw = scenario.problem(seed, n_stores, n_orders)
        plan = route(raw, time_limit_s=time_limit, explain=False)
        assert not check_plan(raw, plan)
        gap = (plan["objective"] - plan["bound"]) / plan["objective"]
        out["waves"].append(
            {
                "stores": n_stores,
                "orders": n_orders,
                "status": plan["status"],
                "objective": plan["objective"],
                "bound": plan["bound"],
                "gap": gap,
                "seconds": plan["solve_seconds"],
            }
        )
    for i in range(small):
        raw = scenario.problem(seed + 100 + i, *small_size)
        plan = route(raw, time_limit_s=time_limit, explain=False)
        opt, proven, secs = exact.exact_objective(raw)
        out["exact"].append(
            {
                "stores": small_size[0],
                "orders": small_size[1],
                "router": plan["objective"],
                "router_status": plan["status"],
                "exact": opt,
                "exact_proven": proven,
                "gap": (plan["objective"] - opt) / opt if opt else None,
                "exact_seconds": secs,
            }
        )
    return out


def speed(seed: int, n_stores: int, n_single: int, wave_orders: int, time_limit: float) -> dict:
    ch = scenario.chain(seed, n_stores, max(50, n_stores // 2))
    orders = scenario.orders(seed, ch, n_single, prefix="CHK")
    by_sku: dict[str, list] = {}
    for row in ch["stock"]:
        by_sku.setdefault(row["sku"], []).append(row)
    times = []
    for o in orders:
        # what the service sends at checkout: the chain's stores, the stock rows of the cart's SKUs, one order
        stock = [row for ln in o["lines"] for row in by_sku.get(ln["sku"], [])]
        raw = {"stores": ch["stores"], "stock": stock, "orders": [o], "settings": {"time_limit_s": 1.0}}
        t0 = time.perf_counter()
        route(raw)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    q = statistics.quantiles(times, n=100)
    raw = scenario.problem(seed, n_stores, wave_orders)
    t0 = time.perf_counter()
    plan = route(raw, time_limit_s=time_limit, explain=False)
    wave_s = time.perf_counter() - t0
    parse_t0 = time.perf_counter()
    parse_problem(raw)
    return {
        "stores": n_stores,
        "single_orders": n_single,
        "single_ms_p50": q[49],
        "single_ms_p99": q[98],
        "single_ms_max": times[-1],
        "wave_orders": wave_orders,
        "wave_seconds": wave_s,
        "wave_status": plan["status"],
        "wave_parse_seconds": time.perf_counter() - parse_t0,
        "wave_stock_rows": len(raw["stock"]),
    }


def markdown(res: dict, command: str) -> str:
    q, o, s = res["quality"], res["optimality"], res["speed"]
    a = q["aggregate"]
    lines = [
        "# Routing benchmark",
        "",
        f"Run {res['date']} on {res['machine']} (load average {res['load_before']} before, {res['load_after']} "
        "after: the machine is shared, so CP-SAT gets less CPU than its time limit suggests).",
        "",
        f"Command: `{command}` (seed {res['seed']}). Scenario: generated HCMC chain "
        "(bench/routing/scenario.py): stores in 18 districts, Zipf SKU popularity (the long tail in a few stores), "
        "picking capacity 4-14 units per slot, orders of 1-5 lines, 12% pickup, 60% of deliveries allow splitting.",
        "",
        f"## Quality: {q['problems']} problems of {q['orders']} orders / {q['stores']} stores "
        f"(router time limit {q['time_limit_s']} s)",
        "",
        "| method | served (within radius) | unserved | shipments / served order | total delivery km | km / served order |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in METHODS:
        m = a[name]
        lines.append(
            f"| {name} | {m['served']} | {m['unserved']} | {m['shipments_per_order']:.3f} | {m['total_km']:.0f} "
            f"| {m['km_per_order']:.2f} |"
        )
    lines += [
        "",
        f"Problems where the router serves fewer orders than a baseline: **{q['problems_router_serves_fewer']}** "
        f"of {q['problems']}. Delivery km is summed over shipments (a split order counts each parcel's distance).",
        "",
        "Like for like: the orders that both the router and the baseline serve, and separately the orders only one "
        "of them serves (the router's extra orders are often the hard ones: far, or needing a split).",
        "",
        "| router vs | orders both serve | km: router / baseline | shipments: router / baseline "
        "| router only: orders, km | baseline only: orders, km |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in METHODS[1:]:
        f = q["like_for_like"][b]
        lines.append(
            f"| {b} | {f['common']} | {f['router_km']:.0f} / {f['base_km']:.0f} "
            f"({100 * (f['router_km'] / f['base_km'] - 1):+.1f}%) | {f['router_shipments']} / {f['base_shipments']} "
            f"| {f['router_only']}, {f['router_only_km']:.0f} | {f['base_only']}, {f['base_only_km']:.0f} |"
        )
    lines += [
        "",
        "The router's plan: greedy and nearest-first seeds improved by a local search (orders/routing/improve.py: "
        "relocations, ejections, re-splits), CP-SAT hinted with the better one, the local search again on CP-SAT's "
        "plan. The weighted objective (unserved 1,000,000, shipment 500, 1 per km) is lexicographic in effect: more "
        "orders served first, then fewer shipments, then fewer km. Before, total and per-order km lost to "
        "nearest-first because CP-SAT, stopped at 2 s on the shared machine, left km on the table; "
        "`bench/routing/before_after.py` runs an earlier commit's router side by side.",
        "",
        "## Optimality",
        "",
        "| wave | status | objective | proven bound | gap | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for w in o["waves"]:
        lines.append(
            f"| {w['orders']} orders / {w['stores']} stores | {w['status']} | {w['objective']:.1f} | {w['bound']:.1f} "
            f"| {100 * w['gap']:.4f}% | {w['seconds']:.2f} |"
        )
    lines += [
        "",
        "Against an independent exact MIP (SCIP via pywraplp, unpruned candidates, proven optimal):",
        "",
        "| problem | router | exact optimum | gap |",
        "| --- | ---: | ---: | ---: |",
    ]
    for i, e in enumerate(o["exact"]):
        proven = "" if e["exact_proven"] else " (not proven)"
        lines.append(
            f"| #{i} {e['orders']} orders / {e['stores']} stores | {e['router']:.2f} ({e['router_status']}) "
            f"| {e['exact']:.2f}{proven} | {100 * e['gap']:.4f}% |"
        )
    lines += [
        "",
        f"## Speed ({s['stores']}-store chain, 2 cores)",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| single order at checkout, p50 (parse + route, {s['single_orders']} orders) | {s['single_ms_p50']:.2f} ms |",
        f"| single order, p99 | {s['single_ms_p99']:.2f} ms |",
        f"| single order, max | {s['single_ms_max']:.2f} ms |",
        f"| wave of {s['wave_orders']} orders over {s['stores']} stores, wall ({s['wave_status']}) | {s['wave_seconds']:.2f} s |",
        f"| of which parsing/validating the problem ({s['wave_stock_rows']} stock rows) | {s['wave_parse_seconds']:.2f} s |",
        "",
        "![routing](routing.png)",
        "",
    ]
    return "\n".join(lines)


def chart(res: dict, path: Path) -> None:
    """One row a reader takes in at a glance: the three methods on each quality metric, the like-for-like km, and
    the speed figures."""
    a, lfl = res["quality"]["aggregate"], res["quality"]["like_for_like"]
    fig, axes = plt.subplots(1, 5, figsize=(18, 3.9))
    colors = {"router": "#2a9d8f", "nearest_store_first": "#e76f51", "priority_list": "#8d99ae"}
    labels = {"router": "router", "nearest_store_first": "nearest", "priority_list": "priority"}
    panels = [
        ("served", "orders served (higher is better)"),
        ("shipments_per_order", "shipments / served order (lower)"),
        ("km_per_order", "km / served order (lower)"),
    ]
    for ax, (key, title) in zip(axes[:3], panels, strict=True):
        vals = [a[m][key] for m in METHODS]
        ax.bar([labels[m] for m in METHODS], vals, color=[colors[m] for m in METHODS])
        if key == "served":
            ax.set_ylim(min(vals) * 0.97, max(vals) * 1.01)
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(vals):
            text = (
                f"{v:.3f}"
                if key == "shipments_per_order"
                else f"{v:.2f}"
                if isinstance(v, float)
                else f"{v}\n({a[METHODS[i]]['unserved']} unserved)"
            )
            ax.text(i, v, text, ha="center", va="bottom", fontsize=8)
    # like for like: km on the orders both serve, router next to each baseline
    ax = axes[3]
    for g, b in enumerate(METHODS[1:]):
        f = lfl[b]
        for j, (who, km) in enumerate((("router", f["router_km"]), (b, f["base_km"]))):
            x = 3 * g + j
            ax.bar(x, km, color=colors[who])
            ax.text(x, km, f"{km:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([0.5, 3.5], [f"vs {labels[b]}\n{lfl[b]['common']} orders" for b in METHODS[1:]])
    ax.set_title("km on orders both serve (lower)", fontsize=10)
    s = res["speed"]
    ax = axes[4]
    ax.bar(["single p50", "single p99"], [s["single_ms_p50"], s["single_ms_p99"]], color="#264653")
    ax.axhline(30, color="#e63946", lw=1, ls="--")
    ax.text(1.4, 30, "goal 30 ms", color="#e63946", fontsize=8, va="bottom", ha="right")
    ax.set_ylabel("ms")
    ax.set_title(f"checkout p50/p99; wave {s['wave_seconds']:.2f} s (goal 5 s)", fontsize=10)
    gaps = [w["gap"] for w in res["optimality"]["waves"]]
    fig.suptitle(
        f"Routing, {res['quality']['problems']} problems x {res['quality']['orders']} orders / "
        f"{res['quality']['stores']} stores: router vs baselines; max gap to proven bound "
        f"{100 * max(gaps):.3f}% ({res['date']})",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small variant, under a minute")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    t0 = time.perf_counter()
    if args.quick:
        q = quality(args.seed, 4, 100, 200, 1.0)
        o = optimality(args.seed, [(500, 500)], 2.0, 2, (30, 60))
        s = speed(args.seed, 1000, 100, 1000, 4.5)
    else:
        q = quality(args.seed, 20, 100, 200, 2.0)
        o = optimality(args.seed, [(1000, 1000), (1000, 1000)], 4.5, 5, (40, 80))
        o2 = optimality(args.seed + 1, [(1000, 1000)], 4.5, 0, (0, 0))
        o["waves"] += o2["waves"]
        s = speed(args.seed, 1000, 400, 1000, 4.5)
    res = {
        "seed": args.seed,
        "quick": args.quick,
        "machine": machine(),
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "load_before": load_before,
        "load_after": load_average(),
        "quality": q,
        "optimality": o,
        "speed": s,
        "bench_seconds": time.perf_counter() - t0,
    }
    (OUT / "routing.json").write_text(json.dumps(res, indent=1))
    chart(res, OUT / "routing.png")
    if not args.quick:
        chart(res, Path(__file__).with_name("routing.png"))
    command = ".venv/bin/python bench/routing/run.py" + (" --quick" if args.quick else "")
    md = markdown(res, command)
    target = OUT / "RESULTS-routing-quick.md" if args.quick else Path(__file__).with_name("RESULTS-routing.md")
    target.write_text(md)
    print(md)
    print(f"bench took {res['bench_seconds']:.0f} s; wrote {target}, {OUT / 'routing.png'}, {OUT / 'routing.json'}")


if __name__ == "__main__":
    main()
