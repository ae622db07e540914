"""The stock ledger's PostgreSQL fast paths, each beside its ORM twin (o2o/fast_paths.py says why there are two).

Each fast path is a chooser, the name inventory.services and inventory.selectors call, and two twins side by side:
`_<name>_sql`, the hand-written PostgreSQL statement (every checkout, till batch and availability request runs one),
and `_<name>_orm`, the same on any database (the SQLite demo; the parity tests force it with
`o2o.fast_paths.orm_twins()`). Both give the same answer and write the same rows: tests/inventory/test_fast_paths.py
runs each pair on PostgreSQL on the same inputs. A chooser adds no query to the PostgreSQL path.

    reserve                  a cart's units set aside, all lines or none (none from a row with a shortfall): a lock
                             statement, then one that checks every line and writes; its twin is the general path (lock the rows, release their
                             expired holds into the ledger, check, apply), which also takes the statement's carts
                             whose rows carry expired holds
    write_movement_batch     a till batch's movements and row totals: COPY, one UPDATE; bulk_create, UPDATE per row
    nearby_stores            the active stores near a point and their opening hours: one prepared statement, hours as
                             JSON; the same statement through Store.objects.raw, then the hours
    active_product_ids       ids of active products by SKU: arrays (= ANY, a constant text); IN lists, any database
    sellable_online          online ATP per (store, product), live holds only, 0 on a row with a shortfall: the
                             same statement, arrays or lists
    sellable_online_by_sku   the same with the products joined in by SKU

PostgreSQL only, with no twin:

    copy_insert              many new rows with COPY: the insert of the SQL twins here and in orders/pos/fast_paths.py,
                             whose ORM twins use bulk_create
    load_synthetic_stock     the chain generator's stock, INSERT ... SELECT from hashes in the database; on other
                             databases generate_chain draws other quantities from a seeded RNG and loads them through
                             services.load_opening_balances, so that is not a twin

The selectors' reads take `using`, the database alias to read (o2o.replicas' for the website's lag-tolerant reads):
each twin reads that connection, and the choice is made for it (`use_sql(using)`).
"""

import json
import math
from collections import defaultdict
from collections.abc import Collection, Hashable, Iterable, Sequence
from datetime import datetime
from datetime import time as dtime
from typing import TYPE_CHECKING, NamedTuple

from django.db import connection, connections, transaction
from django.db.models import F

from inventory.exceptions import InsufficientStock
from inventory.models import MovementReason, OpeningHours, Product, Reservation, Stock, StockMovement, Store
from o2o import prepared
from o2o.fast_paths import use_sql

if TYPE_CHECKING:
    from inventory.services.ledger import StockDelta

_Pair = tuple[int, int]  # (store_id, product_id): inventory.services.Pair


# --- reservations ---------------------------------------------------------------------------------------------------


def reserve(wanted: dict[_Pair, int], *, reference: str, actor: str, expires_at: datetime | None,
            now: datetime, channel_id: int | None = None) -> list[Reservation]:
    """Set `wanted` units aside under `reference` (services.reserve_stock checked and merged the lines): raise
    `reserved`, append a reserve movement per row, insert the reservations (with `channel_id`, the website of a
    checkout hold), in (store, product) order. All lines or none: raises InsufficientStock listing every short line
    (on_hand - reserved - safety - unavailable, live holds only; 0 on a row whose shortfall waits for a count),
    having written nothing.

    On PostgreSQL one statement that writes nothing unless every line can be served, so it needs no savepoint of its
    own and a refusal leaves the caller's transaction usable; rows carrying expired holds (which must first be
    released into the ledger) take the general path, the ORM twin."""
    if use_sql():
        outcome = _reserve_sql(wanted, reference=reference, actor=actor, expires_at=expires_at, now=now,
                               channel_id=channel_id)
        if isinstance(outcome, list):
            return outcome
        if outcome is not None:  # nothing was written; raised outside the twin's atomic block, as said above
            from inventory.services.ledger import _shortage_details  # here, not at the top: see _reserve_orm

            raise InsufficientStock(_shortage_details(wanted, outcome))
    return _reserve_orm(wanted, reference=reference, actor=actor, expires_at=expires_at, now=now,
                        channel_id=channel_id)


