"""Bulk loading: opening balances and the synthetic chains of the benchmarks."""


from collections.abc import Iterable, Sequence

from django.db import connection, transaction
from django.utils import timezone

from inventory.models import MovementReason, Product, Stock, StockMovement, Store
from inventory.services.ledger import _pairs_filter


def load_opening_balances(*, rows: Iterable[tuple[int, int, int, int, int]], actor: str, batch_size: int = 5000) -> int:
    """Create stock rows (store_id, product_id, on_hand, safety, target) for pairs that have none, each with its
    opening-balance movement. For a new chain or new products; existing rows are left alone. Returns rows created."""
    now = timezone.now()
    created = 0
    batch: list[tuple[int, int, int, int, int]] = []

    def flush() -> int:
        with transaction.atomic():
            existing = set(
                Stock.objects.filter(_pairs_filter((s, p) for s, p, *_ in batch)).values_list("store_id", "product_id")
            )
            fresh = [r for r in batch if (r[0], r[1]) not in existing]
            Stock.objects.bulk_create(
                [Stock(store_id=s, product_id=p, on_hand=oh, safety=sf, target=tg, updated_at=now) for s, p, oh, sf, tg in fresh]
            )
            StockMovement.objects.bulk_create(
                [
                    StockMovement(
                        store_id=s,
                        product_id=p,
                        reason=MovementReason.OPENING_BALANCE,
                        delta_on_hand=oh,
                        delta_safety=sf,
                        reference="opening balance",
                        actor=actor,
                        created_at=now,
                    )
                    for s, p, oh, sf, _tg in fresh
                    if oh or sf
                ]
            )
            return len(fresh)

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            created += flush()
            batch = []
    if batch:
        created += flush()
    return created


def load_synthetic_stock_postgres(
    *,
    store_ids: Sequence[int],
    seed: int,
    actor: str,
    scarce_share: float = 0.2,
    product_ids: Sequence[int] | None = None,
) -> int:
    """PostgreSQL fast path of the chain generator: a stock row and its opening-balance movement for every product
    (or every one of `product_ids`) at the given stores, generated server-side by INSERT ... SELECT. Quantities come
    from a hash of the seed, the store code and the SKU, so they are the same whatever the batch order and whatever
    ids the rows get (a regenerated chain has the same stock). About `scarce_share` of SKUs are scarce (0–2 units);
    the rest hold 0–40; safety 0–2. Pairs that already have a stock row are left alone, so the ledger audit holds.
    Returns the stock rows created.

    One transaction per call, committed without waiting for the WAL flush (a crash loses the whole batch, never
    half of it). When the stores have no stock yet, two plain INSERTs are used (a concurrent writer makes the batch
    fail on the unique constraint rather than double-count). As a superuser, and only if the tables carry no
    triggers of their own, the per-row foreign-key triggers are replaced by locking the referenced stores and
    products FOR KEY SHARE up front — the same guarantee (they exist and cannot go away before commit) for two
    statements instead of four trigger calls per pair, which is most of the cost at 10 M rows."""
    if connection.vendor != "postgresql":
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
