"""Reads of stores and stock: nearby stores, their opening status, availability of a cart, network ATP, audits."""

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Sum
from django.utils import timezone

from inventory.exceptions import UnknownSku
from inventory.models import OpeningHours, Product, Reservation, Stock, StockMovement, Store
from o2o import prepared

SERVICES = ("delivery", "pickup", "returns")
KM_PER_DEGREE_LAT = 111.32


class Interval(NamedTuple):
    """An opening interval as opening_status() reads it, without a model instance."""

    weekday: int
    opens: dtime
    closes: dtime


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


EARTH_RADIUS_KM = 6371.009  # geopy's great_circle radius: the same distances as before, and as the router's


# Named, not `s.*`: a prepared statement whose result columns changed (a migration adding a column while workers
# run) would fail with "cached plan must not change result type".
_STORE_COLUMNS = ", ".join(f"s.{f.column}" for f in Store._meta.concrete_fields)


def _in(values: Iterable) -> tuple[str, list]:
    """`IN (%s, %s, ...)` and its parameters (PostgreSQL and the demo's SQLite alike)."""
    values = list(values) or [None]
    return "(" + ", ".join(["%s"] * len(values)) + ")", values


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

    One raw query measures, filters, orders and limits in the database (the bounding box first, so the lat/lon index
    narrows it): measuring every store of the box in Python (~300 in central HCMC on a 1,000-store chain) and reading
    the nearest again cost ~10 ms a request, the ORM's compilation of the expression more than the database's work."""
    south, north, west, east = _bounding_box(lat, lon, radius_km)
    service_filter = f"AND s.offers_{service}" if service in SERVICES else ""  # a fixed column name, not input
    delivery_filter = "AND distance_km <= delivery_radius_km" if service == "delivery" else ""
    postgres = connections[using].vendor == "postgresql"
    # On PostgreSQL the opening hours of the chosen stores come in the same round trip.
    # As text, in a fixed order: stores with the same opening pattern get the same string, so each pattern is parsed
    # and worked out once per call, not once per store.
    hours_column = f""", (SELECT json_agg(json_build_array(h.weekday, h.opens, h.closes)
                                   ORDER BY h.weekday, h.opens, h.closes)::text
                         FROM {OpeningHours._meta.db_table} h WHERE h.store_id = candidates.id) AS hours_json""" if postgres else ""
    generic_plans = f", {prepared.GENERIC_PLANS} AS generic_plans" if prepared.enabled(using) else ""
    sql = f"""
        SELECT *{hours_column}{generic_plans} FROM (
            SELECT {_STORE_COLUMNS}, 2 * %s * ASIN(SQRT(POWER(SIN((RADIANS(s.lat) - %s) / 2), 2)
                        + %s * COS(RADIANS(s.lat)) * POWER(SIN((RADIANS(s.lon) - %s) / 2), 2))) AS distance_km
            FROM {Store._meta.db_table} s
            WHERE s.is_active AND s.lat BETWEEN %s AND %s AND s.lon BETWEEN %s AND %s {service_filter}
        ) candidates
        WHERE distance_km <= %s {delivery_filter}
        ORDER BY distance_km, id
        LIMIT %s
    """
    params = [EARTH_RADIUS_KM, math.radians(lat), math.cos(math.radians(lat)), math.radians(lon),
              south, north, west, east, radius_km, limit]
    at = at or timezone.now()
    statuses: dict[tuple, tuple] = {}  # a chain has a handful of opening patterns: each is worked out once per call
    if postgres:
        stores = _prepared_stores(sql, params, using=using)
        result = []
        for store in stores:
            pattern = (store.timezone, store.hours_json)
            status = statuses.get(pattern)
            if status is None:
                intervals = [
                    Interval(weekday, dtime.fromisoformat(opens), dtime.fromisoformat(closes))
                    for weekday, opens, closes in json.loads(store.hours_json or "[]")
                ]
                status = statuses[pattern] = opening_status(intervals, time_zone=store.timezone, at=at)
            result.append(NearbyStore(store, round(store.distance_km, 3), *status))
        return result
    stores = list(Store.objects.raw(sql, params, using=using))
    hours = defaultdict(list)
    if stores:
        # Plain rows with .weekday/.opens/.closes: opening_status needs no model instances.
        for interval in OpeningHours.objects.using(using).filter(store_id__in=[s.pk for s in stores]).order_by().values_list(
            "store_id", "weekday", "opens", "closes", named=True
        ):
            hours[interval.store_id].append(interval)
    result = []
    for store in stores:
        intervals = hours[store.pk]
        pattern = (store.timezone, tuple(sorted((i.weekday, i.opens, i.closes) for i in intervals)))
        status = statuses.get(pattern)
        if status is None:
            status = statuses[pattern] = opening_status(intervals, time_zone=store.timezone, at=at)
        open_now, next_opening, closes_at = status
        result.append(NearbyStore(store, round(store.distance_km, 3), open_now, next_opening, closes_at))
    return result


def _prepared_stores(sql: str, params: list, *, using: str) -> list[Store]:
    """The rows of the stores query as Store instances (with distance_km and hours_json set), read through a prepared
    statement: Store.objects.raw would have PostgreSQL plan the statement again on every request."""
    with prepared.cursor(using) as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    concrete = {f.attname for f in Store._meta.concrete_fields}
    fields = [i for i, name in enumerate(names) if name in concrete]
    extras = [(i, name) for i, name in enumerate(names) if name not in concrete and name != "generic_plans"]
    field_names = [names[i] for i in fields]
    stores = []
    for row in rows:
        store = Store.from_db(using, field_names, [row[i] for i in fields])
        for i, name in extras:
            setattr(store, name, row[i])
        stores.append(store)
    return stores


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
    db = connections[using]
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            cursor.execute(f"SELECT sku, id FROM {Product._meta.db_table} WHERE sku = ANY(%s) AND is_active ORDER BY sku", [list(skus)])
        else:
            marks, params = _in(skus)
            cursor.execute(f"SELECT sku, id FROM {Product._meta.db_table} WHERE sku IN {marks} AND is_active ORDER BY sku", params)
        found = dict(cursor.fetchall())
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
    """Online ATP per (store, product): on_hand - reserved - safety - unavailable, counting only live holds.
    One query: the units of expired holds still counted in `reserved` (until the clean-up releases them) are joined
    in instead of read in a second round trip."""
    if not store_ids or not product_ids:
        return {}
    if connections[using].vendor == "postgresql":
        # Arrays keep the statement text constant, so the driver parses it once per process, not per request.
        stores_in, store_params = "= ANY(%s)", [list(store_ids)]
        products_in, product_params = "= ANY(%s)", [list(product_ids)]
    else:
        stores_in, store_params = _in(store_ids)
        products_in, product_params = _in(product_ids)
        stores_in, products_in = f"IN {stores_in}", f"IN {products_in}"
    sql = f"""
        SELECT s.store_id, s.product_id,
               s.on_hand - (s.reserved - COALESCE(r.units, 0)) - s.safety - s.unavailable
        FROM {Stock._meta.db_table} s
        LEFT JOIN (
            SELECT store_id, product_id, SUM(quantity) AS units FROM {Reservation._meta.db_table}
            WHERE expires_at <= %s AND store_id {stores_in} AND product_id {products_in}
            GROUP BY store_id, product_id
        ) r ON r.store_id = s.store_id AND r.product_id = s.product_id
        WHERE s.store_id {stores_in} AND s.product_id {products_in}
    """
    params = [now or timezone.now(), *store_params, *product_params, *store_params, *product_params]
    with prepared.cursor(using) as cursor:
        cursor.execute(sql, params)
        return {(s, p): max(0, units) for s, p, units in cursor.fetchall()}


def sellable_online_by_sku(
    *, store_ids: Sequence[int], skus: Iterable[str], now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """(ids of the active products among `skus`, online ATP per (store, sku)) in one statement: the products are
    joined by SKU inside the stock query, as the framework floor does, instead of read in a round trip of their own.
    Every active SKU comes back at least once (the stock join is a LEFT JOIN), so the caller still learns which SKUs
    are unknown. ATP is counted as in sellable_online()."""
    skus = list(dict.fromkeys(skus))
    if connections[using].vendor == "postgresql":
        stores_in, store_params = "= ANY(%s)", [list(store_ids)]
        skus_in, sku_params = "= ANY(%s)", [skus]
    else:
        stores_in, store_params = _in(store_ids)
        skus_in, sku_params = _in(skus)
        stores_in, skus_in = f"IN {stores_in}", f"IN {skus_in}"
    product, stock, reservation = Product._meta.db_table, Stock._meta.db_table, Reservation._meta.db_table
    sql = f"""
        SELECT p.sku, p.id, s.store_id,
               s.on_hand - (s.reserved - COALESCE(r.units, 0)) - s.safety - s.unavailable
        FROM {product} p
        LEFT JOIN {stock} s ON s.product_id = p.id AND s.store_id {stores_in}
        LEFT JOIN (
            SELECT h.store_id, h.product_id, SUM(h.quantity) AS units
            FROM {reservation} h JOIN {product} hp ON hp.id = h.product_id
            WHERE h.expires_at <= %s AND h.store_id {stores_in} AND hp.sku {skus_in}
            GROUP BY h.store_id, h.product_id
        ) r ON r.store_id = s.store_id AND r.product_id = s.product_id
        WHERE p.sku {skus_in} AND p.is_active
    """
    params = [*store_params, now or timezone.now(), *store_params, *sku_params, *sku_params]
    found: dict[str, int] = {}
    atp: dict[tuple[int, str], int] = {}
    with prepared.cursor(using) as cursor:
        cursor.execute(sql, params)
        for sku, product_id, store_id, units in cursor.fetchall():
            found[sku] = product_id
            if store_id is not None:
                atp[store_id, sku] = max(0, units)
    return found, atp


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
    number of stores that have at least one unit."""
    products = products_by_sku(skus, using=using)
    by_pk = {p.pk: sku for sku, p in products.items()}
    stores = Store.objects.using(using).filter(is_active=True)
    if channel_service in SERVICES:
        stores = stores.filter(**{f"offers_{channel_service}": True})
    rows = Stock.objects.using(using).filter(product_id__in=by_pk.keys(), store__in=stores).values_list(
        "store_id", "product_id", "on_hand", "reserved", "safety", "unavailable"
    )
    expired = expired_hold_quantities(store_ids=None, product_ids=by_pk.keys(), using=using)
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