def _reserve_sql(
    wanted: dict[_Pair, int], *, reference: str, actor: str, expires_at: datetime | None, now: datetime,
    channel_id: int | None,
) -> list[Reservation] | dict[_Pair, Stock] | None:
    """reserve in one round trip after the lock: lock the rows in primary-key order (FOR UPDATE returns their latest
    committed quantities), check every line, and only if all can be served raise `reserved`, append the movements
    and insert the reservations. The same locks, order, rule and ledger as the general path.

    Returns the reservations; or the locked rows (as unsaved Stock objects, for the shortage details) when a line
    is short; or None when a row has an expired hold to release first (general path). Writes nothing unless it
    returns reservations."""
    pairs = sorted(wanted)
    params = {
        "stores": [s for s, _ in pairs],
        "products": [p for _, p in pairs],
        "qty": [wanted[pair] for pair in pairs],
        "now": now,
        "expires_at": expires_at,
        "reason": MovementReason.RESERVE.value,
        "reference": reference[:120],
        "actor": actor[:150],
        "channel": channel_id,
    }
    stock_t, movement_t, hold_t = Stock._meta.db_table, StockMovement._meta.db_table, Reservation._meta.db_table
    sql = f"""
        WITH wanted AS (
            SELECT * FROM unnest(%(stores)s::bigint[], %(products)s::bigint[], %(qty)s::bigint[])
                AS w(store_id, product_id, qty)
        ), locked AS MATERIALIZED (
            SELECT st.id, st.store_id, st.product_id, st.on_hand, st.reserved, st.safety, st.unavailable, st.shortfall
            FROM {stock_t} st JOIN wanted w ON w.store_id = st.store_id AND w.product_id = st.product_id
            ORDER BY st.id
            FOR UPDATE OF st
        ), checked AS MATERIALIZED (
            SELECT w.store_id, w.product_id, w.qty, l.id, l.on_hand, l.reserved, l.safety, l.unavailable, l.shortfall,
                   (SELECT count(*) FROM {hold_t} h
                    WHERE h.product_id = w.product_id AND h.store_id = w.store_id AND h.expires_at <= %(now)s) AS expired
            FROM wanted w LEFT JOIN locked l ON l.store_id = w.store_id AND l.product_id = w.product_id
        ), verdict AS MATERIALIZED (
            SELECT bool_and(id IS NOT NULL AND expired = 0 AND shortfall = 0
                            AND on_hand - reserved - safety - unavailable >= qty) AS ok FROM checked
        ), raised AS (
            UPDATE {stock_t} st SET reserved = st.reserved + c.qty, updated_at = %(now)s
            FROM checked c, verdict v WHERE v.ok AND st.id = c.id
        ), moved AS (
            INSERT INTO {movement_t} (store_id, product_id, reason, delta_on_hand, delta_reserved, delta_safety,
                                      delta_unavailable, delta_shortfall, reference, idempotency_key, actor, note,
                                      created_at)
            SELECT c.store_id, c.product_id, %(reason)s, 0, c.qty, 0, 0, 0, %(reference)s, NULL, %(actor)s, '', %(now)s
            FROM checked c, verdict v WHERE v.ok ORDER BY c.store_id, c.product_id
        ), held AS (
            INSERT INTO {hold_t} (store_id, product_id, quantity, reference, expires_at, channel_id, created_at)
            SELECT c.store_id, c.product_id, c.qty, %(reference)s, %(expires_at)s::timestamptz, %(channel)s::bigint,
                   %(now)s::timestamptz
            FROM checked c, verdict v WHERE v.ok ORDER BY c.store_id, c.product_id
            RETURNING id, store_id, product_id
        )
        SELECT c.store_id, c.product_id, c.id, c.on_hand, c.reserved, c.safety, c.unavailable, c.shortfall, c.expired,
               v.ok, h.id
        FROM checked c CROSS JOIN verdict v
        LEFT JOIN held h ON h.store_id = c.store_id AND h.product_id = c.product_id
        ORDER BY c.store_id, c.product_id
    """
    with transaction.atomic(savepoint=False), prepared.cursor() as cursor:
        # Take the row locks in a statement of their own first. With the locks taken inside the writing statement
        # itself, a mixed race of multi-line carts, till sales and releases let a cart through that no longer fit
        # (the CHECK refused reserved > on_hand; tests/inventory/test_concurrency.py reproduces it): READ COMMITTED
        # re-reads a row changed concurrently when it locks it, but the rest of a statement keeps the snapshot it
        # started with. The next statement starts after the locks, from every locked row's latest version.
        cursor.execute(
            f"""SELECT st.id FROM {stock_t} st
                JOIN unnest(%(stores)s::bigint[], %(products)s::bigint[]) AS w(store_id, product_id)
                  ON w.store_id = st.store_id AND w.product_id = st.product_id
                ORDER BY st.id FOR UPDATE OF st""",
            params,
        )
        cursor.execute(sql, params)
        result = cursor.fetchall()
    if result[0][9]:
        held = []
        for store_id, product_id, *_, hold_id in result:
            hold = Reservation(
                pk=hold_id, store_id=store_id, product_id=product_id, quantity=wanted[(store_id, product_id)],
                reference=reference[:120], expires_at=expires_at, channel_id=channel_id, created_at=now,
            )
            hold._state.adding, hold._state.db = False, connection.alias
            held.append(hold)
        return held
    if any(expired for *_, expired, _ok, _hold in result):
        return None
    return {
        (store_id, product_id): Stock(
            pk=stock_id, store_id=store_id, product_id=product_id, on_hand=on_hand, reserved=reserved, safety=safety,
            unavailable=unavailable, shortfall=shortfall,
        )
        for store_id, product_id, stock_id, on_hand, reserved, safety, unavailable, shortfall, *_ in result
        if stock_id is not None
    }


