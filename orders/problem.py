"""Builds routing problems (the JSON of routing-problem.md) from the database. Reads only; no writes.

The service around the router loads the problem here and applies the plan in orders.services. Candidate stores are
active, offer the method, reach the point (their own delivery radius, or the pickup search radius), and hold at least
one unit of the cart online. At most k of them go to the router: the nearest that can serve the whole cart first, then
the nearest partial ones (useful only for splits). Capacity is the picking capacity of the slot minus the order lines
already assigned there.
"""

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models import F, Max, Sum

from inventory.models import OpeningHours, Reservation, Stock, Store
from inventory.selectors import expired_hold_quantities, opening_status
from o2o import prepared
from orders.models import Fulfillment, FulfillmentStatus

KM_PER_DEGREE_LAT = 111.32
OPEN_LOAD_STATUSES = (FulfillmentStatus.ASSIGNED, FulfillmentStatus.PICKING)


class Interval(NamedTuple):
    """An opening interval, as opening_status() reads it (without building model instances)."""

    weekday: int
    opens: dtime
    closes: dtime


@dataclass
class Candidate:
    store_id: int
    code: str
    name: str
    lat: float
    lon: float
    distance_km: float
    delivery_radius_km: float
    methods: list[str]
    capacity_per_hour: int
    stock: dict[int, int] = field(default_factory=dict)  # product_id -> units sellable online
    load: int = 0  # open order lines already assigned in the slot
    open_now: bool = False
    closes_at: datetime | None = None
    next_opening: datetime | None = None
    time_zone: str = "Asia/Ho_Chi_Minh"

    def capacity(self, slot_hours: float) -> int:
        return max(0, int(self.capacity_per_hour * slot_hours) - self.load)

    def serves_whole(self, lines: dict[int, int]) -> bool:
        return all(self.stock.get(pid, 0) >= qty for pid, qty in lines.items())


def _bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    dlat = radius_km / KM_PER_DEGREE_LAT
    dlon = radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def load_candidates(
    *,
    lat: float,
    lon: float,
    lines: dict[int, int],
    method: str,
    at: datetime,
    radius_km: float | None = None,
    k: int | None = None,
    slot_hours: float = 2,
    exclude_store_ids: Iterable[int] = (),
    only_store_ids: Iterable[int] | None = None,
    only_whole_cart: bool = False,
    extra_stock: dict[tuple[int, int], int] | None = None,
    extra_capacity: dict[int, int] | None = None,
) -> list[Candidate]:
    """Candidate stores for a cart (`lines`: product_id -> qty) at a point, nearest first within each group.

    `extra_stock` / `extra_capacity` add back units and lines the caller's own orders hold (a wave re-optimising
    orders that already reserved)."""
    exclude = set(exclude_store_ids)
    radius = radius_km if radius_km is not None else widest_delivery_radius_km()
    south, north, west, east = _bounding_box(lat, lon, radius)
    limit = k or settings.O2O_ROUTING_K_CANDIDATES
    if connection.vendor == "postgresql" and only_store_ids is None and not extra_stock:
        return _nearest_candidates_postgres(
            lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius, box=(south, north, west, east),
            exclude=exclude, k=limit, slot_hours=slot_hours, only_whole_cart=only_whole_cart,
            extra_capacity=extra_capacity,
        )
    if connection.vendor == "postgresql":
        found = _stores_with_stock_postgres(
            lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius,
            box=(south, north, west, east), only_store_ids=only_store_ids, exclude=exclude,
        )
    else:
        found = _stores_with_stock_orm(
            lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius,
            box=(south, north, west, east), only_store_ids=only_store_ids, exclude=exclude,
        )
    if not found:
        return []
    for (store_id, product_id), units in (extra_stock or {}).items():
        if store_id in found:
            found[store_id].stock[product_id] = found[store_id].stock.get(product_id, 0) + units
    whole, partial = [], []
    wanted = list(lines.items())
    for c in found.values():
        stock_of = c.stock
        if not stock_of or not any(stock_of.get(pid, 0) > 0 for pid, _ in wanted):
            continue  # holds nothing of the cart
        if all(stock_of.get(pid, 0) >= qty for pid, qty in wanted):
            whole.append(c)
        elif not only_whole_cart:
            partial.append(c)
    whole.sort(key=_nearest_first)
    partial.sort(key=_nearest_first)
    chosen = whole[:limit] + partial[:limit]  # partial stores only matter for splits
    if not chosen:
        return []
    ids = [c.store_id for c in chosen]
    if connection.vendor == "postgresql":
        hours, load = _hours_and_load_postgres(store_ids=ids, at=at, slot_hours=slot_hours)
    else:
        hours = defaultdict(list)
        for store_id, weekday, opens, closes in OpeningHours.objects.filter(store_id__in=ids).values_list(
            "store_id", "weekday", "opens", "closes"
        ):
            hours[store_id].append(Interval(weekday, opens, closes))
        load = slot_load(store_ids=ids, at=at, slot_hours=slot_hours)
    for c in chosen:
        c.open_now, c.next_opening, c.closes_at = opening_status(hours[c.store_id], time_zone=c.time_zone, at=at)
        c.load = max(0, load.get(c.store_id, 0) - (extra_capacity or {}).get(c.store_id, 0))
    return chosen


