"""The issue's bench policy on a bench chain: 200 active promotions and 5,000 price-list rows (25 lists of 200 SKUs,
scoped by city group, store format and channel, some with validity periods), 10 categories over the SKUs, delivery
fee bands per city. Promotions are of every kind and scope, in a chain's proportions: 120 on products (percent or
amount off), 20 on a category, 20 buy-2-get-1 on product families, 10 bundles, and 30 on the cart (spend
thresholds, percent off, tier-only, happy hours, code-only campaigns); 15 % exclusive, a few with budget caps (big
enough that the bench never exhausts them, so every use of them takes the capped-budget path).

    from bench.pricing.policy import load_bench_policy, clear_policy
    load_bench_policy(seed=7)      # replaces any pricing policy in the database
    clear_policy()                 # no price lists, promotions or fees: base prices only
"""

import random
from datetime import time, timedelta

CATEGORIES = [f"cat-{i:02d}" for i in range(10)]


def clear_policy() -> None:
    from orders.pricing import services
    from orders.pricing.models import (
        Code,
        CodeUse,
        DeliveryFeeRule,
        PriceException,
        PriceList,
        Promotion,
        PromotionApplication,
        PromotionMemberUse,
        StoreGroup,
    )

    for model in (CodeUse, Code, PromotionApplication, PromotionMemberUse, PriceException, Promotion, PriceList,
                  DeliveryFeeRule, StoreGroup):
        model.objects.all().delete()
    services.policy_changed()