@transaction.atomic
def _reserve_orm(
    wanted: dict[_Pair, int], *, reference: str, actor: str, expires_at: datetime | None, now: datetime,
    channel_id: int | None,
) -> list[Reservation]:
    """The general path, on the ledger's machinery: lock the rows (releasing their expired holds), check, apply."""
    # Imported here, not at the top: inventory.services imports this module while it loads (the ledger's batch
    # writer, copy_insert), so importing it from the top of this module would be circular.
    from inventory.services.ledger import StockDelta, _shortage_details, apply_movements, lock_stock_rows

    rows = lock_stock_rows(wanted.keys(), now=now)
    short = _shortage_details(wanted, rows)
    if short:
        raise InsufficientStock(short)
    lines = sorted(wanted.items())
    apply_movements(rows, [(pair, StockDelta(reserved=qty)) for pair, qty in lines], reason=MovementReason.RESERVE,
                    reference=reference, actor=actor, now=now)
    return Reservation.objects.bulk_create([
        Reservation(store_id=store_id, product_id=product_id, quantity=qty, reference=reference[:120],
                    expires_at=expires_at, channel_id=channel_id, created_at=now)
        for (store_id, product_id), qty in lines
    ])


# --- the till batch writer ------------------------------------------------------------------------------------------


def write_movement_batch(movements: list[StockMovement], totals: dict[int, "StockDelta"], *, flagged: Collection[int] = (),
                         now: datetime) -> list[StockMovement]:
    """Insert a batch's new movements and add each locked stock row's `totals` (by Stock id) to it, once per row,
    flagging the rows in `flagged` (a change gave them a shortfall) for a count in the same UPDATE. Returns the
    movements (with primary keys from the ORM twin only: nothing reads them)."""
    if totals and use_sql():
        return _write_movement_batch_sql(movements, totals, flagged=flagged, now=now)
    return _write_movement_batch_orm(movements, totals, flagged=flagged, now=now)