def _nearest_first(c: "Candidate") -> tuple[float, str]:
    return c.distance_km, c.code


def _stores_with_stock_orm(*, lat, lon, lines, method, at, radius, box, only_store_ids, exclude) -> dict[int, "Candidate"]:
    south, north, west, east = box
    stores = Store.objects.filter(is_active=True)
    if only_store_ids is not None:
        stores = stores.filter(pk__in=list(only_store_ids))
    else:
        stores = stores.filter(lat__gte=south, lat__lte=north, lon__gte=west, lon__lte=east)
    if method == "delivery":
        stores = stores.filter(offers_delivery=True)
    elif method == "pickup":
        stores = stores.filter(offers_pickup=True)
    found: dict[int, Candidate] = {}
    for pk, code, name, s_lat, s_lon, s_radius, delivers, picks, cap, tz in stores.values_list(*_STORE_COLUMNS):
        if pk in exclude:
            continue
        distance = great_circle_km(lat, lon, s_lat, s_lon)
        if only_store_ids is None and (distance > radius or (method == "delivery" and distance > s_radius)):
            continue
        methods = [m for m, on in (("delivery", delivers), ("pickup", picks)) if on]
        found[pk] = Candidate(pk, code, name, s_lat, s_lon, round(distance, 3), s_radius, methods, cap, time_zone=tz)
    if found:
        for (store_id, product_id), units in online_stock(store_ids=list(found), product_ids=list(lines), at=at).items():
            found[store_id].stock[product_id] = units
    return found  # stores without units stay: a wave adds back what its own orders hold


_STORE_COLUMNS = (
    "id", "code", "name", "lat", "lon", "delivery_radius_km", "offers_delivery", "offers_pickup",
    "picking_capacity_per_hour", "timezone",
)


