"""Before/after on the same machine in one sitting: runs bench/loyalty/run.py from an older commit (extracted with
`git archive` into a temporary directory, its own database) and from this tree, alternating, and prints the
figures side by side with their ratio. The machine is shared and noisy: only the ratio of runs made close together
means much.

    .venv/bin/python bench/loyalty/compare.py --before 075ffdc --rounds 2 --seconds 20 --clients 32
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tree(tree: Path, db: str, args) -> dict:
    cmd = [sys.executable, str(tree / "bench/loyalty/run.py"), "--seconds", str(args.seconds), "--clients",
           str(args.clients), "--db", db, "--no-write"]
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, cwd=tree)
    if out.returncode != 0 and "unrecognized arguments: --json" in out.stderr:  # an older run.py: read its table
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr[-2000:]}")
    last = out.stdout.strip().splitlines()[-1]
    audit = next((line for line in out.stdout.splitlines() if line.startswith("Audit after the run")), "")
    if last.startswith("{"):
        row = json.loads(last)["rows"][0]
    else:
        match = re.search(r"^\| \d+ \| \d+ \| [\d%]+ \| [\d.]+ \| (\d+) \| \*\*(\d+)\*\* \| (\d+) \| ([\d.]+) \| ([\d.]+) \|",
                          out.stdout, re.M)
        row = {"postings": int(match[1]), "per_second": float(match[2]), "refused": int(match[3]),
               "p50_ms": float(match[4]), "p99_ms": float(match[5])}
    row["audit"] = audit
    row["load"] = os.getloadavg()[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git commit of the code to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loyalty-before-") as tmp:
        before = Path(tmp)
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        results: dict[str, list[dict]] = {"before": [], "after": []}
        for i in range(args.rounds):
            for name, tree, db in (("before", before, "o2o_bench_loyalty_before"), ("after", ROOT, "o2o_bench_loyalty")):
                row = run_tree(tree, db, args)
                results[name].append(row)
                print(f"round {i + 1} {name:6}: {row['per_second']:.0f} postings/s, p50 {row['p50_ms']:.1f} ms, "
                      f"p99 {row['p99_ms']:.1f} ms, load {row['load']:.1f}; {row['audit']}", flush=True)
    b = statistics.mean(r["per_second"] for r in results["before"])
    a = statistics.mean(r["per_second"] for r in results["after"])
    print(f"\nmean over {args.rounds} alternating rounds: before {args.before} {b:.0f}/s, after {a:.0f}/s, "
          f"ratio {a / b:.2f}x")
    for (rb, ra) in zip(results["before"], results["after"], strict=True):
        print(f"  pair: {rb['per_second']:.0f} -> {ra['per_second']:.0f} ({ra['per_second'] / rb['per_second']:.2f}x)")


if __name__ == "__main__":
    main()
