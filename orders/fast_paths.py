"""The orders app's PostgreSQL fast paths, each beside its ORM twin (o2o/fast_paths.py says why there are two).

Each fast path is a chooser, the name the callers use, and two twins side by side: `_<name>_sql`, the hand-written
PostgreSQL statement (every checkout and placement runs it), and `_<name>_orm`, the same through the ORM on any
database (the SQLite demo; the parity tests force it with `o2o.fast_paths.orm_twins()`). Both give the same answer and
write the same rows: tests/orders/test_fast_paths.py runs each pair on PostgreSQL on the same inputs.

    active_products       a cart's products by SKU (UnknownSku for the missing)
    store_place           a store's time zone and city (the selling store an order is priced at)
    write_placement       a placed order's rows: order (and its number), lines, fulfillments, their lines, decision
    stores_with_stock     the stores in reach with the cart's units they can sell online
    hours_and_load        the opening hours and picking load of the chosen stores
    nearest_candidates    checkout's candidate stores in one statement that stops reading stores once it has enough;
                          its twin is candidates_in_reach, the general path (stores_with_stock, then hours_and_load)
                          that reads every store in reach: the same whole-cart stores, and as partial stores a
                          nearest-first prefix of the general path's (tests/orders/test_candidates_fast_path.py)

Reads only, but for write_placement (and undo_placement, which takes back what write_placement wrote when the
reservation after it fails inside the caller's transaction, where there is no savepoint to roll back to).
"""

import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from inventory.exceptions import UnknownSku
from inventory.models import OpeningHours, Product, Reservation, Stock, Store
from inventory.selectors import opening_status, products_by_sku
from o2o import prepared
from o2o.fast_paths import use_sql
from orders.candidate_stores import (
    EARTH_RADIUS_KM,
    OPEN_LOAD_STATUSES,
    STORE_COLUMNS,
    Candidate,
    Interval,
    candidate_from_store_row,
    great_circle_km,
    nearest_first,
)
from orders.models import Fulfillment, FulfillmentLine, Order, OrderLine, RoutingDecision
from orders.selectors import online_units, slot_load

# --- a cart's products ------------------------------------------------------------------------------------------------


def active_products(skus: Iterable[str]) -> dict[str, Product]:
    """The active products of these SKUs by SKU; raises UnknownSku (422) naming the others."""
    return _active_products_sql(skus) if use_sql() else _active_products_orm(skus)


def _active_products_sql(skus: Iterable[str]) -> dict[str, Product]:
    """products_by_sku in one written-out statement: the same instances (Model.from_db) and the same UnknownSku,
    without the queryset compiler, which cost more CPU than the query on every placement and promise."""
    skus = set(skus)
    names = _product_columns()
    with prepared.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(connection.ops.quote_name(c) for c in names.values())} FROM {Product._meta.db_table}"
            " WHERE sku = ANY(%s) AND is_active",
            [list(skus)],
        )
        rows = cursor.fetchall()
    fields = list(names)
    found = {p.sku: p for p in (Product.from_db(connection.alias, fields, row) for row in rows)}
    missing = skus - found.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    return found


@functools.cache
def _product_columns() -> dict[str, str]:
    return {f.attname: f.column for f in Product._meta.concrete_fields}


def _active_products_orm(skus: Iterable[str]) -> dict[str, Product]:
    return products_by_sku(skus)


# --- the store an order is priced at -------------------------------------------------------------------------------


def store_place(store_id: int) -> tuple[str, str]:
    """(time zone, city) of a store: an order is priced in its selling store's local time, and a delivery fee zoned
    by city reads the city. Raises Store.DoesNotExist."""
    return _store_place_sql(store_id) if use_sql() else _store_place_orm(store_id)


def _store_place_sql(store_id: int) -> tuple[str, str]:
    """One prepared statement: the queryset's compiler cost about four times the query (~0.4 ms of CPU a
    placement on the bench machine, against ~0.1 ms)."""
    with prepared.cursor() as cursor:
        cursor.execute(f"SELECT timezone, city FROM {Store._meta.db_table} WHERE id = %s", [store_id])
        row = cursor.fetchone()
    if row is None:
        raise Store.DoesNotExist(f"No store {store_id}.")
    return row[0], row[1]


