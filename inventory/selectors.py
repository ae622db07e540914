"""Reads of stores and stock: nearby stores, their opening status, availability of a cart, network ATP, audits."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Sum
from django.utils import timezone

from inventory import fast_paths
from inventory.exceptions import UnknownSku
from inventory.fast_paths import (  # noqa: F401 - public here too; defined beside the statement that uses them
    EARTH_RADIUS_KM,
    KM_PER_DEGREE_LAT,
    SERVICES,
    Interval,
)
from inventory.models import OpeningHours, Product, Reservation, Stock, StockMovement, Store


@dataclass
class NearbyStore:
    store: Store
    distance_km: float
    open_now: bool = False
    next_opening: datetime | None = None
    closes_at: datetime | None = None


@dataclass
class StoreAvailability:
    nearby: NearbyStore
    available: dict[str, int] = field(default_factory=dict)  # sku -> units sellable online
    serves_whole_cart: bool = False


def opening_status(
    intervals: Iterable[OpeningHours], *, time_zone: str, at: datetime
) -> tuple[bool, datetime | None, datetime | None]:
    """(open now, next opening if closed, closing time if open) of a store with these opening intervals, in the
    store's own time zone."""
    tz = ZoneInfo(time_zone or "Asia/Ho_Chi_Minh")
    local = at.astimezone(tz)
    by_weekday: dict[int, list[OpeningHours]] = defaultdict(list)
    for interval in intervals:
        by_weekday[interval.weekday].append(interval)
    for day_offset in range(0, 8):
        day = (local + timedelta(days=day_offset)).date()
        for interval in sorted(by_weekday.get(day.weekday(), []), key=lambda i: i.opens):
            opens = datetime.combine(day, interval.opens, tzinfo=tz)
            closes = datetime.combine(day, interval.closes, tzinfo=tz)
            if day_offset == 0 and opens <= local < closes:
                return True, None, closes
            if opens > local:
                return False, opens, None
    return False, None, None


