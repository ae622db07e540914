"""Reads of stores and stock: nearby stores, their opening status, availability of a cart, network ATP, audits."""

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from geopy.distance import great_circle

from inventory.exceptions import UnknownSku
from inventory.models import OpeningHours, Product, Reservation, Stock, StockMovement, Store

SERVICES = ("delivery", "pickup", "returns")
KM_PER_DEGREE_LAT = 111.32


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


def _bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    dlat = radius_km / KM_PER_DEGREE_LAT
    dlon = radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


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
) -> list[NearbyStore]:
    """Active stores within `radius_km` of the point, nearest first. With service='delivery', only stores whose own
    delivery radius reaches the point."""
    south, north, west, east = _bounding_box(lat, lon, radius_km)
    candidates = Store.objects.filter(is_active=True, lat__gte=south, lat__lte=north, lon__gte=west, lon__lte=east)
    if service == "delivery":
        candidates = candidates.filter(offers_delivery=True)
    elif service == "pickup":
        candidates = candidates.filter(offers_pickup=True)
    elif service == "returns":
        candidates = candidates.filter(offers_returns=True)
    origin = (lat, lon)
    scored = []
    for store_id, s_lat, s_lon, s_radius in candidates.values_list("pk", "lat", "lon", "delivery_radius_km"):
        distance = great_circle(origin, (s_lat, s_lon)).km
        if distance > radius_km or (service == "delivery" and distance > s_radius):
            continue
        scored.append((distance, store_id))
    scored.sort()
    scored = scored[:limit]
    stores = Store.objects.in_bulk([store_id for _, store_id in scored])
    hours = defaultdict(list)
    for interval in OpeningHours.objects.filter(store_id__in=stores.keys()):
        hours[interval.store_id].append(interval)
    at = at or timezone.now()
    result = []
    for distance, store_id in scored:
        store = stores[store_id]
        open_now, next_opening, closes_at = opening_status(hours[store_id], time_zone=store.timezone, at=at)
        result.append(NearbyStore(store, round(distance, 3), open_now, next_opening, closes_at))
    return result


def products_by_sku(skus: Iterable[str]) -> dict[str, Product]:
    """Active products by SKU; raises UnknownSku naming every SKU that is missing or inactive."""
    skus = set(skus)
    found = {p.sku: p for p in Product.objects.filter(sku__in=skus, is_active=True)}
    missing = skus - found.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    return found


def expired_hold_quantities(
    *, store_ids: Iterable[int] | None, product_ids: Iterable[int], now: datetime | None = None
) -> dict[tuple[int, int], int]:
    """Units still counted in Stock.reserved for holds that have already expired (not yet cleaned up)."""
    qs = Reservation.objects.filter(product_id__in=list(product_ids), expires_at__lte=now or timezone.now())
    if store_ids is not None:
        qs = qs.filter(store_id__in=list(store_ids))
    return {
        (row["store_id"], row["product_id"]): row["units"]
        for row in qs.values("store_id", "product_id").annotate(units=Sum("quantity"))
    }


def sellable_online(
    *, store_ids: Sequence[int], product_ids: Sequence[int], now: datetime | None = None
) -> dict[tuple[int, int], int]:
    """Online ATP per (store, product): on_hand - reserved - safety - unavailable, counting only live holds."""
    rows = Stock.objects.filter(store_id__in=store_ids, product_id__in=product_ids).values_list(
        "store_id", "product_id", "on_hand", "reserved", "safety", "unavailable"
    )
    expired = expired_hold_quantities(store_ids=store_ids, product_ids=product_ids, now=now)
    return {
        (s, p): max(0, on_hand - (reserved - expired.get((s, p), 0)) - safety - unavailable)
        for s, p, on_hand, reserved, safety, unavailable in rows
    }