def _store_place_orm(store_id: int) -> tuple[str, str]:
    time_zone, city = Store.objects.filter(pk=store_id).values_list("timezone", "city").get()
    return time_zone, city


# --- a placed order's rows ------------------------------------------------------------------------------------------


def write_placement(
    order: Order, prefix: str, lines: list[OrderLine], fulfillments: list[Fulfillment],
    f_lines: list[list[FulfillmentLine]], decision: RoutingDecision,
) -> None:
    """Insert a placed order with its lines, fulfillments (in the order given), their lines and its routing
    decision; the order number is PREFIX-000123 from the order's id. Sets the primary keys and relations on the
    instances."""
    if use_sql():
        _write_placement_sql(order, prefix, lines, fulfillments, f_lines, decision)
    else:
        _write_placement_orm(order, prefix, lines, fulfillments, f_lines, decision)


def _write_placement_orm(
    order: Order, prefix: str, lines: list[OrderLine], fulfillments: list[Fulfillment],
    f_lines: list[list[FulfillmentLine]], decision: RoutingDecision,
) -> None:
    order.number = f"tmp-{uuid.uuid4().hex[:24]}"
    order.save(force_insert=True)
    order.number = f"{prefix}-{order.pk:06d}"
    Order.objects.filter(pk=order.pk).update(number=order.number)
    for line in lines:
        line.order = order
    OrderLine.objects.bulk_create(lines)
    for f, fl in zip(fulfillments, f_lines, strict=True):
        f.order = order
        f.save(force_insert=True)
        for line in fl:
            line.fulfillment = f
        FulfillmentLine.objects.bulk_create(fl)
    decision.order = order
    decision.save(force_insert=True)


def _columns(model, obj, *, skip: tuple[str, ...] = ()) -> tuple[list[str], list[str], list]:
    """Column names, placeholders and values of a model instance as Django's INSERT would send them (defaults,
    JSON adaptation, ...), every concrete field but the primary key and `skip`."""
    names, marks, values = [], [], []
    for f, name, null in _insert_fields(model, skip):
        value = f.get_db_prep_save(f.pre_save(obj, True), connection)
        names.append(name)
        if value is None:
            marks.append(null)
        else:
            marks.append("%s")
            values.append(value)
    return names, marks, values


@functools.cache
def _insert_fields(model, skip: tuple[str, ...]) -> tuple[tuple[Any, str, str], ...]:
    """(field, quoted column, typed NULL) of the columns _columns writes: fixed per model, and looking them up
    (quote_name, db_type) for every field of every row was a measurable share of a placement's CPU."""
    return tuple(
        (f, connection.ops.quote_name(f.column), f"NULL::{f.db_type(connection)}")
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in skip
    )


def _recordset(model, objs, *, skip, extra: dict[str, tuple[str, list]] | None = None) -> tuple[list[str], str, str]:
    """Several instances of one model as one JSON parameter for jsonb_to_recordset(): (quoted column names, the
    record's column definitions, the JSON text). One parameter per table whatever the number of rows: the statement
    keeps one text (one prepared statement for any cart) and few parameters (psycopg caches its parsing), and
    json.dumps writes the rows faster than psycopg adapts a parameter per cell or an array per column. `extra`:
    columns that are not the model's (name -> (SQL type, one value per row)), e.g. the store to join on."""
    fields = _insert_fields(model, skip)
    names, definitions = _record_columns(model, skip)
    extra = extra or {}
    rows = []
    for i, obj in enumerate(objs):
        row = {f.column: f.get_db_prep_save(f.pre_save(obj, True), connection) for f, _name, _null in fields}
        for name, (_type, values) in extra.items():
            row[name] = values[i]
        rows.append(row)
    extra_definitions = "".join(f", {name} {sql_type}" for name, (sql_type, _values) in extra.items())
    return names, definitions + extra_definitions, json.dumps(rows, default=_json_value)


@functools.cache
def _record_columns(model, skip: tuple[str, ...]) -> tuple[list[str], str]:
    fields = _insert_fields(model, skip)
    return [name for _f, name, _null in fields], ", ".join(f"{name} {f.db_type(connection)}" for f, name, _null in fields)


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()  # with its offset: jsonb_to_recordset reads it as timestamptz
    raise TypeError(f"{type(value).__name__} is not a column value placement writes")


