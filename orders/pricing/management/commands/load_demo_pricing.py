"""Load (or refresh) the demo chain's commercial policy, so the one-command demo shows prices, promotions, codes and
delivery fees at work. Needs the demo chain (manage.py load_demo_chain) for its stores, cities and SKUs.

Idempotent: every row is created or updated by its code, store groups get their stores set again, and nothing that
counts use (a code's or a promotion's uses, the discount given) is touched; the policy's version is raised once at
the end (orders.pricing.services.policy_changed), so caches and tills' snapshots reload.

What it loads (prices in VND, as a Vietnamese fashion chain would price them):
- store groups: one per city (HCMC, Hanoi, Da Nang) and one store format (the kiosks);
- price lists: "hanoi-prices" for the Hanoi stores, and "weekend-online", the website's prices for the coming
  weekend (Saturday 00:00 to Monday 00:00, chain time; loading again after it moves it to the next weekend);
- promotions: 10% off shirts (stackable), buy 2 get 1 free on T-shirts (exclusive), a beach bundle, spend
  500,000 get 50,000 off, 5% off the cart for gold members, a happy hour at the tills (15:00-17:00 on weekdays,
  store time), and WELCOME50, 50,000 off a cart of 300,000 or more with a code: the open multi-use code WELCOME50
  and a few single-use codes;
- delivery fees from the serving store: up to 3 km 15,000, up to 8 km 25,000, beyond 35,000; free over 700,000
  and for gold members.
"""

import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from inventory.models import Product, Store
from orders.pricing import engine, services
from orders.pricing.exceptions import InvalidPromotion
from orders.pricing.models import Code, DeliveryFeeRule, PriceList, PriceListRow, Promotion, StoreGroup

CITY_GROUPS = (
    ("hcmc", "TP. Hồ Chí Minh", "Ho Chi Minh City"),
    ("hanoi", "Hà Nội", "Hanoi"),
    ("da-nang", "Đà Nẵng", "Da Nang"),
)
KIOSKS = ("kiosks", "Cửa hàng kiosk")  # the small format: every store whose name says Kiosk

HANOI_PRICES = {  # the north pays the freight of goods made in the south
    "AD-LUA-DO-S": 1_350_000, "AD-LUA-DO-M": 1_350_000, "AD-LUA-DO-L": 1_350_000,
    "AD-LUA-TRG-S": 1_350_000, "AD-LUA-TRG-M": 1_350_000, "AD-LUA-TRG-L": 1_350_000,
    "NON-LA-TN-OS": 89_000, "TUI-COI-TN-OS": 249_000,
    "GD-CHAN-XDT-OS": 420_000, "GD-CHAN-HONG-OS": 420_000, "GD-CHAN-TRG-OS": 420_000,
}
WEEKEND_ONLINE_PRICES = {
    **{f"GI-SNK-{colour}-{size}": 590_000 for colour in ("TRG", "DEN", "XNH") for size in range(38, 43)},
    **{f"AL-HOODIE-{colour}-{size}": 399_000 for colour in ("XAM", "DEN") for size in ("S", "M", "L", "XL")},
}
BEACH_BUNDLE = [["NON-LA-TN-OS", 1], ["TUI-COI-TN-OS", 1], ["DEP-LE-XNH-40", 1]]  # 79,000 + 229,000 + 89,000

WELCOME = "WELCOME50"
SINGLE_USE_CODES = 5


def promotions() -> list[dict]:
    """The demo's promotions, as the admin would enter them (each checked by services.check_promotion)."""
    till = settings.PRICING_TILL_CHANNEL
    return [
        {"code": "so-mi-giam-10", "name": "Áo sơ mi giảm 10%", "campaign": "mua-he",
         "kind": engine.Kind.PERCENT_OFF, "target": engine.Target.CATEGORY, "categories": ["ao-so-mi"], "percent": 10,
         "priority": 10},
        {"code": "ao-thun-mua-2-tang-1", "name": "Áo thun: mua 2 tặng 1", "campaign": "mua-he",
         "kind": engine.Kind.BUY_X_GET_Y, "target": engine.Target.CATEGORY, "categories": ["ao-thun"],
         "buy_qty": 2, "get_qty": 1, "percent": 100, "exclusive": True, "priority": 20},
        {"code": "combo-di-bien", "name": "Combo đi biển: nón lá + túi cói + dép lê 329.000 ₫", "campaign": "mua-he",
         "kind": engine.Kind.BUNDLE, "target": engine.Target.SKU, "skus": [sku for sku, _ in BEACH_BUNDLE],
         "bundle": BEACH_BUNDLE, "bundle_price_vnd": 329_000, "priority": 15},
        {"code": "mua-500k-giam-50k", "name": "Mua từ 500.000 ₫ giảm 50.000 ₫", "kind": engine.Kind.SPEND_THRESHOLD,
         "target": engine.Target.CART, "min_spend_vnd": 500_000, "amount_vnd": 50_000, "priority": 30},
        {"code": "hoi-vien-vang-5", "name": "Hội viên Vàng: giảm 5% cả giỏ", "kind": engine.Kind.PERCENT_OFF,
         "target": engine.Target.CART, "percent": 5, "tiers": ["gold"], "priority": 10},
        {"code": "gio-vang-cua-hang", "name": "Giờ vàng tại cửa hàng (15:00–17:00, thứ Hai–thứ Sáu): giảm 10%",
         "kind": engine.Kind.PERCENT_OFF, "target": engine.Target.CART, "percent": 10, "channels": [till],
         "weekdays": [0, 1, 2, 3, 4], "from_time": time(15, 0), "until_time": time(17, 0), "priority": 20},
        {"code": "welcome50", "name": "WELCOME50: giảm 50.000 ₫ cho đơn từ 300.000 ₫", "campaign": "welcome",
         "kind": engine.Kind.AMOUNT_OFF, "target": engine.Target.CART, "amount_vnd": 50_000, "min_spend_vnd": 300_000,
         "requires_code": True, "max_uses": 10_000, "priority": 0},
    ]


