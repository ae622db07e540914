"""Bulk loading: opening balances and the synthetic chains of the benchmarks."""


from collections.abc import Iterable, Sequence

from django.db import transaction
from django.utils import timezone

from inventory import fast_paths
from inventory.models import MovementReason, Stock, StockMovement
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
    statements instead of four trigger calls per pair, which is most of the cost at 10 M rows.

    The statements are in inventory/fast_paths.py (load_synthetic_stock). PostgreSQL only: RuntimeError elsewhere."""
    return fast_paths.load_synthetic_stock(
        store_ids=store_ids, seed=seed, actor=actor, scarce_share=scarce_share, product_ids=product_ids
    )