def _write_placement_sql(
    order: Order, prefix: str, lines: list[OrderLine], fulfillments: list[Fulfillment],
    f_lines: list[list[FulfillmentLine]], decision: RoutingDecision,
) -> None:
    """Insert a placed order with its lines, fulfillments, fulfillment lines and routing decision in one
    statement; the order number (PREFIX-000123) comes from the order's id in the same statement. Sets the primary
    keys on the instances."""
    o_cols, o_marks, o_params = _columns(Order, order, skip=("number",))
    ol_cols, ol_defs, ol_rows = _recordset(OrderLine, lines, skip=("order",))
    f_cols, f_defs, f_rows = _recordset(Fulfillment, fulfillments, skip=("order",))
    flat = [line for fl in f_lines for line in fl]
    stores = [f.store_id for f, fl in zip(fulfillments, f_lines, strict=True) for _ in fl]
    fl_cols, fl_defs, fl_rows = _recordset(FulfillmentLine, flat, skip=("fulfillment",), extra={"store": ("bigint", stores)})
    d_cols, d_marks, d_params = _columns(RoutingDecision, decision, skip=("order",))
    t = {m: m._meta.db_table for m in (Order, OrderLine, Fulfillment, FulfillmentLine, RoutingDecision)}
    sql = f"""
        WITH n AS (SELECT nextval(pg_get_serial_sequence('{t[Order]}', 'id')) AS id),
        o AS (
            INSERT INTO {t[Order]} (id, number, {", ".join(o_cols)})
            SELECT n.id, %s || '-' || CASE WHEN n.id < 1000000 THEN lpad(n.id::text, 6, '0') ELSE n.id::text END,
                   {", ".join(o_marks)}
            FROM n RETURNING id, number
        ),
        ol AS (
            INSERT INTO {t[OrderLine]} (order_id, {", ".join(ol_cols)})
            SELECT o.id, {", ".join("v." + c for c in ol_cols)}
            FROM o, jsonb_to_recordset(%s::jsonb) AS v ({ol_defs}) ORDER BY v.product_id
        ),
        f AS (
            INSERT INTO {t[Fulfillment]} (order_id, {", ".join(f_cols)})
            SELECT o.id, {", ".join("v." + c for c in f_cols)}
            FROM o, jsonb_to_recordset(%s::jsonb) AS v ({f_defs}) ORDER BY v.store_id
            RETURNING id, store_id
        ),
        fl AS (
            INSERT INTO {t[FulfillmentLine]} (fulfillment_id, {", ".join(fl_cols)})
            SELECT f.id, {", ".join("v." + c for c in fl_cols)}
            FROM f JOIN jsonb_to_recordset(%s::jsonb) AS v ({fl_defs}) ON v.store = f.store_id
            ORDER BY f.id, v.product_id
        ),
        d AS (
            INSERT INTO {t[RoutingDecision]} (order_id, {", ".join(d_cols)})
            SELECT o.id, {", ".join(d_marks)} FROM o RETURNING id
        )
        SELECT o.id, o.number, (SELECT array_agg(ARRAY[f.store_id, f.id]) FROM f), (SELECT id FROM d) FROM o
    """
    with prepared.cursor() as cursor:  # one prepared statement whatever the number of lines and stores
        cursor.execute(sql, [prefix, *o_params, ol_rows, f_rows, fl_rows, *d_params])
        order_id, number, f_ids, decision_id = cursor.fetchone()
    order.pk, order.number = order_id, number
    order._state.adding, order._state.db = False, connection.alias
    by_store = dict(f_ids)
    for f, fl in zip(fulfillments, f_lines, strict=True):
        f.pk, f.order = by_store[f.store_id], order
        f._state.adding, f._state.db = False, connection.alias
        for line in fl:
            line.fulfillment = f
    for line in lines:
        line.order = order
    decision.pk, decision.order = decision_id, order
    decision._state.adding, decision._state.db = False, connection.alias