FEE_RULES = [  # (code, up to km, fee): beyond the widest band its fee applies
    ("giao-3km", 3, 15_000),
    ("giao-8km", 8, 25_000),
    ("giao-xa", 30, 35_000),
]
FREE_DELIVERY_OVER_VND = 700_000


def single_use_codes() -> list[str]:
    """The same few codes on every run (drawn from a fixed seed, in the alphabet read aloud at tills)."""
    rng = random.Random(WELCOME)
    return [f"{WELCOME}-" + "".join(rng.choice(services.CODE_ALPHABET) for _ in range(6))
            for _ in range(SINGLE_USE_CODES)]


def coming_weekend(now: datetime) -> tuple[datetime, datetime]:
    """Saturday 00:00 to Monday 00:00 of this weekend (when it is one) or the next, in the chain's time zone."""
    local = now.astimezone(ZoneInfo(settings.PRICING_DEFAULT_TIMEZONE))
    saturday = local.date() + timedelta(days=5 - local.weekday())  # a Sunday goes back one day
    start = datetime.combine(saturday, time(0), tzinfo=local.tzinfo)
    return start, start + timedelta(days=2)


class Command(BaseCommand):
    help = "Load (or refresh) the demo pricing policy: store groups, price lists, promotions, codes, delivery fees."

    def handle(self, *args, **options):
        now = timezone.now()
        with transaction.atomic():
            groups = self._groups()
            lists = self._price_lists(groups, now)
            promos = self._promotions()
            codes = self._codes(promos[WELCOME.lower()])
            fees = self._fees()
            version = services.policy_changed()
        self.stdout.write(self.style.SUCCESS(
            f"demo pricing: {len(groups)} store groups, {len(lists)} price lists, {len(promos)} promotions, "
            f"{codes} codes, {fees} delivery fee bands (policy v{version})"
        ))

    def _groups(self) -> dict[str, StoreGroup]:
        if not Store.objects.exists():
            raise CommandError("The demo chain is not loaded: run manage.py load_demo_chain first.")
        groups = {}
        for code, name, city in CITY_GROUPS:
            group, _ = StoreGroup.objects.update_or_create(
                code=code, defaults={"name": name, "basis": StoreGroup.Basis.CITY}
            )
            group.stores.set(Store.objects.filter(city=city))
            groups[code] = group
        code, name = KIOSKS
        group, _ = StoreGroup.objects.update_or_create(code=code, defaults={"name": name, "basis": StoreGroup.Basis.FORMAT})
        group.stores.set(Store.objects.filter(name__icontains="kiosk"))
        groups[code] = group
        return groups

    def _price_lists(self, groups: dict[str, StoreGroup], now: datetime) -> list[PriceList]:
        saturday, monday = coming_weekend(now)
        wanted = [
            ("hanoi-prices", {"name": "Giá Hà Nội", "store_group": groups["hanoi"], "channels": [], "priority": 10,
                              "starts_at": None, "ends_at": None}, HANOI_PRICES),
            ("weekend-online", {"name": "Giá online cuối tuần", "store_group": None, "channels": ["website"],
                                "priority": 20, "starts_at": saturday, "ends_at": monday}, WEEKEND_ONLINE_PRICES),
        ]
        made = []
        for code, fields, prices in wanted:
            products = dict(Product.objects.filter(sku__in=prices).values_list("sku", "pk"))
            missing = sorted(set(prices) - set(products))
            if missing:
                raise CommandError(f"price list {code}: unknown SKUs {', '.join(missing)} (load the demo chain first)")
            price_list, _ = PriceList.objects.update_or_create(
                code=code, defaults={**fields, "is_active": True, "updated_at": now}
            )
            price_list.rows.exclude(product_id__in=products.values()).delete()
            for sku, price in prices.items():
                PriceListRow.objects.update_or_create(price_list=price_list, product_id=products[sku],
                                                      defaults={"price_vnd": price})
            made.append(price_list)
        return made

    def _promotions(self) -> dict[str, Promotion]:
        made = {}
        for data in promotions():
            try:
                services.check_promotion(data)
            except InvalidPromotion as exc:
                raise CommandError(f"promotion {data['code']}: {exc.details}") from exc
            code = data.pop("code")
            promo, _ = Promotion.objects.update_or_create(
                code=code, defaults={**data, "is_active": True, "updated_at": timezone.now()}
            )
            made[code] = promo
        return made

    def _codes(self, promo: Promotion) -> int:
        # The open code anyone may use any number of times (the promotion's own budget caps it), and single-use ones.
        rows = [(WELCOME, None)] + [(text, 1) for text in single_use_codes()]
        for text, max_uses in rows:
            Code.objects.update_or_create(
                code=text, defaults={"promotion": promo, "campaign": promo.campaign, "max_uses": max_uses,
                                     "member_phone": "", "value_vnd": None, "expires_at": None},
            )
        return len(rows)

    def _fees(self) -> int:
        for code, max_km, fee in FEE_RULES:
            DeliveryFeeRule.objects.update_or_create(
                code=code, defaults={"city": "", "max_km": max_km, "fee_vnd": fee, "channels": [],
                                     "free_over_vnd": FREE_DELIVERY_OVER_VND, "free_tiers": ["gold"],
                                     "is_active": True},
            )
        return len(FEE_RULES)