_TOTALS = ("on_hand", "reserved", "safety", "unavailable", "shortfall")


def _write_movement_batch_sql(movements: list[StockMovement], totals: dict[int, "StockDelta"], *,
                              flagged: Collection[int], now: datetime) -> list[StockMovement]:
    ids = sorted(totals)
    copy_insert(StockMovement, movements)  # every concrete column of the movement, delta_shortfall included
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Stock._meta.db_table} AS s SET on_hand = s.on_hand + v.on_hand, "
            "reserved = s.reserved + v.reserved, safety = s.safety + v.safety, "
            "unavailable = s.unavailable + v.unavailable, shortfall = s.shortfall + v.shortfall, "
            "needs_count = s.needs_count OR v.flag, updated_at = %s "
            "FROM UNNEST(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
            "%s::boolean[]) AS v(id, on_hand, reserved, safety, unavailable, shortfall, flag) WHERE s.id = v.id",
            [now, ids, *([getattr(totals[i], f) for i in ids] for f in _TOTALS), [i in flagged for i in ids]],
        )
    return movements


def _write_movement_batch_orm(movements: list[StockMovement], totals: dict[int, "StockDelta"], *,
                              flagged: Collection[int], now: datetime) -> list[StockMovement]:
    for pk in sorted(totals):
        t = totals[pk]
        flag = {"needs_count": True} if pk in flagged else {}
        Stock.objects.filter(pk=pk).update(
            on_hand=F("on_hand") + t.on_hand, reserved=F("reserved") + t.reserved, safety=F("safety") + t.safety,
            unavailable=F("unavailable") + t.unavailable, shortfall=F("shortfall") + t.shortfall, updated_at=now,
            **flag,
        )
    return StockMovement.objects.bulk_create(movements)


