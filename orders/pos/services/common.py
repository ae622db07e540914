"""What every POS write shares: who a till is in the ledgers, its points source, the stock rows it locks."""


from datetime import datetime

from inventory.exceptions import UnknownSku
from inventory.models import Product, Stock, Store
from inventory.services import (
    Pair,
    lock_stock_rows,
)
from loyalty import services as loyalty
from orders.pos.exceptions import ReceiptIdReused

MONEY_TENDERS = ("cash", "card", "ewallet")


TENDER_TYPES = (*MONEY_TENDERS, "points")


def till_actor(store: Store, till: str) -> str:
    """Who a till's writes are recorded as, in the stock and points ledgers."""
    return f"pos:{store.code}:{till}" if till else f"pos:{store.code}"


def _source(store: Store, reference: str, actor: str) -> loyalty.PostingSource:
    return loyalty.PostingSource(channel="pos", store=store.code, reference=reference, actor=actor)


def _lock_rows(store: Store, product_ids, *, now: datetime, create_missing: bool) -> dict[Pair, Stock]:
    """Lock this store's rows of `product_ids`; create missing ones only if asked (and only those)."""
    pairs = {(store.pk, pid) for pid in product_ids}
    rows = lock_stock_rows(pairs, now=now)
    missing = pairs - rows.keys()
    if missing and create_missing:
        rows.update(lock_stock_rows(missing, create_missing=True, now=now))
    return rows


def _products_for(skus) -> dict[str, Product]:
    skus = set(skus)
    found = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
    if skus - found.keys():
        raise UnknownSku(sorted(skus - found.keys()))
    return found


def sku_lines(lines: dict[str, int]) -> list[dict]:
    """Units per SKU as a booked document keeps them: [{sku, qty}] in SKU order."""
    return [{"sku": sku, "qty": qty} for sku, qty in sorted(lines.items())]


def first_answer(booked, *, content_hash: str, lines: dict[str, int], details: dict) -> tuple[dict, bool]:
    """A document booked once per (store, id) with its lines (a goods receipt, a damage report) sent again: its first
    answer when it is the same document (the same content hash, or the same units per SKU: each way in hashes its
    own form, the till its request body, an admin import its rows), else ReceiptIdReused (422)."""
    if booked.content_hash != content_hash and booked.lines != sku_lines(lines):
        raise ReceiptIdReused(details=details)
    return booked.result, True
