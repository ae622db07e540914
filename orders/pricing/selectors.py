"""Reads: the active policy as the engine's plain data, cached per process and reloaded when its version moves; a
store's snapshot for offline tills; what is left of promotions' budgets."""

import hashlib
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from inventory.models import Product

from . import engine
from .models import Code, DeliveryFeeRule, PolicyVersion, PriceList, PriceListRow, Promotion, StoreGroup

_cache_lock = threading.Lock()
_cached: dict[str, engine.Policy] = {}


def policy_version() -> int:
    return PolicyVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0


def promotion_data(p: Promotion, stores: frozenset[str] | None) -> engine.Promotion:
    return engine.Promotion(
        code=p.code, name=p.name, kind=p.kind, target=p.target, skus=tuple(p.skus or ()),
        categories=tuple(p.categories or ()), percent=p.percent, amount_vnd=p.amount_vnd, buy_qty=p.buy_qty,
        get_qty=p.get_qty, bundle=tuple((str(s), int(q)) for s, q in (p.bundle or ())),
        bundle_price_vnd=p.bundle_price_vnd, min_spend_vnd=p.min_spend_vnd, channels=tuple(p.channels or ()),
        stores=stores, tiers=tuple(p.tiers or ()), starts_at=p.starts_at, ends_at=p.ends_at,
        weekdays=tuple(int(d) for d in (p.weekdays or ())), from_time=p.from_time, until_time=p.until_time,
        exclusive=p.exclusive, priority=p.priority, requires_code=p.requires_code, max_uses=p.max_uses,
        max_uses_per_member=p.max_uses_per_member, max_discount_vnd=p.max_discount_vnd,
    )


def _load(version: int) -> engine.Policy:
    """The policy from its tables in a fixed number of flat reads (no model instance per row: a chain's lists hold
    thousands of rows, its groups hundreds of stores)."""
    base, categories = {}, {}
    for sku, price, category in Product.objects.filter(is_active=True).values_list("sku", "price_vnd", "category"):
        base[sku] = price
        categories[sku] = category
    members: dict[int, set[str]] = {}
    for group_id, code in StoreGroup.stores.through.objects.values_list("storegroup_id", "store__code"):
        members.setdefault(group_id, set()).add(code)
    groups = {gid: frozenset(codes) for gid, codes in members.items()}

    def stores(group_id: int | None) -> frozenset[str] | None:
        return None if group_id is None else groups.get(group_id, frozenset())

    prices: dict[int, dict[str, int]] = {}
    for list_id, sku, price in PriceListRow.objects.filter(price_list__is_active=True).values_list(
        "price_list_id", "product__sku", "price_vnd"
    ):
        prices.setdefault(list_id, {})[sku] = price
    lists = [
        engine.PriceList(
            code=pl.code, prices=prices.get(pl.pk, {}), priority=pl.priority, channels=tuple(pl.channels or ()),
            stores=stores(pl.store_group_id), starts_at=pl.starts_at, ends_at=pl.ends_at,
        )
        for pl in PriceList.objects.filter(is_active=True).order_by("code")
    ]
    promotions = tuple(
        promotion_data(p, stores(p.store_group_id)) for p in Promotion.objects.filter(is_active=True).order_by("code")
    )
    fees = tuple(
        engine.FeeRule(code=r.code, max_km=r.max_km, fee_vnd=r.fee_vnd, city=r.city, channels=tuple(r.channels or ()),
                       free_over_vnd=r.free_over_vnd, free_tiers=tuple(r.free_tiers or ()))
        for r in DeliveryFeeRule.objects.filter(is_active=True).order_by("code")
    )
    return engine.Policy(version=version, base_prices=base, categories=categories, price_lists=tuple(lists),
                         promotions=promotions, fee_rules=fees)


def active_policy() -> engine.Policy:
    """The policy in force, from this process's cache while its version has not moved (one primary-key read). The
    version's time is part of the key: a version row made again (a database restored or flushed) restarts at the
    same number, and must not find the old policy. Base prices live on the products, which the inventory app changes
    without knowing of pricing: every PRICING_PRODUCTS_RECHECK_SECONDS a process compares the products' digest with
    the one the version row keeps, and moves the version when they differ (once, by a conditional update), so that
    every process and every till's snapshot reloads."""
    now = time.monotonic()
    cached = _cached.get("policy")
    # Within PRICING_POLICY_RECHECK_SECONDS of the last look, the cached policy is the answer without a query: a
    # change made elsewhere reaches this process that much later (a change made in this process, at once:
    # policy_changed forgets the cache). Budgets and codes are never cached (budgets_for, the conditional updates).
    if cached is not None and now - _cached.get("looked", float("-inf")) < settings.PRICING_POLICY_RECHECK_SECONDS:
        return cached
    if now - _cached.get("checked", float("-inf")) >= settings.PRICING_PRODUCTS_RECHECK_SECONDS:
        _cached["checked"] = now
        _note_product_changes()
    row = _version_row()
    _cached["looked"] = now
    if cached is not None and _cached.get("key") == row:
        return cached
    with _cache_lock:
        if _cached.get("key") != row or "policy" not in _cached:
            promotion_ids = dict(Promotion.objects.values_list("code", "pk"))
            _cached["policy"] = _load(row[0])
            _cached["promotion_ids"] = promotion_ids
            _cached["uses_tiers"] = _uses_tiers(_cached["policy"])
            _cached["key"] = row
    return _cached["policy"]