def _stores_with_stock_postgres(
    *, lat, lon, lines, method, at, radius, box, only_store_ids, exclude
) -> dict[int, "Candidate"]:
    """One query: stores in the box and within reach (great circle computed in SQL) joined to their sellable stock
    rows for the cart, with the units of expired holds (still counted in `reserved` until the cleanup releases them)
    added back per row, so only live holds count."""
    south, north, west, east = box
    store_table, stock_table = Store._meta.db_table, Stock._meta.db_table
    hold_table = Reservation._meta.db_table
    where = ["s.is_active"]
    params: dict = {"lat": lat, "lon": lon, "pids": list(lines), "radius": radius, "r": EARTH_RADIUS_KM, "at": at}
    if only_store_ids is not None:
        where.append("s.id = ANY(%(only)s)")
        params["only"] = list(only_store_ids)
    else:
        where.append("s.lat BETWEEN %(south)s AND %(north)s AND s.lon BETWEEN %(west)s AND %(east)s")
        params.update(south=south, north=north, west=west, east=east)
    if method == "delivery":
        where.append("s.offers_delivery")
    elif method == "pickup":
        where.append("s.offers_pickup")
    reach = "TRUE" if only_store_ids is not None else (
        "d.km <= %(radius)s" + (" AND d.km <= d.delivery_radius_km" if method == "delivery" else "")
    )
    columns = ", ".join(f"s.{c}" for c in _STORE_COLUMNS)
    # Expired holds: a correlated sum over the (product, store, expires_at) index, only for rows with reservations.
    sql = f"""
        WITH d AS (
            SELECT {columns},
                   2 * %(r)s * asin(least(1, sqrt(
                       power(sin(radians(s.lat - %(lat)s) / 2), 2)
                       + cos(radians(%(lat)s)) * cos(radians(s.lat)) * power(sin(radians(s.lon - %(lon)s) / 2), 2)
                   ))) AS km
            FROM {store_table} s WHERE {" AND ".join(where)}
        )
        SELECT d.id, d.code, d.name, d.lat, d.lon, d.delivery_radius_km, d.offers_delivery, d.offers_pickup,
               d.picking_capacity_per_hour, d.timezone, d.km, st.product_id,
               st.on_hand - st.reserved - st.safety - st.unavailable + CASE WHEN st.reserved > 0 THEN COALESCE((
                   SELECT sum(h.quantity) FROM {hold_table} h
                   WHERE h.product_id = st.product_id AND h.store_id = st.store_id AND h.expires_at <= %(at)s
               ), 0) ELSE 0 END AS units
        FROM d JOIN {stock_table} st ON st.store_id = d.id AND st.product_id = ANY(%(pids)s)
        WHERE {reach} AND st.on_hand > st.safety + st.unavailable
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found: dict[int, Candidate] = {}
    for pk, code, name, s_lat, s_lon, s_radius, delivers, picks, cap, tz, km, pid, units in rows:
        if pk in exclude:
            continue
        candidate = found.get(pk)
        if candidate is None:
            methods = [m for m, on in (("delivery", delivers), ("pickup", picks)) if on]
            candidate = found[pk] = Candidate(
                pk, code, name, s_lat, s_lon, round(km, 3), s_radius, methods, cap, time_zone=tz
            )
        if units > 0:
            candidate.stock[pid] = int(units)
    return found  # stores without units stay: a wave adds back what its own orders hold


def _nearest_candidates_postgres(
    *, lat, lon, lines, method, at, radius, box, exclude, k, slot_hours, only_whole_cart, extra_capacity
) -> list["Candidate"]:
    """load_candidates in one prepared statement, for the checkout path (no stores pinned, no units added back).

    Stores within reach are read nearest first, and only as far as needed: up to the k-th nearest store that serves
    the whole cart (so the whole-cart candidates are exactly the general path's), and at least the SCAN_FACTOR × k
    nearest stores holding any of it, among which the k nearest partial ones are taken (they only matter for
    splits). In central Ho Chi Minh City a point reaches ~400 stores: looking up each one's stock for the cart was
    most of a placement's database time, and reading the ~1,000 rows back a large part of its Python time. Opening
    hours and the slot's load come in the same statement, for the chosen stores only.

    The nearest-first reading relies on the plan keeping the order of `reach` through the lateral join (a sort would
    make PostgreSQL read every store, with the same answer); tests/orders/test_candidates_fast_path.py checks both
    the answer against the general path and that few stores are read."""
    south, north, west, east = box
    wanted = sorted(lines.items())
    params = {
        "lat": lat, "lon": lon, "radius": radius, "r": EARTH_RADIUS_KM, "at": at,
        "south": south, "north": north, "west": west, "east": east,
        "pids": [pid for pid, _ in wanted], "qtys": [qty for _, qty in wanted], "n": len(wanted),
        "exclude": sorted(exclude), "k": k, "whole_only": only_whole_cart,
        "statuses": [str(s) for s in OPEN_LOAD_STATUSES], "until": at + timedelta(hours=slot_hours),
    }
    method_filter = {"delivery": "AND s.offers_delivery", "pickup": "AND s.offers_pickup"}.get(method, "")
    reach = "km <= %(radius)s" + (" AND km <= delivery_radius_km" if method == "delivery" else "")
    columns = ", ".join(f"s.{c}" for c in _STORE_COLUMNS)
    tables = {
        "store": Store._meta.db_table, "stock": Stock._meta.db_table, "hold": Reservation._meta.db_table,
        "hours": OpeningHours._meta.db_table,
        "fulfillment": Fulfillment._meta.db_table,
    }
    generic_plans = f", {prepared.GENERIC_PLANS}" if prepared.enabled() else ""
    sql = f"""
        WITH expired AS MATERIALIZED (
            /* expired holds are rare (the cleanup releases them within a minute): one look at the expiry index
               spares a lookup per stock row (min() reads one end of the index, whatever the plan's estimates) */
            SELECT coalesce((SELECT min(expires_at) FROM {tables["hold"]}) <= %(at)s, false) AS any_expired
        ), reach AS (
            SELECT * FROM (
                SELECT {columns},
                       2 * %(r)s * asin(least(1, sqrt(
                           power(sin(radians(s.lat - %(lat)s) / 2), 2)
                           + cos(radians(%(lat)s)) * cos(radians(s.lat)) * power(sin(radians(s.lon - %(lon)s) / 2), 2)
                       ))) AS km
                FROM {tables["store"]} s
                WHERE s.is_active {method_filter} AND NOT s.id = ANY(%(exclude)s::bigint[])
                  AND s.lat BETWEEN %(south)s AND %(north)s AND s.lon BETWEEN %(west)s AND %(east)s
                OFFSET 0  /* computes km once per store, not once per use */
            ) d
            WHERE {reach}
            ORDER BY round(km::numeric, 3), code
        ), held AS MATERIALIZED (
            /* computed only as far as the two queries below read it, nearest first */
            SELECT x.*, row_number() OVER () AS held_rank FROM (
                SELECT reach.*, a.pids, a.units, a.whole
                FROM reach CROSS JOIN LATERAL (
                    SELECT array_agg(u.product_id) AS pids, array_agg(u.units) AS units,
                           count(*) FILTER (WHERE u.units >= u.qty) = %(n)s AS whole
                    FROM (
                        SELECT st.product_id, w.qty,
                               st.on_hand - st.reserved - st.safety - st.unavailable
                               + CASE WHEN st.reserved > 0 AND (SELECT any_expired FROM expired) THEN
                                   COALESCE((SELECT sum(h.quantity) FROM {tables["hold"]} h
                                             WHERE h.product_id = st.product_id AND h.store_id = st.store_id
                                               AND h.expires_at <= %(at)s), 0)
                               ELSE 0 END AS units
                        FROM {tables["stock"]} st
                        JOIN unnest(%(pids)s::bigint[], %(qtys)s::bigint[]) AS w (product_id, qty)
                          ON w.product_id = st.product_id
                        WHERE st.store_id = reach.id AND st.product_id = ANY(%(pids)s::bigint[])
                          AND st.on_hand > st.safety + st.unavailable
                    ) u
                    WHERE u.units > 0
                ) a
                WHERE a.pids IS NOT NULL
            ) x
        ), whole AS (
            SELECT * FROM held WHERE held.whole LIMIT %(k)s
        ), partial AS (
            /* among the stores read up to the k-th whole-cart one, and at least the `scan` nearest */
            SELECT * FROM (
                SELECT * FROM held LIMIT CASE WHEN (SELECT count(*) FROM whole) < %(k)s THEN NULL
                                              ELSE greatest((SELECT max(held_rank) FROM whole), %(scan)s) END
            ) h
            WHERE NOT h.whole AND NOT %(whole_only)s
            LIMIT %(k)s
        ), chosen AS (
            SELECT * FROM whole UNION ALL SELECT * FROM partial
        )
        SELECT chosen.id, chosen.code, chosen.name, chosen.lat, chosen.lon, chosen.delivery_radius_km,
               chosen.offers_delivery, chosen.offers_pickup, chosen.picking_capacity_per_hour, chosen.timezone,
               chosen.km, chosen.pids, chosen.units, hours.weekdays, hours.opens, hours.closes,
               (SELECT coalesce(sum(f.line_count), 0) FROM {tables["fulfillment"]} f
                WHERE f.store_id = chosen.id AND f.status = ANY(%(statuses)s) AND f.promised_by < %(until)s)
               {generic_plans}
        FROM chosen
        LEFT JOIN LATERAL (
            SELECT array_agg(h.weekday ORDER BY h.id) AS weekdays, array_agg(h.opens ORDER BY h.id) AS opens,
                   array_agg(h.closes ORDER BY h.id) AS closes
            FROM {tables["hours"]} h WHERE h.store_id = chosen.id
        ) hours ON TRUE
        ORDER BY chosen.whole DESC, chosen.held_rank
    """
    # One line, without the indentation: under 4,096 characters psycopg caches the statement's parsing.
    sql = " ".join(sql.split())
    with prepared.cursor() as cursor:
        cursor.execute(sql, {**params, "scan": SCAN_FACTOR * k})
        rows = cursor.fetchall()
    chosen = []
    for pk, code, name, s_lat, s_lon, s_radius, delivers, picks, cap, tz, km, pids, units, weekdays, opens, closes, load, *_ in rows:
        methods = [m for m, on in (("delivery", delivers), ("pickup", picks)) if on]
        c = Candidate(
            pk, code, name, s_lat, s_lon, round(km, 3), s_radius, methods, cap, dict(zip(pids, units, strict=True)),
            time_zone=tz,
        )
        intervals = [Interval(*i) for i in zip(weekdays, opens, closes, strict=True)] if weekdays else []
        c.open_now, c.next_opening, c.closes_at = opening_status(intervals, time_zone=tz, at=at)
        c.load = max(0, load - (extra_capacity or {}).get(pk, 0))
        chosen.append(c)
    return chosen


SCAN_FACTOR = 3  # stores holding any of the cart read per candidate wanted, before the fast path stops reading


def _hours_and_load_postgres(
    *, store_ids: Sequence[int], at: datetime, slot_hours: float
) -> tuple[dict[int, list[Interval]], dict[int, int]]:
    """Opening hours and slot load (see slot_load) of these stores in one round trip."""
    hours_table, f_table = OpeningHours._meta.db_table, Fulfillment
    sql = f"""
        SELECT h.store_id, h.weekday, h.opens, h.closes, NULL::bigint
        FROM {hours_table} h WHERE h.store_id = ANY(%(ids)s)
        UNION ALL
        SELECT f.store_id, NULL, NULL, NULL, sum(f.line_count)
        FROM {f_table._meta.db_table} f
        WHERE f.store_id = ANY(%(ids)s) AND f.status = ANY(%(statuses)s) AND f.promised_by < %(until)s
        GROUP BY f.store_id
    """
    params = {
        "ids": list(store_ids),
        "statuses": [str(s) for s in OPEN_LOAD_STATUSES],
        "until": at + timedelta(hours=slot_hours),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    hours: dict[int, list[Interval]] = defaultdict(list)
    load: dict[int, int] = {}
    for store_id, weekday, opens, closes, n in rows:
        if n is None:
            hours[store_id].append(Interval(weekday, opens, closes))
        else:
            load[store_id] = n
    return hours, load


EARTH_RADIUS_KM = 6371.009  # geopy's great_circle and the router use the same mean radius
_widest: tuple[float, float] = (0.0, 0.0)  # (computed at, km)


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))


def widest_delivery_radius_km() -> float:
    """The largest delivery radius of any active store (the search box), re-read at most once a minute, and
    never more than O2O_ROUTING_SEARCH_RADIUS_KM."""
    global _widest
    now = time.monotonic()
    if now - _widest[0] > 60 or _widest[1] == 0:
        widest = Store.objects.filter(is_active=True).aggregate(m=Max("delivery_radius_km"))["m"] or 0.0
        _widest = (now, float(widest))
    return min(max(_widest[1], 0.1), settings.O2O_ROUTING_SEARCH_RADIUS_KM)


def online_stock(*, store_ids: Sequence[int], product_ids: Sequence[int], at: datetime) -> dict[tuple[int, int], int]:
    """Online ATP (on_hand - reserved - safety - unavailable, live holds only) of the rows that have any, per
    (store, product). Rows with nothing sellable are filtered out in the database."""
    rows = Stock.objects.filter(
        store_id__in=store_ids, product_id__in=product_ids, on_hand__gt=F("safety") + F("unavailable")
    ).values_list("store_id", "product_id", "on_hand", "reserved", "safety", "unavailable")
    rows = list(rows)
    if not rows:
        return {}
    expired = expired_hold_quantities(store_ids={r[0] for r in rows}, product_ids=product_ids, now=at)
    out = {}
    for s, p, on_hand, reserved, safety, unavailable in rows:
        units = on_hand - (reserved - expired.get((s, p), 0)) - safety - unavailable
        if units > 0:
            out[(s, p)] = units
    return out


def slot_load(*, store_ids: Sequence[int], at: datetime, slot_hours: float) -> dict[int, int]:
    """Open order lines (assigned or picking) promised before the end of the slot, per store."""
    until = at + timedelta(hours=slot_hours)
    return dict(
        Fulfillment.objects.filter(store_id__in=store_ids, status__in=OPEN_LOAD_STATUSES, promised_by__lt=until)
        .values_list("store_id")
        .annotate(n=Sum("line_count"))
        .values_list("store_id", "n")
    )


# --- timing ---------------------------------------------------------------------------------------------------------


def travel_minutes(distance_km: float) -> float:
    return distance_km / max(settings.O2O_COURIER_KMH, 1) * 60


def pick_minutes(candidate: Candidate) -> float:
    """Picking and packing one order, after the lines already queued at the store."""
    queue = candidate.load / max(candidate.capacity_per_hour, 1) * 60
    return settings.O2O_PICK_MINUTES + queue


def ready_time(candidate: Candidate, *, at: datetime, hours: list | None = None) -> datetime:
    """When the store can have the order packed: now (or its next opening) plus the pick time; if it would close
    first, from its next opening."""
    minutes = timedelta(minutes=pick_minutes(candidate))
    if candidate.open_now and candidate.closes_at and at + minutes <= candidate.closes_at:
        return at + minutes
    start = candidate.next_opening
    if start is None and candidate.closes_at is not None:
        # open now but closing too soon: the next opening after closing time
        intervals = hours if hours is not None else list(OpeningHours.objects.filter(store_id=candidate.store_id))
        after = candidate.closes_at + timedelta(seconds=1)
        _, start, _ = opening_status(intervals, time_zone=candidate.time_zone, at=after)
    if start is None:
        return at + timedelta(days=7)  # no opening hours configured: a week, say
    return start + minutes


# --- the problem JSON -----------------------------------------------------------------------------------------------


@dataclass
class OrderSpec:
    """One order in a routing problem: its id in the problem, its lines (product_id -> qty), and its candidates."""

    id: str
    method: str
    lines: dict[int, int]
    candidates: list[Candidate]
    lat: float | None = None
    lon: float | None = None
    allow_split: bool = True
    pickup_store: str | None = None


def build_problem(
    *, orders: Sequence[OrderSpec], skus: dict[int, str], slot_hours: float = 2, time_limit_s: float | None = None
) -> dict:
    """The routing problem for these orders. Each delivery order lists its candidates explicitly as `options`
    (cost = distance in km, workload = number of lines), so the router never needs the database or a geodesic."""
    stores: dict[int, Candidate] = {}
    for spec in orders:
        for c in spec.candidates:
            stores.setdefault(c.store_id, c)
    product_ids = sorted({pid for spec in orders for pid in spec.lines})
    problem_orders = []
    for spec in orders:
        lines = [{"sku": skus[pid], "qty": qty} for pid, qty in sorted(spec.lines.items())]
        entry: dict = {"id": spec.id, "method": spec.method, "lines": lines, "workload": len(lines)}
        if spec.method == "pickup":
            entry["pickup_store"] = spec.pickup_store
        else:
            entry.update(lat=spec.lat, lon=spec.lon, allow_split=spec.allow_split)
            entry["options"] = [
                {"store": c.code, "cost": round(c.distance_km, 3), "workload": len(lines)} for c in spec.candidates
            ]
        problem_orders.append(entry)
    problem = {
        "stores": [
            {
                "id": c.code,
                "lat": c.lat,
                "lon": c.lon,
                "capacity": c.capacity(slot_hours),
                "methods": c.methods,
                "delivery_radius_km": c.delivery_radius_km,
            }
            for c in stores.values()
        ],
        "stock": [
            {"store": c.code, "sku": skus[pid], "qty": c.stock[pid]}
            for c in stores.values()
            for pid in product_ids
            if c.stock.get(pid, 0) > 0
        ],
        "orders": problem_orders,
        "settings": {"time_limit_s": time_limit_s if time_limit_s is not None else settings.O2O_ROUTER_TIME_LIMIT_S},
    }
    return problem


def candidate_summary(candidates: Sequence[Candidate], *, lines: dict[int, int], skus: dict[int, str], slot_hours: float,
                      chosen: set[str]) -> list[dict]:
    """What the admin and the order detail show for each candidate store."""
    out = []
    for c in candidates:
        whole = c.serves_whole(lines)
        capacity = c.capacity(slot_hours)
        if c.code in chosen:
            note = "chosen"
        elif not whole:
            note = "lacks stock for the whole cart"
        elif capacity < len(lines):
            note = "no picking capacity in the slot"
        else:
            note = "farther / costlier"
        out.append(
            {
                "store": c.code,
                "name": c.name,
                "distance_km": c.distance_km,
                "stock": {skus[pid]: c.stock.get(pid, 0) for pid in sorted(lines)},
                "whole_cart": whole,
                "capacity": capacity,
                "open_now": c.open_now,
                "score": round(c.distance_km, 3),
                "chosen": c.code in chosen,
                "note": note,
            }
        )
    return out
