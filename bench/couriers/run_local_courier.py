"""Drive the local courier from the command line (what the beat does every 10 s): dispatch packed delivery
fulfillments, move the local courier's deliveries one step, run the SLA watch, and deliver the outbox.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/o2o .venv/bin/python bench/couriers/run_local_courier.py --once
    ... --loop --step-seconds 5          # until Ctrl-C

(A script rather than a management command: orders/couriers is a subpackage of the orders app, and commands are
only discovered in an app's own management/commands/.)
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")


def tick(step_seconds: float | None, deliver: bool) -> str:
    from o2o import outbox
    from orders.couriers import services

    dispatched = services.dispatch_packed_deliveries()
    moved = services.advance_local_deliveries(step_seconds=step_seconds)
    watch = services.watch_deliveries()
    sent = outbox.deliver_due_events() if deliver else None
    return (f"dispatched {dispatched}, courier events applied {moved}, at risk {len(watch.at_risk)}, "
            f"escalated {len(watch.escalated)}" + (f", outbox delivered {sent.delivered} failed {sent.failed} skipped {sent.skipped}"
                                                   if sent else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true")
    mode.add_argument("--loop", action="store_true")
    parser.add_argument("--step-seconds", type=float, default=None, help="seconds per courier step (settings default)")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--no-deliver", action="store_true", help="leave the outbox to the Celery worker")
    args = parser.parse_args()
    if not args.no_deliver:
        os.environ.setdefault("O2O_OUTBOX_KICK", "0")  # this loop delivers the outbox itself: no broker needed
    import django

    django.setup()
    while True:
        print(tick(args.step_seconds, not args.no_deliver), flush=True)
        if args.once:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