def undo_placement(order: Order, fulfillments: list[Fulfillment]) -> None:
    """Undo _write_placement_sql inside the same transaction (the reservation failed; nothing else saw the rows)."""
    t = {m: m._meta.db_table for m in (Order, OrderLine, Fulfillment, FulfillmentLine, RoutingDecision)}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH fl AS (DELETE FROM {t[FulfillmentLine]} WHERE fulfillment_id = ANY(%(fids)s)),
            f AS (DELETE FROM {t[Fulfillment]} WHERE order_id = %(id)s),
            ol AS (DELETE FROM {t[OrderLine]} WHERE order_id = %(id)s),
            d AS (DELETE FROM {t[RoutingDecision]} WHERE order_id = %(id)s)
            DELETE FROM {t[Order]} WHERE id = %(id)s
            """,
            {"id": order.pk, "fids": [f.pk for f in fulfillments]},
        )


# --- candidate stores -----------------------------------------------------------------------------------------------


def nearest_candidates(
    *, lat, lon, lines, method, at, radius, box, exclude, k, slot_hours, only_whole_cart, extra_capacity
) -> list[Candidate]:
    """Checkout's candidate stores (no stores pinned, no units added back): see _nearest_candidates_sql."""
    kwargs = dict(
        lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius, box=box, exclude=exclude, k=k,
        slot_hours=slot_hours, only_whole_cart=only_whole_cart, extra_capacity=extra_capacity,
    )
    return _nearest_candidates_sql(**kwargs) if use_sql() else candidates_in_reach(**kwargs)