def _version_row() -> tuple:
    # A plain statement, valid on PostgreSQL and SQLite: the queryset's own cost was most of this read's.
    with connection.cursor() as cursor:
        cursor.execute("SELECT version, changed_at FROM pricing_policyversion WHERE id = 1")
        row = cursor.fetchone()
    return tuple(row) if row else (0, None)


def _uses_tiers(policy: engine.Policy) -> bool:
    return any(p.tiers for p in policy.promotions) or any(r.free_tiers for r in policy.fee_rules)


def policy_uses_tiers(policy: engine.Policy) -> bool:
    """Does any promotion or fee of this policy depend on a member's tier? (If not, pricing skips the tier read.)"""
    if _cached.get("policy") is policy:
        return _cached["uses_tiers"]
    return _uses_tiers(policy)


def promotion_id(code: str) -> int:
    """The primary key of a promotion of the cached policy (no query while the policy is cached)."""
    ids = _cached.get("promotion_ids") or {}
    if code in ids:
        return ids[code]
    return Promotion.objects.values_list("pk", flat=True).get(code=code)


def member_tier(phone: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tier FROM loyalty_member WHERE phone = %s", [phone])
        row = cursor.fetchone()
    return row[0] if row else None


def products_fingerprint() -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT md5(coalesce(string_agg(sku || ':' || price_vnd || ':' || category || ':' || is_active::text, "
                "',' ORDER BY id), '')) FROM inventory_product"
            )
            return cursor.fetchone()[0]
    digest = hashlib.md5()
    for row in Product.objects.order_by("pk").values_list("sku", "price_vnd", "category", "is_active"):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def _note_product_changes() -> None:
    # A write from a read, on purpose: it is the cache's bookkeeping, not a business change (PolicyVersion's help).
    fingerprint = products_fingerprint()
    if PolicyVersion.objects.filter(pk=1).exclude(products_fingerprint=fingerprint).update(
        version=F("version") + 1, changed_at=timezone.now(), products_fingerprint=fingerprint
    ):
        return
    if not PolicyVersion.objects.filter(pk=1).exists():
        PolicyVersion.objects.get_or_create(pk=1, defaults={"version": 1, "products_fingerprint": fingerprint})


def forget_cached_policy() -> None:
    """Drop this process's cached policy and its last product check (tests, benches)."""
    _cached.clear()


def store_snapshot(policy: engine.Policy, *, store_code: str, channel: str, at: datetime) -> dict:
    """The policy a store's offline till needs: its prices, the price lists and promotions that can apply there
    (this store or every store, the till channel or every channel, not over), and no delivery fees."""

    def here(stores, channels, ends_at) -> bool:
        return ((stores is None or store_code in stores) and (not channels or channel in channels)
                and (ends_at is None or ends_at > at))

    snap = engine.Policy(
        version=policy.version, base_prices=policy.base_prices, categories=policy.categories,
        price_lists=tuple(pl for pl in policy.price_lists if here(pl.stores, pl.channels, pl.ends_at)),
        promotions=tuple(p for p in policy.promotions if here(p.stores, p.channels, p.ends_at)),
    )
    data = engine.policy_to_json(snap)
    # A till needs to know only that its store is in scope: the other stores of a group are not its business.
    for item in data["price_lists"] + data["promotions"]:
        if item["stores"] is not None:
            item["stores"] = [store_code]
    return data


def budgets_for(
    policy: engine.Policy, *, member_phone: str | None, channel: str | None = None, store: str | None = None,
    at: datetime | None = None,
) -> dict[str, engine.Budget]:
    """What is left of the capped promotions' budgets now (one query, plus one for a member's own uses), for those
    that can apply in this channel, at this store and time (none: no query)."""

    def may_apply(p: engine.Promotion) -> bool:
        return ((channel is None or not p.channels or channel in p.channels)
                and (p.stores is None or store is None or store in p.stores)
                and (at is None or ((p.starts_at is None or p.starts_at <= at) and (p.ends_at is None or at < p.ends_at))))

    capped = [p for p in policy.promotions
              if (p.max_uses is not None or p.max_discount_vnd is not None or p.max_uses_per_member is not None)
              and may_apply(p)]
    if not capped:
        return {}
    codes = [p.code for p in capped]
    mine: dict[str, int] = {}
    with connection.cursor() as cursor:  # plain statements: the queryset's own cost was most of this read's
        if member_phone and any(p.max_uses_per_member is not None for p in capped):
            cursor.execute(
                "SELECT p.code, u.uses FROM pricing_promotionmemberuse u JOIN pricing_promotion p ON p.id = "
                "u.promotion_id WHERE u.member_phone = %s AND p.code IN (" + ", ".join(["%s"] * len(codes)) + ")",
                [member_phone, *codes],
            )
            mine = dict(cursor.fetchall())
        cursor.execute(
            "SELECT code, uses, discount_given_vnd FROM pricing_promotion WHERE code IN ("
            + ", ".join(["%s"] * len(codes)) + ")", codes,
        )
        counters = {code: (uses, given) for code, uses, given in cursor.fetchall()}
    out = {}
    for p in capped:
        uses, given = counters.get(p.code, (0, 0))
        out[p.code] = engine.Budget(
            uses_left=None if p.max_uses is None else p.max_uses - uses,
            member_uses_left=None if p.max_uses_per_member is None else p.max_uses_per_member - mine.get(p.code, 0),
            vnd_left=None if p.max_discount_vnd is None else p.max_discount_vnd - given,
        )
    return out


def codes_by_text(texts: list[str]) -> dict[str, Code]:
    return {c.code: c for c in Code.objects.filter(code__in=texts).select_related("promotion")}