def stores_near(
    *,
    lat: float,
    lon: float,
    radius_km: float,
    service: str | None = None,
    limit: int = 20,
    at: datetime | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> list[NearbyStore]:
    """Active stores within `radius_km` of the point, nearest first. With service='delivery', only stores whose own
    delivery radius reaches the point. `using`, here and below: the database alias to read (the website's
    lag-tolerant endpoints pass o2o.replicas' alias; every other caller reads the primary).

    One raw query (inventory/fast_paths.py: nearby_stores) measures, filters, orders and limits in the database."""
    at = at or timezone.now()
    statuses: dict[tuple, tuple] = {}  # a chain has a handful of opening patterns: each is worked out once per call
    result = []
    for store, pattern, intervals in fast_paths.nearby_stores(
        lat=lat, lon=lon, radius_km=radius_km, service=service, limit=limit, using=using
    ):
        status = statuses.get((store.timezone, pattern))
        if status is None:
            status = statuses[store.timezone, pattern] = opening_status(intervals, time_zone=store.timezone, at=at)
        result.append(NearbyStore(store, round(store.distance_km, 3), *status))
    return result


def products_by_sku(skus: Iterable[str], *, using: str = DEFAULT_DB_ALIAS) -> dict[str, Product]:
    """Active products by SKU; raises UnknownSku naming every SKU that is missing or inactive."""
    skus = set(skus)
    found = {p.sku: p for p in Product.objects.using(using).filter(sku__in=skus, is_active=True)}
    missing = skus - found.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    return found


def product_ids_by_sku(skus: Iterable[str], *, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Ids of active products by SKU (without building model instances); raises UnknownSku like products_by_sku."""
    skus = set(skus)
    found = fast_paths.active_product_ids(skus, using=using)
    missing = skus - found.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    return found


def expired_hold_quantities(
    *,
    store_ids: Iterable[int] | None,
    product_ids: Iterable[int],
    now: datetime | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> dict[tuple[int, int], int]:
    """Units still counted in Stock.reserved for holds that have already expired (not yet cleaned up)."""
    qs = Reservation.objects.using(using).filter(product_id__in=list(product_ids), expires_at__lte=now or timezone.now())
    if store_ids is not None:
        qs = qs.filter(store_id__in=list(store_ids))
    return {
        (row["store_id"], row["product_id"]): row["units"]
        for row in qs.values("store_id", "product_id").annotate(units=Sum("quantity"))
    }


def sellable_online(
    *, store_ids: Sequence[int], product_ids: Sequence[int], now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> dict[tuple[int, int], int]:
    """Online ATP per (store, product): on_hand - reserved - safety - unavailable, counting only live holds, and 0
    while the row's shortfall waits for a count. One query: the units of expired holds still counted in `reserved`
    (until the clean-up releases them) are joined in instead of read in a second round trip."""
    if not store_ids or not product_ids:
        return {}
    return fast_paths.sellable_online(
        store_ids=store_ids, product_ids=product_ids, now=now or timezone.now(), using=using
    )


def sellable_online_by_sku(
    *, store_ids: Sequence[int], skus: Iterable[str], now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """(ids of the active products among `skus`, online ATP per (store, sku)) in one statement: the products are
    joined by SKU inside the stock query, as the framework floor does, instead of read in a round trip of their own.
    Every active SKU comes back at least once (the stock join is a LEFT JOIN), so the caller still learns which SKUs
    are unknown. ATP is counted as in sellable_online()."""
    return fast_paths.sellable_online_by_sku(
        store_ids=store_ids, skus=list(dict.fromkeys(skus)), now=now or timezone.now(), using=using
    )


def cart_availability(
    *,
    lat: float,
    lon: float,
    lines: dict[str, int],
    radius_km: float,
    service: str | None = None,
    limit: int = 20,
    only_whole_cart: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> list[StoreAvailability]:
    """Per nearby store, how many of each SKU it can sell online and whether it can serve the whole cart.
    Raises UnknownSku (naming every SKU missing or inactive) whether or not any store is near."""
    nearby = stores_near(
        lat=lat, lon=lon, radius_km=radius_km, service=service, limit=limit if not only_whole_cart else 10**6, using=using
    )
    if not nearby:
        product_ids_by_sku(lines.keys(), using=using)  # no stock to read, but an unknown SKU is still an error
        return []
    found, atp = sellable_online_by_sku(store_ids=[n.store.pk for n in nearby], skus=lines.keys(), using=using)
    missing = lines.keys() - found.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    skus = sorted(found)  # the order product_ids_by_sku gave: the `available` keys come out in SKU order
    result = []
    for entry in nearby:
        store_id = entry.store.pk
        available = {sku: atp.get((store_id, sku), 0) for sku in skus}
        whole = all(available[sku] >= qty for sku, qty in lines.items())
        if only_whole_cart and not whole:
            continue
        result.append(StoreAvailability(entry, available, whole))
        if len(result) >= limit:
            break
    return result


def network_atp(
    *, skus: Sequence[str], channel_service: str | None = None, using: str = DEFAULT_DB_ALIAS
) -> dict[str, dict[str, int]]:
    """Network-wide online ATP per SKU over active stores (optionally only stores offering a service), with the
    number of stores that have at least one unit. A row whose shortfall waits for a count adds nothing."""
    products = products_by_sku(skus, using=using)
    by_pk = {p.pk: sku for sku, p in products.items()}
    stores = Store.objects.using(using).filter(is_active=True)
    if channel_service in SERVICES:
        stores = stores.filter(**{f"offers_{channel_service}": True})
    rows = Stock.objects.using(using).filter(product_id__in=by_pk.keys(), store__in=stores).values_list(
        "store_id", "product_id", "on_hand", "reserved", "safety", "unavailable", "shortfall"
    )
    expired = expired_hold_quantities(store_ids=None, product_ids=by_pk.keys(), using=using)
    totals = {sku: {"atp": 0, "stores": 0} for sku in products}
    for s, p, on_hand, reserved, safety, unavailable, shortfall in rows:
        if shortfall > 0:
            continue
        units = max(0, on_hand - (reserved - expired.get((s, p), 0)) - safety - unavailable)
        if units:
            totals[by_pk[p]]["atp"] += units
            totals[by_pk[p]]["stores"] += 1
    return totals


# --- audit ---------------------------------------------------------------------------------------------------------


STATES = ("on_hand", "reserved", "safety", "unavailable", "shortfall")  # every stored state, each a sum of deltas


@dataclass
class LedgerDifference:
    """A stock row whose stored states (in STATES order) differ from the sums of its movements' deltas."""

    store_id: int
    product_id: int
    stored: tuple[int, int, int, int, int]
    ledger: tuple[int, int, int, int, int]


def stock_ledger_differences(*, limit: int | None = None) -> list[LedgerDifference]:
    """Stock rows whose quantities (on_hand, reserved, safety, unavailable, shortfall) differ from the sum of their
    movements (and movements with no stock row). One grouped query over the whole ledger, so it runs in seconds on
    millions of rows."""
    stock = Stock._meta.db_table
    movement = StockMovement._meta.db_table
    stored = ", ".join(f"COALESCE(s.{state}, 0)" for state in STATES)
    summed = ", ".join(f"COALESCE(m.{state}, 0)" for state in STATES)
    sums = ", ".join(f"SUM(delta_{state}) AS {state}" for state in STATES)
    differs = "\n           OR ".join(f"COALESCE(s.{state}, 0) <> COALESCE(m.{state}, 0)" for state in STATES)
    sql = f"""
        SELECT COALESCE(s.store_id, m.store_id), COALESCE(s.product_id, m.product_id), {stored}, {summed}
        FROM {stock} s
        FULL OUTER JOIN (
            SELECT store_id, product_id, {sums}
            FROM {movement} GROUP BY store_id, product_id
        ) m ON m.store_id = s.store_id AND m.product_id = s.product_id
        WHERE {differs}
    """
    if limit:
        sql += f" LIMIT {int(limit)}"
    n = len(STATES)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [LedgerDifference(r[0], r[1], tuple(r[2:2 + n]), tuple(r[2 + n:2 + 2 * n])) for r in cursor.fetchall()]


def reservation_differences(*, limit: int | None = None) -> list[tuple[int, int, int, int]]:
    """(store_id, product_id, Stock.reserved, sum of reservations) where the two disagree."""
    stock = Stock._meta.db_table
    reservation = Reservation._meta.db_table
    sql = f"""
        SELECT s.store_id, s.product_id, s.reserved, COALESCE(r.units, 0)
        FROM {stock} s
        LEFT JOIN (SELECT store_id, product_id, SUM(quantity) AS units FROM {reservation}
                   GROUP BY store_id, product_id) r
          ON r.store_id = s.store_id AND r.product_id = s.product_id
        WHERE s.reserved <> COALESCE(r.units, 0)
    """
    if limit:
        sql += f" LIMIT {int(limit)}"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [tuple(r) for r in cursor.fetchall()]

