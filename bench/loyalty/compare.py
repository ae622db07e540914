"""Before/after on the same machine in one sitting: runs this tree's bench/loyalty/run.py harness over the services
of an older commit (extracted with `git archive` into a temporary directory, its own database) and over this tree,
alternating, and prints the figures side by side with their ratios: postings/s, and CPU per posting (client
processes + PostgreSQL backends), which a shared machine disturbs far less. Then the statements per action of
both trees (bench/loyalty/cost.py).

    .venv/bin/python bench/loyalty/compare.py --before 1cec483 --rounds 3 --seconds 20 --clients 32
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tree(tree: Path, db: str, args, *, reset: bool) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "bench/loyalty/run.py"),
        "--seconds",
        str(args.seconds),
        "--clients",
        str(args.clients),
        "--procs",
        str(args.procs),
        "--db",
        db,
        "--no-write",
        "--json",
    ]
    env = {**os.environ, "O2O_BENCH_CODE": str(tree)}
    out = subprocess.run(cmd + (["--reset"] if reset else []), capture_output=True, text=True, cwd=tree, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr[-2000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])["rows"][0]
    row["audit"] = next((line for line in out.stdout.splitlines() if line.startswith("Audit after the run")), "")
    row["load"] = os.getloadavg()[0]
    return row


def statements(tree: Path, db: str) -> dict:
    env = {**os.environ, "O2O_BENCH_CODE": str(tree)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/loyalty/cost.py"), "--db", db, "--json"],
        capture_output=True,
        text=True,
        cwd=tree,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["statements"]


def cpu(row: dict) -> float:
    return row["client_ms_per_posting"] + row["server_ms_per_posting"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git commit of the code to compare with")
    parser.add_argument("--after", help="git commit to compare (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--reset", action="store_true", help="start both databases afresh (same size for both)")
    args = parser.parse_args()
    trees = {}
    with tempfile.TemporaryDirectory(prefix="loyalty-before-") as tmp:
        before, after = Path(tmp) / "before", Path(tmp) / "after"
        for commit, tree in ((args.before, before), (args.after, after)):
            if commit:
                tree.mkdir()
                archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
                subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        trees = {
            "before": (before, "o2o_bench_loyalty_before"),
            "after": (after if args.after else ROOT, "o2o_bench_loyalty"),
        }
        results: dict[str, list[dict]] = {"before": [], "after": []}
        for i in range(args.rounds):
            for name, (tree, db) in trees.items():
                row = run_tree(tree, db, args, reset=args.reset and i == 0)
                results[name].append(row)
                print(
                    f"round {i + 1} {name:6}: {row['per_second']:.0f} postings/s, p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms, CPU/posting {row['client_ms_per_posting']:.2f} client + "
                    f"{row['server_ms_per_posting']:.2f} PostgreSQL = {cpu(row):.2f} ms, load {row['load']:.1f}; "
                    f"{row['audit']}",
                    flush=True,
                )
        counts = {name: statements(tree, db) for name, (tree, db) in trees.items()}

    def mean(name: str, f) -> float:
        return statistics.mean(f(r) for r in results[name])

    print(f"\nmeans over {args.rounds} alternating rounds (before {args.before} -> after this tree):")
    for label, f in (
        ("postings/s", lambda r: r["per_second"]),
        ("client CPU ms/posting", lambda r: r["client_ms_per_posting"]),
        ("PostgreSQL CPU ms/posting", lambda r: r["server_ms_per_posting"]),
        ("total CPU ms/posting", cpu),
    ):
        b, a = mean("before", f), mean("after", f)
        print(f"  {label:26} {b:8.2f} -> {a:8.2f}  ratio {a / b:.2f}x")
    for rb, ra in zip(results["before"], results["after"], strict=True):
        print(
            f"  pair: {rb['per_second']:.0f} -> {ra['per_second']:.0f}/s ({ra['per_second'] / rb['per_second']:.2f}x), "
            f"CPU {cpu(rb):.2f} -> {cpu(ra):.2f} ms/posting ({cpu(ra) / cpu(rb):.2f}x)"
        )
    print("\nstatements (round trips, BEGIN and COMMIT included) per action, before -> after:")
    for action in counts["after"]:
        print(f"  {action:10} {counts['before'].get(action, '?')} -> {counts['after'][action]}")


if __name__ == "__main__":
    main()
