"""The selectors patch proposed to the owner of inventory/selectors.py, as code the benchmark can measure.

Installed only when O2O_BENCH_PROPOSED=1 (bench/availability/urls.py): it replaces `stores_near` and
`sellable_online` in inventory.selectors with these versions, which return the same answers:

- stores_near: the great-circle distance, the radius filters, the ordering and the limit move into one raw SQL
  query that reads the stores (bounding box first, so the index still narrows it), instead of fetching every store
  in the box (~330 in central Ho Chi Minh City on the 1,000-store chain), measuring each with geopy in Python
  (~45 µs each) and then reading the 20 nearest again with in_bulk. One query and ~20 rows instead of two
  queries, ~330 rows and ~330 geopy objects.
- opening hours are read as plain rows, not ~150 model instances per request.
- sellable_online: one raw SQL query; the expired-hold correction is joined in instead of a second round trip.
Raw SQL because the ORM's compilation of these two queries (a dozen-node expression tree, a correlated subquery)
cost more than the database did: ~5 ms and ~6 ms per request against ~1.5 ms each as raw SQL.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.utils import timezone

from inventory import selectors
from inventory.models import OpeningHours, Reservation, Stock, Store

EARTH_RADIUS_KM = 6371.009  # geopy's great_circle radius, so distances match the current implementation


def _in(values: Sequence) -> tuple[str, list]:
    """`IN (%s, %s, ...)` and its parameters (works on PostgreSQL and on the demo's SQLite alike)."""
    values = list(values) or [None]
    return "(" + ", ".join(["%s"] * len(values)) + ")", values


def stores_near(*, lat: float, lon: float, radius_km: float, service: str | None = None, limit: int = 20,
                at: datetime | None = None) -> list[selectors.NearbyStore]:
    """Active stores within `radius_km` of the point, nearest first. With service='delivery', only stores whose own
    delivery radius reaches the point. One query: the bounding box narrows by index, the database measures,
    filters, orders and limits."""
    south, north, west, east = selectors._bounding_box(lat, lon, radius_km)
    table = Store._meta.db_table
    service_filter = f"AND offers_{service}" if service in selectors.SERVICES else ""  # a fixed column name
    delivery_filter = "AND distance_km <= delivery_radius_km" if service == "delivery" else ""
    sql = f"""
        SELECT * FROM (
            SELECT s.*, 2 * %s * ASIN(SQRT(POWER(SIN((RADIANS(s.lat) - %s) / 2), 2)
                        + %s * COS(RADIANS(s.lat)) * POWER(SIN((RADIANS(s.lon) - %s) / 2), 2))) AS distance_km
            FROM {table} s
            WHERE s.is_active AND s.lat BETWEEN %s AND %s AND s.lon BETWEEN %s AND %s {service_filter}
        ) candidates
        WHERE distance_km <= %s {delivery_filter}
        ORDER BY distance_km, id
        LIMIT %s
    """
    params = [EARTH_RADIUS_KM, math.radians(lat), math.cos(math.radians(lat)), math.radians(lon),
              south, north, west, east, radius_km, limit]
    stores = list(Store.objects.raw(sql, params))
    hours = defaultdict(list)
    # Plain rows with .weekday/.opens/.closes rather than a hundred-odd model instances per request.
    for interval in OpeningHours.objects.filter(store_id__in=[s.pk for s in stores]).order_by().values_list(
        "store_id", "weekday", "opens", "closes", named=True
    ):
        hours[interval.store_id].append(interval)
    at = at or timezone.now()
    result = []
    for store in stores:
        open_now, next_opening, closes_at = selectors.opening_status(hours[store.pk], time_zone=store.timezone, at=at)
        result.append(selectors.NearbyStore(store, round(store.distance_km, 3), open_now, next_opening, closes_at))
    return result


def sellable_online(*, store_ids: Sequence[int], product_ids: Sequence[int], now: datetime | None = None
                    ) -> dict[tuple[int, int], int]:
    """Online ATP per (store, product): on_hand - reserved - safety - unavailable, counting only live holds.
    One query: the units of expired holds still counted in `reserved` are joined in."""
    stores_in, store_params = _in(store_ids)
    products_in, product_params = _in(product_ids)
    sql = f"""
        SELECT s.store_id, s.product_id,
               s.on_hand - (s.reserved - COALESCE(r.units, 0)) - s.safety - s.unavailable
        FROM {Stock._meta.db_table} s
        LEFT JOIN (
            SELECT store_id, product_id, SUM(quantity) AS units FROM {Reservation._meta.db_table}
            WHERE expires_at <= %s AND store_id IN {stores_in} AND product_id IN {products_in}
            GROUP BY store_id, product_id
        ) r ON r.store_id = s.store_id AND r.product_id = s.product_id
        WHERE s.store_id IN {stores_in} AND s.product_id IN {products_in}
    """
    params = [now or timezone.now(), *store_params, *product_params, *store_params, *product_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(s, p): max(0, units) for s, p, units in cursor.fetchall()}


def install() -> None:
    selectors.stores_near = stores_near
    selectors.sellable_online = sellable_online