def copy_insert(model, objs: Sequence, *, with_ids: bool = False) -> None:
    """Insert many new rows of `model` with PostgreSQL's COPY (a batch of till sales writes thousands of rows;
    bulk_create spends more time preparing them than the database takes to store them). With `with_ids`, primary
    keys are taken from the table's sequence first and set on the objects. Same columns and values as bulk_create;
    no signals (none are used on these tables). PostgreSQL only: the SQL twins' insert, bulk_create their twins'."""
    if not objs:
        return
    table = model._meta.db_table
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if with_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [table, model._meta.pk.column, len(objs)],
            )
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
        fields = [model._meta.pk, *fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    json_fields = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    # The raw psycopg cursor's errors are wrapped like Django's own (an IntegrityError stays an IntegrityError).
    with connection.wrap_database_errors, connection.cursor() as cursor, \
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for obj in objs:
            copy.write_row([
                json.dumps(getattr(obj, f.attname)) if f.attname in json_fields else getattr(obj, f.attname)
                for f in fields
            ])


# --- bulk loading ---------------------------------------------------------------------------------------------------


def load_synthetic_stock(*, store_ids: Sequence[int], seed: int, actor: str, scarce_share: float,
                         product_ids: Sequence[int] | None) -> int:
    """services.load_synthetic_stock_postgres's statements (its docstring says what they do). PostgreSQL only."""
    if connection.vendor != "postgresql":  # no twin to fall back on (see the module docstring)
        raise RuntimeError("load_synthetic_stock_postgres needs PostgreSQL")
    stock_table = Stock._meta.db_table
    movement_table = StockMovement._meta.db_table
    product_table = Product._meta.db_table
    store_table = Store._meta.db_table
    params = {
        "seed": str(seed),
        "seed_int": seed % (2**63),
        "scarce": int(scarce_share * 1000),
        "store_ids": list(store_ids),
        "all_products": product_ids is None,
        "product_ids": list(product_ids or []),
        "actor": actor,
    }
    # Per-store and per-product hashes are computed once; each pair is then mixed with one integer hash.
    generated = f"""
        WITH st AS (
            SELECT s.id, hashtext(%(seed)s || ':s:' || s.code)::bigint AS h
            FROM {store_table} s WHERE s.id = ANY(%(store_ids)s::bigint[])
        ), pr AS (
            SELECT p.id, hashtext(%(seed)s || ':p:' || p.sku)::bigint AS h,
                   (hashtext(%(seed)s || ':scarce:' || p.sku)::bigint + 2147483648) %% 1000 < %(scarce)s AS scarce
            FROM {product_table} p
            WHERE %(all_products)s OR p.id = ANY(%(product_ids)s::bigint[])
        ), pairs AS (
            SELECT st.id AS store_id, pr.id AS product_id, pr.scarce,
                   hashint8extended((st.h << 32) | (pr.h & 4294967295), %(seed_int)s) AS h
            FROM st CROSS JOIN pr
        ), generated AS (
            SELECT store_id, product_id,
                   CASE WHEN scarce THEN ((h %% 3) + 3) %% 3 ELSE ((h %% 41) + 41) %% 41 END AS on_hand,
                   (((h >> 32) %% 3) + 3) %% 3 AS safety
            FROM pairs
        )"""
    stock_columns = "store_id, product_id, on_hand, reserved, safety, unavailable, target, needs_count, updated_at"
    stock_values = "store_id, product_id, on_hand, 0, safety, 0, 20, false, now()"
    movement_columns = (
        "store_id, product_id, reason, delta_on_hand, delta_reserved, delta_safety, delta_unavailable, reference, "
        "idempotency_key, actor, note, created_at"
    )
    movement_values = (
        "store_id, product_id, 'opening_balance', on_hand, 0, safety, 0, 'opening balance', NULL, %(actor)s, '', now()"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        # Only this bulk transaction: durability of the batch is not worth a WAL flush wait (see docstring).
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(
            """SELECT current_setting('is_superuser') = 'on'
                      AND NOT EXISTS (SELECT 1 FROM pg_trigger
                                      WHERE tgrelid IN (%s::regclass, %s::regclass) AND NOT tgisinternal)""",
            [stock_table, movement_table],
        )
        if cursor.fetchone()[0]:
            cursor.execute(f"SELECT 1 FROM {store_table} WHERE id = ANY(%(store_ids)s::bigint[]) FOR KEY SHARE", params)
            cursor.execute(
                f"""SELECT 1 FROM {product_table} WHERE %(all_products)s OR id = ANY(%(product_ids)s::bigint[])
                    FOR KEY SHARE""",
                params,
            )
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {stock_table} WHERE store_id = ANY(%(store_ids)s::bigint[]))", params)
        if not cursor.fetchone()[0]:
            cursor.execute(
                f"{generated} INSERT INTO {stock_table} ({stock_columns}) "
                f"SELECT {stock_values} FROM generated ORDER BY product_id, store_id",
                params,
            )
            created = cursor.rowcount
            cursor.execute(
                f"{generated} INSERT INTO {movement_table} ({movement_columns}) "
                f"SELECT {movement_values} FROM generated WHERE on_hand <> 0 OR safety <> 0 ORDER BY product_id, store_id",
                params,
            )
        else:
            cursor.execute(
                f"""{generated}, inserted AS (
                        INSERT INTO {stock_table} ({stock_columns})
                        SELECT {stock_values} FROM generated ORDER BY product_id, store_id
                        ON CONFLICT DO NOTHING
                        RETURNING store_id, product_id, on_hand, safety
                    ), moved AS (
                        INSERT INTO {movement_table} ({movement_columns})
                        SELECT {movement_values} FROM inserted WHERE on_hand <> 0 OR safety <> 0
                    )
                    SELECT count(*) FROM inserted""",
                params,
            )
            created = cursor.fetchone()[0]
        cursor.execute("SET LOCAL session_replication_role = origin")
        return created


# --- availability reads ---------------------------------------------------------------------------------------------

SERVICES = ("delivery", "pickup", "returns")  # a store's offers_<service> flags (inventory.selectors.SERVICES)
KM_PER_DEGREE_LAT = 111.32
EARTH_RADIUS_KM = 6371.009  # geopy's great_circle radius: the same distances as before, and as the router's

# Named, not `s.*`: a prepared statement whose result columns changed (a migration adding a column while workers
# run) would fail with "cached plan must not change result type".
_STORE_COLUMNS = ", ".join(f"s.{f.column}" for f in Store._meta.concrete_fields)


class Interval(NamedTuple):
    """An opening interval as selectors.opening_status() reads it, without a model instance."""

    weekday: int
    opens: dtime
    closes: dtime


def _bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    dlat = radius_km / KM_PER_DEGREE_LAT
    dlon = radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def _in(values: Iterable) -> tuple[str, list]:
    """`IN (%s, %s, ...)` and its parameters (PostgreSQL and the demo's SQLite alike)."""
    values = list(values) or [None]
    return "(" + ", ".join(["%s"] * len(values)) + ")", values


def nearby_stores(
    *, lat: float, lon: float, radius_km: float, service: str | None, limit: int, using: str
) -> list[tuple[Store, Hashable, Sequence]]:
    """The active stores within `radius_km` of the point (offering `service`, if one of SERVICES; for delivery, only
    those whose own radius reaches the point), nearest first, with `distance_km` set, as (store, opening pattern, its
    intervals): equal patterns are equal opening hours, whose status the caller works out once per time zone.

    One raw query measures, filters, orders and limits in the database (the bounding box first, so the lat/lon index
    narrows it): measuring every store of the box in Python (~300 in central HCMC on a 1,000-store chain) and reading
    the nearest again cost ~10 ms a request, the ORM's compilation of the expression more than the database's work."""
    twin = _nearby_stores_sql if use_sql(using) else _nearby_stores_orm
    return twin(lat=lat, lon=lon, radius_km=radius_km, service=service, limit=limit, using=using)


def _nearby_stores_statement(*, lat: float, lon: float, radius_km: float, service: str | None, limit: int,
                             extra_columns: str = "") -> tuple[str, list]:
    south, north, west, east = _bounding_box(lat, lon, radius_km)
    service_filter = f"AND s.offers_{service}" if service in SERVICES else ""  # a fixed column name, not input
    delivery_filter = "AND distance_km <= delivery_radius_km" if service == "delivery" else ""
    sql = f"""
        SELECT *{extra_columns} FROM (
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
    return sql, params


def _nearby_stores_sql(
    *, lat: float, lon: float, radius_km: float, service: str | None, limit: int, using: str
) -> list[tuple[Store, Hashable, Sequence]]:
    """The opening hours of the chosen stores come in the same round trip, as text in a fixed order: the text is the
    pattern, parsed once per call. Read through a prepared statement: Store.objects.raw would have PostgreSQL plan
    the statement again on every request."""
    hours = f""", (SELECT json_agg(json_build_array(h.weekday, h.opens, h.closes)
                                   ORDER BY h.weekday, h.opens, h.closes)::text
                         FROM {OpeningHours._meta.db_table} h WHERE h.store_id = candidates.id) AS hours_json"""
    generic_plans = f", {prepared.GENERIC_PLANS} AS generic_plans" if prepared.enabled(using) else ""
    sql, params = _nearby_stores_statement(lat=lat, lon=lon, radius_km=radius_km, service=service, limit=limit,
                                           extra_columns=hours + generic_plans)
    with prepared.cursor(using) as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    concrete = {f.attname for f in Store._meta.concrete_fields}
    fields = [i for i, name in enumerate(names) if name in concrete]
    extras = [(i, name) for i, name in enumerate(names) if name not in concrete and name != "generic_plans"]
    field_names = [names[i] for i in fields]
    parsed: dict[str | None, tuple[Interval, ...]] = {}
    result = []
    for row in rows:
        store = Store.from_db(using, field_names, [row[i] for i in fields])
        for i, name in extras:
            setattr(store, name, row[i])
        intervals = parsed.get(store.hours_json)
        if intervals is None:
            intervals = parsed[store.hours_json] = tuple(
                Interval(weekday, dtime.fromisoformat(opens), dtime.fromisoformat(closes))
                for weekday, opens, closes in json.loads(store.hours_json or "[]")
            )
        result.append((store, store.hours_json, intervals))
    return result


def _nearby_stores_orm(
    *, lat: float, lon: float, radius_km: float, service: str | None, limit: int, using: str
) -> list[tuple[Store, Hashable, Sequence]]:
    sql, params = _nearby_stores_statement(lat=lat, lon=lon, radius_km=radius_km, service=service, limit=limit)
    stores = list(Store.objects.raw(sql, params, using=using))
    hours = defaultdict(list)
    if stores:
        # Plain rows with .weekday/.opens/.closes: opening_status needs no model instances.
        for interval in OpeningHours.objects.using(using).filter(store_id__in=[s.pk for s in stores]).order_by().values_list(
            "store_id", "weekday", "opens", "closes", named=True
        ):
            hours[interval.store_id].append(interval)
    return [
        (store, tuple(sorted((i.weekday, i.opens, i.closes) for i in hours[store.pk])), hours[store.pk])
        for store in stores
    ]


def active_product_ids(skus: set[str], *, using: str) -> dict[str, int]:
    """Ids of the active products among `skus`, by SKU (without building model instances), in SKU order."""
    return (_active_product_ids_sql if use_sql(using) else _active_product_ids_orm)(skus, using=using)


def _active_product_ids_sql(skus: set[str], *, using: str) -> dict[str, int]:
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT sku, id FROM {Product._meta.db_table} WHERE sku = ANY(%s) AND is_active ORDER BY sku",
                       [list(skus)])
        return dict(cursor.fetchall())


def _active_product_ids_orm(skus: set[str], *, using: str) -> dict[str, int]:
    marks, params = _in(skus)
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT sku, id FROM {Product._meta.db_table} WHERE sku IN {marks} AND is_active ORDER BY sku",
                       params)
        return dict(cursor.fetchall())


def sellable_online(
    *, store_ids: Sequence[int], product_ids: Sequence[int], now: datetime, using: str
) -> dict[tuple[int, int], int]:
    """Online ATP per (store, product) with a stock row: on_hand - reserved - safety - unavailable, counting only live
    holds (at least 0; 0 while the row's shortfall waits for a count). One query: the units of expired holds still counted in `reserved` (until the clean-up releases
    them) are joined in instead of read in a second round trip. Both lists non-empty."""
    twin = _sellable_online_sql if use_sql(using) else _sellable_online_orm
    return twin(store_ids=store_ids, product_ids=product_ids, now=now, using=using)


def _sellable_online_statement(stores_in: str, products_in: str) -> str:
    return f"""
        SELECT s.store_id, s.product_id,
               CASE WHEN s.shortfall > 0 THEN 0
                    ELSE s.on_hand - (s.reserved - COALESCE(r.units, 0)) - s.safety - s.unavailable END
        FROM {Stock._meta.db_table} s
        LEFT JOIN (
            SELECT store_id, product_id, SUM(quantity) AS units FROM {Reservation._meta.db_table}
            WHERE expires_at <= %s AND store_id {stores_in} AND product_id {products_in}
            GROUP BY store_id, product_id
        ) r ON r.store_id = s.store_id AND r.product_id = s.product_id
        WHERE s.store_id {stores_in} AND s.product_id {products_in}
    """


def _sellable_online_sql(
    *, store_ids: Sequence[int], product_ids: Sequence[int], now: datetime, using: str
) -> dict[tuple[int, int], int]:
    # Arrays keep the statement text constant, so the driver parses it once per process, not per request.
    stores, products = list(store_ids), list(product_ids)
    return _read_sellable(_sellable_online_statement("= ANY(%s)", "= ANY(%s)"), [now, stores, products, stores, products],
                          using=using)


def _sellable_online_orm(
    *, store_ids: Sequence[int], product_ids: Sequence[int], now: datetime, using: str
) -> dict[tuple[int, int], int]:
    (stores_in, stores), (products_in, products) = _in(store_ids), _in(product_ids)
    sql = _sellable_online_statement(f"IN {stores_in}", f"IN {products_in}")
    return _read_sellable(sql, [now, *stores, *products, *stores, *products], using=using)


def _read_sellable(sql: str, params: list, *, using: str) -> dict[tuple[int, int], int]:
    with prepared.cursor(using) as cursor:  # Django's own for the ORM twins (prepared.enabled() asks use_sql())
        cursor.execute(sql, params)
        return {(s, p): max(0, units) for s, p, units in cursor.fetchall()}


def sellable_online_by_sku(
    *, store_ids: Sequence[int], skus: list[str], now: datetime, using: str
) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    """(ids of the active products among `skus`, online ATP per (store, sku)) in one statement: the products are
    joined by SKU inside the stock query, as the framework floor does, instead of read in a round trip of their own.
    Every active SKU comes back at least once (the stock join is a LEFT JOIN), so the caller still learns which SKUs
    are unknown. ATP is counted as in sellable_online()."""
    twin = _sellable_online_by_sku_sql if use_sql(using) else _sellable_online_by_sku_orm
    return twin(store_ids=store_ids, skus=skus, now=now, using=using)


def _sellable_online_by_sku_statement(stores_in: str, skus_in: str) -> str:
    product, stock, reservation = Product._meta.db_table, Stock._meta.db_table, Reservation._meta.db_table
    return f"""
        SELECT p.sku, p.id, s.store_id,
               CASE WHEN s.shortfall > 0 THEN 0
                    ELSE s.on_hand - (s.reserved - COALESCE(r.units, 0)) - s.safety - s.unavailable END
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


def _sellable_online_by_sku_sql(
    *, store_ids: Sequence[int], skus: list[str], now: datetime, using: str
) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    sql = _sellable_online_by_sku_statement("= ANY(%s)", "= ANY(%s)")
    stores = list(store_ids)
    return _read_sellable_by_sku(sql, [stores, now, stores, skus, skus], using=using)


def _sellable_online_by_sku_orm(
    *, store_ids: Sequence[int], skus: list[str], now: datetime, using: str
) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    (stores_in, stores), (skus_in, sku_params) = _in(store_ids), _in(skus)
    sql = _sellable_online_by_sku_statement(f"IN {stores_in}", f"IN {skus_in}")
    return _read_sellable_by_sku(sql, [*stores, now, *stores, *sku_params, *sku_params], using=using)


def _read_sellable_by_sku(sql: str, params: list, *, using: str) -> tuple[dict[str, int], dict[tuple[int, str], int]]:
    found: dict[str, int] = {}
    atp: dict[tuple[int, str], int] = {}
    with prepared.cursor(using) as cursor:
        cursor.execute(sql, params)
        for sku, product_id, store_id, units in cursor.fetchall():
            found[sku] = product_id
            if store_id is not None:
                atp[store_id, sku] = max(0, units)
    return found, atp