def candidates_in_reach(
    *, lat, lon, lines, method, at, radius, box, exclude, k, slot_hours, only_whole_cart, extra_capacity=None,
    only_store_ids=None, extra_stock=None,
) -> list[Candidate]:
    """The general path: every store in reach (or the pinned ones) with its units, the k nearest that serve the
    whole cart, then the k nearest partial ones, with their hours and load. `extra_stock` / `extra_capacity` add
    back units and lines the caller's own orders hold (a wave re-optimising orders that already reserved)."""
    found = stores_with_stock(
        lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius, box=box, only_store_ids=only_store_ids,
        exclude=exclude,
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
    whole.sort(key=nearest_first)
    partial.sort(key=nearest_first)
    chosen = whole[:k] + partial[:k]  # partial stores only matter for splits
    if not chosen:
        return []
    ids = [c.store_id for c in chosen]
    hours, load = hours_and_load(store_ids=ids, at=at, slot_hours=slot_hours)
    for c in chosen:
        c.open_now, c.next_opening, c.closes_at = opening_status(hours[c.store_id], time_zone=c.time_zone, at=at)
        c.load = max(0, load.get(c.store_id, 0) - (extra_capacity or {}).get(c.store_id, 0))
    return chosen


def _nearest_candidates_sql(
    *, lat, lon, lines, method, at, radius, box, exclude, k, slot_hours, only_whole_cart, extra_capacity
) -> list[Candidate]:
    """load_candidates in one prepared statement, for the checkout path (no stores pinned, no units added back).

    Stores within reach are read nearest first, and only as far as needed: up to the k-th nearest store that serves
    the whole cart (so the whole-cart candidates are exactly the general path's), and at least the SCAN_FACTOR × k
    nearest stores holding any of it, among which the k nearest partial ones are taken (they only matter for
    splits). In central Ho Chi Minh City a point reaches ~400 stores: looking up each one's stock for the cart was
    most of a placement's database time, and reading the ~1,000 rows back a large part of its Python time. Opening
    hours and the slot's load come in the same statement, for the chosen stores only. A row whose shortfall waits
    for a count sells nothing online: read as absent, as stores_with_stock and online_units read it.

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
    columns = ", ".join(f"s.{c}" for c in STORE_COLUMNS)
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
                          AND st.on_hand > st.safety + st.unavailable AND st.shortfall = 0
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
    width = len(STORE_COLUMNS)
    for row in rows:
        km, pids, units, weekdays, opens, closes, load = row[width:width + 7]
        c = candidate_from_store_row(row[:width], distance_km=km, stock=dict(zip(pids, units, strict=True)))
        intervals = [Interval(*i) for i in zip(weekdays, opens, closes, strict=True)] if weekdays else []
        c.open_now, c.next_opening, c.closes_at = opening_status(intervals, time_zone=c.time_zone, at=at)
        c.load = max(0, load - (extra_capacity or {}).get(c.store_id, 0))
        chosen.append(c)
    return chosen


SCAN_FACTOR = 3  # stores holding any of the cart read per candidate wanted, before the fast path stops reading


def stores_with_stock(*, lat, lon, lines, method, at, radius, box, only_store_ids, exclude) -> dict[int, Candidate]:
    """Active stores offering the method, within reach of the point (the search radius, and for delivery their own
    radius) or pinned by id, but the excluded, each with the cart's units it can sell online (live holds only).
    Stores without units stay: a wave adds back what its own orders hold."""
    kwargs = dict(
        lat=lat, lon=lon, lines=lines, method=method, at=at, radius=radius, box=box, only_store_ids=only_store_ids,
        exclude=exclude,
    )
    return _stores_with_stock_sql(**kwargs) if use_sql() else _stores_with_stock_orm(**kwargs)


def _stores_with_stock_sql(
    *, lat, lon, lines, method, at, radius, box, only_store_ids, exclude
) -> dict[int, Candidate]:
    """One query: stores in the box and within reach (great circle computed in SQL) joined to their sellable stock
    rows for the cart, with the units of expired holds (still counted in `reserved` until the cleanup releases them)
    added back per row, so only live holds count. A row whose shortfall waits for a count sells nothing online and
    is left out, as a row without units above safety is."""
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
    columns = ", ".join(f"s.{c}" for c in STORE_COLUMNS)
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
        WHERE {reach} AND st.on_hand > st.safety + st.unavailable AND st.shortfall = 0
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found: dict[int, Candidate] = {}
    width = len(STORE_COLUMNS)
    for row in rows:
        pk, (km, pid, units) = row[0], row[width:]
        if pk in exclude:
            continue
        candidate = found.get(pk)
        if candidate is None:
            candidate = found[pk] = candidate_from_store_row(row[:width], distance_km=km)
        if units > 0:
            candidate.stock[pid] = int(units)
    return found  # stores without units stay: a wave adds back what its own orders hold


def _stores_with_stock_orm(*, lat, lon, lines, method, at, radius, box, only_store_ids, exclude) -> dict[int, Candidate]:
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
    for row in stores.values_list(*STORE_COLUMNS):
        pk, s_lat, s_lon, s_radius = row[0], row[3], row[4], row[5]
        if pk in exclude:
            continue
        distance = great_circle_km(lat, lon, s_lat, s_lon)
        if only_store_ids is None and (distance > radius or (method == "delivery" and distance > s_radius)):
            continue
        found[pk] = candidate_from_store_row(row, distance_km=distance)
    if not found:
        return {}
    units = online_units(store_ids=list(found), product_ids=list(lines), at=at)
    holding = {store_id for store_id, _ in units}
    for (store_id, product_id), n in units.items():
        if n > 0:
            found[store_id].stock[product_id] = n
    # As the statement's join: stores with a row above safety stay even without units (a wave adds back what its
    # own orders hold); stores without one go.
    return {pk: c for pk, c in found.items() if pk in holding}


def hours_and_load(
    *, store_ids: Sequence[int], at: datetime, slot_hours: float
) -> tuple[dict[int, list[Interval]], dict[int, int]]:
    """Opening intervals and picking load (order lines assigned or picking, promised before the slot ends) of
    these stores."""
    if use_sql():
        return _hours_and_load_sql(store_ids=store_ids, at=at, slot_hours=slot_hours)
    return _hours_and_load_orm(store_ids=store_ids, at=at, slot_hours=slot_hours)


def _hours_and_load_sql(
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


def _hours_and_load_orm(
    *, store_ids: Sequence[int], at: datetime, slot_hours: float
) -> tuple[dict[int, list[Interval]], dict[int, int]]:
    hours: dict[int, list[Interval]] = defaultdict(list)
    for store_id, weekday, opens, closes in OpeningHours.objects.filter(store_id__in=store_ids).values_list(
        "store_id", "weekday", "opens", "closes"
    ).order_by("pk"):
        hours[store_id].append(Interval(weekday, opens, closes))
    return hours, slot_load(store_ids=store_ids, at=at, slot_hours=slot_hours)
