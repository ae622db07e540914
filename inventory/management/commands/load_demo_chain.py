"""Load the demo chain from fixtures/demo_chain/: stores with opening hours, products, and opening stock."""

import json
import random
from datetime import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from inventory import services
from inventory.models import OpeningHours, Product, Stock, Store

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Command(BaseCommand):
    help = (
        "Load (or refresh) the demo chain: stores and products are created or updated; stock rows are created with "
        "an opening-balance movement only where none exist, so running it twice changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dir", default=str(Path(settings.BASE_DIR) / "fixtures" / "demo_chain"))
        parser.add_argument("--seed", type=int, default=84)

    def handle(self, *args, dir: str, seed: int, **options):
        folder = Path(dir)
        try:
            stores = json.loads((folder / "stores.json").read_text(encoding="utf-8"))
            products = json.loads((folder / "products.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the demo chain in {folder}: {exc}") from exc

        with transaction.atomic():
            for entry in stores:
                store, _ = Store.objects.update_or_create(
                    code=entry["code"],
                    defaults={
                        "name": entry["name"],
                        "address": entry.get("address", ""),
                        "district": entry.get("district", ""),
                        "city": entry["city"],
                        "lat": entry["lat"],
                        "lon": entry["lon"],
                        "timezone": entry.get("timezone", "Asia/Ho_Chi_Minh"),
                        "offers_delivery": entry.get("offers_delivery", True),
                        "offers_pickup": entry.get("offers_pickup", True),
                        "offers_returns": entry.get("offers_returns", True),
                        "delivery_radius_km": entry.get("delivery_radius_km", 8),
                        "picking_capacity_per_hour": entry.get("picking_capacity_per_hour", 30),
                        "is_active": entry.get("is_active", True),
                    },
                )
                store.opening_hours.all().delete()
                OpeningHours.objects.bulk_create(
                    [
                        OpeningHours(store=store, weekday=DAYS.index(day), opens=_time(opens), closes=_time(closes))
                        for day, intervals in entry.get("opening_hours", {}).items()
                        for opens, closes in intervals
                    ]
                )
            for entry in products:
                Product.objects.update_or_create(
                    sku=entry["sku"],
                    defaults={
                        "name": entry["name"],
                        "barcode": entry.get("barcode") or None,
                        "price_vnd": entry["price_vnd"],
                        "category": entry.get("category", ""),
                        "is_active": entry.get("is_active", True),
                    },
                )

        created = services.load_opening_balances(rows=self._opening_stock(seed), actor="demo loader")
        self.stdout.write(
            self.style.SUCCESS(
                f"demo chain: {Store.objects.count()} stores, {Product.objects.count()} products, "
                f"{Stock.objects.count()} stock rows ({created} new)"
            )
        )

    def _opening_stock(self, seed: int):
        """Varied, reproducible stock: most SKUs at most stores, a scarce fifth at a few stores only."""
        rng = random.Random(seed)
        store_ids = list(Store.objects.order_by("code").values_list("pk", flat=True))
        for product_id in Product.objects.order_by("sku").values_list("pk", flat=True):
            scarce = rng.random() < 0.2
            for store_id in store_ids:
                if scarce:
                    on_hand = rng.choice([0, 0, 0, 0, 0, 1, 1, 2])
                    safety = 0
                else:
                    on_hand = rng.choice([0, 2, 3, 5, 8, 12, 20, 35])
                    safety = 1 if on_hand >= 5 else 0
                yield store_id, product_id, on_hand, safety, 10
