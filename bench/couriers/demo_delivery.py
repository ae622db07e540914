"""The demo of issue 7: delivery orders go through the local courier, and the website-side events are printed by
a loopback receiver as they arrive (signed, verified, deduplicated).

    .venv/bin/python bench/couriers/demo_delivery.py          # own PostgreSQL database o2o_courier_demo

Run it again as often as you like: each run places two new orders (stock is topped up to 5 first).

One order is delivered (courier assigned → picked up → delivered with proof); one goes to an address containing
FAIL, so its delivery fails and the goods come back to the store, on sale again (stock shown before and after).
"""

import os
import sys
import time
from datetime import time as dtime
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("O2O_DEMO_DB", "o2o_courier_demo")
PG = os.environ.get("O2O_DEMO_PG", "postgres://postgres@127.0.0.1:5432")
os.environ.update(DJANGO_SETTINGS_MODULE="o2o.settings", DATABASE_URL=f"{PG}/{DB_NAME}", O2O_OUTBOX_KICK="0",
                  O2O_LOG_LEVEL="WARNING")


def main() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from bench.couriers.receiver import Receiver
    from inventory import services as stock
    from inventory.models import MovementReason, OpeningHours, Product, Stock, Store
    from inventory.selectors import stock_ledger_differences
    from o2o import outbox
    from o2o.models import SalesChannel
    from orders import services as orders
    from orders.couriers import services as couriers
    from orders.couriers.models import CourierEvent, Delivery

    call_command("migrate", interactive=False, verbosity=0)
    store, created = Store.objects.get_or_create(
        code="DEMO-Q1", defaults={"name": "Demo Q1 Lê Lợi", "city": "Ho Chi Minh City", "lat": 10.7743, "lon": 106.7038}
    )
    if created:
        OpeningHours.objects.bulk_create(
            [OpeningHours(store=store, weekday=d, opens=dtime(0, 0), closes=dtime(23, 59, 59)) for d in range(7)]
        )
    product, _ = Product.objects.get_or_create(
        sku="DEMO-AO-THUN", defaults={"name": "Áo thun demo", "barcode": "8930000000017", "price_vnd": 199_000,
                                      "category": "ao-thun"}
    )
    # Each run delivers one shirt: receive what is missing so every run starts from 5 on hand.
    held = Stock.objects.filter(store=store, product=product).values_list("on_hand", flat=True).first() or 0
    if held < 5:
        stock.adjust_stock(store=store, product=product, reason=MovementReason.GOODS_RECEIPT, actor="demo",
                           on_hand=5 - held)

    def on_hand() -> int:
        return Stock.objects.get(store=store, product=product).on_hand

    with Receiver("demo-site-secret", echo=True) as site:
        SalesChannel.objects.update_or_create(
            code="website", defaults={"name": "Website", "webhook_url": site.url, "webhook_secret": "demo-site-secret"}
        )
        channel = SalesChannel.objects.get(code="website")
        print(f"website stand-in listening on {site.url}\n")
        fulfillments = []
        for address in ("12 Lê Lợi, Bến Nghé, Quận 1", "FAIL: 1 Nguyễn Huệ, Quận 1 (nobody home)"):
            order = orders.place_order(
                channel=channel, lines={"DEMO-AO-THUN": 1}, customer_name="Nguyễn Văn An", customer_phone="0901234567",
                method="delivery", actor="demo", lat=10.7725, lon=106.6980, address=address,
            )
            f = order.fulfillments.get()
            for step in ("picking", "packed"):
                orders.transition_fulfillment(fulfillment=f.pk, to=step, actor="staff:demo")
            fulfillments.append(f)
        print(f"stock at {store.code} after placing and packing two orders: on hand {on_hand()}\n")
        print(f"dispatched {couriers.dispatch_packed_deliveries()} to the local courier\n")
        outbox.deliver_due_events()
        clock = timezone.now()
        for _ in range(6):
            clock += timedelta(seconds=30)
            couriers.advance_local_deliveries(now=clock, step_seconds=20)
            outbox.deliver_due_events()
            time.sleep(0.3)
        print()
        for f in fulfillments:
            f.refresh_from_db()
            d = Delivery.objects.filter(fulfillment=f).latest("pk")
            print(f"{f.order.number}: fulfillment {f.status}; delivery {d.external_id} {d.status} by {d.courier_name} "
                  f"({d.vehicle_plate}); proof {d.recipient_name or '-'} {d.proof_photo_url or ''}"
                  f"{'; failure: ' + d.failure_reason if d.failure_reason else ''}")
        print(f"stock at {store.code}: on hand {on_hand()} (the failed parcel is back on sale)")
        print(f"courier events stored: {CourierEvent.objects.filter(delivery__fulfillment__in=fulfillments).count()}; "
              f"website events received: {len(site.received)} in {site.deliveries} deliveries; "
              f"ledger differences: {len(stock_ledger_differences())}")


if __name__ == "__main__":
    main()