def load_bench_policy(*, seed: int, promotions: int = 200, lists: int = 25, rows_per_list: int = 200) -> dict:
    """Replace the pricing policy with the bench's. Returns counts."""
    from django.db import transaction
    from django.utils import timezone

    from inventory.models import Product, Store
    from orders.pricing import services
    from orders.pricing.engine import Kind, Target
    from orders.pricing.models import DeliveryFeeRule, PriceList, PriceListRow, Promotion, StoreGroup

    rng = random.Random(seed)
    now = timezone.now()
    clear_policy()
    with transaction.atomic():
        products = list(Product.objects.order_by("sku").values_list("pk", "sku", "price_vnd"))
        by_cat: dict[str, list[int]] = {c: [] for c in CATEGORIES}
        for i, (pk, _, _) in enumerate(products):
            by_cat[CATEGORIES[i % len(CATEGORIES)]].append(pk)
        for cat, pks in by_cat.items():
            Product.objects.filter(pk__in=pks).update(category=cat)
        groups = []
        for city in Store.objects.values_list("city", flat=True).distinct().order_by("city"):
            g = StoreGroup.objects.create(code=f"city-{city.lower()}", name=f"City {city}", basis="city")
            g.stores.set(Store.objects.filter(city=city))
            groups.append(g)
        store_ids = list(Store.objects.order_by("pk").values_list("pk", flat=True))
        for n, share in (("format-mall", 0.2), ("format-street", 0.5)):
            g = StoreGroup.objects.create(code=n, name=n, basis="format")
            g.stores.set(rng.sample(store_ids, int(len(store_ids) * share)))
            groups.append(g)

        rows = []
        for i in range(lists):
            pl = PriceList.objects.create(
                code=f"list-{i:02d}", name=f"Price list {i}", priority=rng.randint(0, 5),
                channels=rng.choice([[], ["website"], ["store"], ["website", "store"]]),
                store_group=rng.choice([None, *groups]),
                starts_at=now - timedelta(days=rng.randint(1, 30)) if rng.random() < 0.5 else None,
                ends_at=now + timedelta(days=rng.randint(1, 60)) if rng.random() < 0.5 else None,
            )
            for pk, _, price in rng.sample(products, min(rows_per_list, len(products))):
                rows.append(PriceListRow(price_list=pl, product_id=pk, price_vnd=price * rng.choice([85, 90, 95]) // 100))
        PriceListRow.objects.bulk_create(rows, batch_size=5000)

        made = []
        # A chain's mix: most promotions are the week's deals on products (the leaflet), some on a category or a
        # product family (buy 2 get 1), a few bundles, and a handful on the whole cart (spend thresholds, a tier's
        # discount, a happy hour at the tills, coupon campaigns).
        mix = [("sku_pct", 70), ("sku_amt", 50), ("cat_pct", 20), ("bxgy", 20), ("bundle", 10), ("spend", 5),
               ("cart_pct", 5), ("tier", 5), ("happy", 5), ("code", 10)]
        kinds = [k for k, n in mix for _ in range(n)]
        rng.shuffle(kinds)
        for i in range(promotions):
            k = kinds[i % len(kinds)]
            pick = rng.sample(products, 3)
            common = dict(
                code=f"promo-{i:03d}", name=f"Promotion {i} ({k})", priority=rng.randint(0, 9),
                channels=rng.choice([[], ["website"], ["store"], ["website", "store"]]),
                store_group=rng.choice([None, None, *groups]), exclusive=rng.random() < 0.15,
                starts_at=now - timedelta(days=rng.randint(0, 10)), ends_at=now + timedelta(days=rng.randint(5, 40)),
            )
            if k == "sku_pct":
                p = Promotion(kind=Kind.PERCENT_OFF, target=Target.SKU, skus=[s for _, s, _ in pick],
                              percent=rng.choice([5, 10, 15, 20]), **common)
            elif k == "sku_amt":
                p = Promotion(kind=Kind.AMOUNT_OFF, target=Target.SKU, skus=[s for _, s, _ in pick],
                              amount_vnd=min(x for _, _, x in pick) // 10, **common)
            elif k == "cat_pct":
                p = Promotion(kind=Kind.PERCENT_OFF, target=Target.CATEGORY, categories=[rng.choice(CATEGORIES)],
                              percent=rng.choice([5, 10]), **common)
            elif k == "cart_pct":
                p = Promotion(kind=Kind.PERCENT_OFF, target=Target.CART, percent=rng.choice([2, 3, 5]),
                              min_spend_vnd=rng.choice([300_000, 500_000, 1_000_000]), **common)
            elif k == "spend":
                p = Promotion(kind=Kind.SPEND_THRESHOLD, target=Target.CART, min_spend_vnd=500_000,
                              amount_vnd=rng.choice([30_000, 50_000]), **common)
            elif k == "bxgy":
                p = Promotion(kind=Kind.BUY_X_GET_Y, target=Target.SKU, skus=[s for _, s, _ in pick],
                              buy_qty=2, get_qty=1, percent=rng.choice([50, 100]), **common)
            elif k == "bundle":
                p = Promotion(kind=Kind.BUNDLE, target=Target.SKU, bundle=[[s, 1] for _, s, _ in pick[:2]],
                              bundle_price_vnd=(pick[0][2] + pick[1][2]) * 85 // 100, **common)
            elif k == "tier":
                p = Promotion(kind=Kind.PERCENT_OFF, target=Target.CART, tiers=["gold"], percent=5, **common)
            elif k == "happy":
                p = Promotion(kind=Kind.PERCENT_OFF, target=Target.CATEGORY, categories=[rng.choice(CATEGORIES)],
                              percent=10, weekdays=[0, 1, 2, 3, 4], from_time=time(15), until_time=time(17), **common)
            else:
                p = Promotion(kind=Kind.AMOUNT_OFF, target=Target.CART, amount_vnd=20_000, requires_code=True,
                              min_spend_vnd=200_000, **common)
            if i % 40 == 1:  # a few capped budgets, never exhausted by a bench run
                p.max_uses, p.max_discount_vnd = 10_000_000, 10**12
            made.append(p)
        Promotion.objects.bulk_create(made)

        fees = []
        for city in Store.objects.order_by("city").values_list("city", flat=True).distinct():
            for km, fee in ((3, 15_000), (6, 22_000), (10, 30_000)):
                fees.append(DeliveryFeeRule(code=f"fee-{city.lower()}-{km}", city=city, max_km=km, fee_vnd=fee,
                                            free_over_vnd=700_000, free_tiers=["gold"]))
        fees.append(DeliveryFeeRule(code="fee-any", max_km=20, fee_vnd=35_000))
        DeliveryFeeRule.objects.bulk_create(fees)
        services.policy_changed()
    return {"promotions": len(made), "price_list_rows": len(rows), "price_lists": lists, "fee_rules": len(fees),
            "store_groups": len(groups)}