def cart_availability(
    *,
    lat: float,
    lon: float,
    lines: dict[str, int],
    radius_km: float,
    service: str | None = None,
    limit: int = 20,
    only_whole_cart: bool = False,
) -> list[StoreAvailability]:
    """Per nearby store, how many of each SKU it can sell online and whether it can serve the whole cart."""
    products = products_by_sku(lines.keys())
    nearby = stores_near(lat=lat, lon=lon, radius_km=radius_km, service=service, limit=limit if not only_whole_cart else 10**6)
    if not nearby:
        return []
    atp = sellable_online(
        store_ids=[n.store.pk for n in nearby], product_ids=[p.pk for p in products.values()]
    )
    result = []
    for entry in nearby:
        available = {sku: atp.get((entry.store.pk, product.pk), 0) for sku, product in products.items()}
        whole = all(available[sku] >= qty for sku, qty in lines.items())
        if only_whole_cart and not whole:
            continue
        result.append(StoreAvailability(entry, available, whole))
        if len(result) >= limit:
            break
    return result


def network_atp(*, skus: Sequence[str], channel_service: str | None = None) -> dict[str, dict[str, int]]:
    """Network-wide online ATP per SKU over active stores (optionally only stores offering a service), with the
    number of stores that have at least one unit."""
    products = products_by_sku(skus)
    by_pk = {p.pk: sku for sku, p in products.items()}
    stores = Store.objects.filter(is_active=True)
    if channel_service in SERVICES:
        stores = stores.filter(**{f"offers_{channel_service}": True})
    rows = Stock.objects.filter(product_id__in=by_pk.keys(), store__in=stores).values_list(
        "store_id", "product_id", "on_hand", "reserved", "safety", "unavailable"
    )
    expired = expired_hold_quantities(store_ids=None, product_ids=by_pk.keys())
    totals = {sku: {"atp": 0, "stores": 0} for sku in products}
    for s, p, on_hand, reserved, safety, unavailable in rows:
        units = max(0, on_hand - (reserved - expired.get((s, p), 0)) - safety - unavailable)
        if units:
            totals[by_pk[p]]["atp"] += units
            totals[by_pk[p]]["stores"] += 1
    return totals


# --- audit ---------------------------------------------------------------------------------------------------------


@dataclass
class LedgerDifference:
    store_id: int
    product_id: int
    stored: tuple[int, int, int, int]
    ledger: tuple[int, int, int, int]


def stock_ledger_differences(*, limit: int | None = None) -> list[LedgerDifference]:
    """Stock rows whose quantities differ from the sum of their movements (and movements with no stock row).
    One grouped query over the whole ledger, so it runs in seconds on millions of rows."""
    stock = Stock._meta.db_table
    movement = StockMovement._meta.db_table
    sql = f"""
        SELECT COALESCE(s.store_id, m.store_id), COALESCE(s.product_id, m.product_id),
               COALESCE(s.on_hand, 0), COALESCE(s.reserved, 0), COALESCE(s.safety, 0), COALESCE(s.unavailable, 0),
               COALESCE(m.on_hand, 0), COALESCE(m.reserved, 0), COALESCE(m.safety, 0), COALESCE(m.unavailable, 0)
        FROM {stock} s
        FULL OUTER JOIN (
            SELECT store_id, product_id, SUM(delta_on_hand) AS on_hand, SUM(delta_reserved) AS reserved,
                   SUM(delta_safety) AS safety, SUM(delta_unavailable) AS unavailable
            FROM {movement} GROUP BY store_id, product_id
        ) m ON m.store_id = s.store_id AND m.product_id = s.product_id
        WHERE COALESCE(s.on_hand, 0) <> COALESCE(m.on_hand, 0)
           OR COALESCE(s.reserved, 0) <> COALESCE(m.reserved, 0)
           OR COALESCE(s.safety, 0) <> COALESCE(m.safety, 0)
           OR COALESCE(s.unavailable, 0) <> COALESCE(m.unavailable, 0)
    """
    if limit:
        sql += f" LIMIT {int(limit)}"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [LedgerDifference(r[0], r[1], tuple(r[2:6]), tuple(r[6:10])) for r in cursor.fetchall()]


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

