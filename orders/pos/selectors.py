"""POS reads, each scoped to the caller's store: another store's objects are simply not found (404)."""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Q

from inventory.exceptions import UnknownSku
from inventory.models import Product, Stock, Store
from inventory.selectors import expired_hold_quantities, stores_near
from orders.pos.exceptions import CountNotFound, ReceiptNotFound, TransferNotFound
from orders.pos.models import GoodsReceipt, StockCount, StockTransfer, TillReceipt
from orders.pricing import selectors as pricing


def receipt_for_store(*, store: Store, receipt_id: str) -> TillReceipt:
    receipt = (
        TillReceipt.objects.filter(store=store, receipt_id=receipt_id)
        .prefetch_related("lines__product", "refunds")
        .first()
    )
    if receipt is None:
        raise ReceiptNotFound(details={"receipt_id": receipt_id})
    return receipt


def count_for_store(*, store: Store, count_id: str) -> StockCount:
    count = StockCount.objects.filter(store=store, count_id=count_id).first()
    if count is None:
        raise CountNotFound(details={"count_id": count_id})
    return count


def goods_receipt_for_store(*, store: Store, receipt_id: str) -> GoodsReceipt:
    receipt = GoodsReceipt.objects.filter(store=store, receipt_id=receipt_id).first()
    if receipt is None:
        raise ReceiptNotFound(details={"receipt_id": receipt_id})
    return receipt


def transfer_for_store(*, store: Store, pk: int) -> StockTransfer:
    """A transfer this store sends or receives."""
    transfer = (
        StockTransfer.objects.filter(Q(from_store=store) | Q(to_store=store), pk=pk)
        .select_related("from_store", "to_store")
        .first()
    )
    if transfer is None:
        raise TransferNotFound(details={"transfer": pk})
    return transfer


def transfers_in_transit(*, store: Store):
    return (
        StockTransfer.objects.filter(Q(from_store=store) | Q(to_store=store), status=StockTransfer.Status.IN_TRANSIT)
        .select_related("from_store", "to_store")
        .order_by("-id")
    )


@dataclass
class TillStock:
    sku: str
    name: str
    on_hand: int
    reserved: int
    safety: int
    unavailable: int
    shortfall: int
    sellable_at_till: int
    available_online: int
    needs_count: bool
    nearby: list[dict]


def _live_reserved(row: Stock, expired: dict) -> int:
    return row.reserved - expired.get((row.store_id, row.product_id), 0)


def till_stock(*, store: Store, sku: str, radius_km: float | None = None, limit: int = 5) -> TillStock:
    """This store's stock of a SKU and the nearest other stores that can sell it at their till ("we are out, the
    store 800 m away has 3"), nearest first."""
    product = Product.objects.filter(sku=sku, is_active=True).first()
    if product is None:
        raise UnknownSku([sku])
    radius = radius_km if radius_km is not None else settings.POS_NEARBY_RADIUS_KM
    near = [n for n in stores_near(lat=store.lat, lon=store.lon, radius_km=radius, limit=50) if n.store.pk != store.pk]
    ids = [store.pk] + [n.store.pk for n in near]
    rows = {r.store_id: r for r in Stock.objects.filter(product=product, store_id__in=ids)}
    expired = expired_hold_quantities(store_ids=ids, product_ids=[product.pk])
    nearby = []
    for n in near:
        row = rows.get(n.store.pk)
        if row is None:
            continue
        sellable = row.on_hand - _live_reserved(row, expired) - row.unavailable
        if sellable > 0:
            nearby.append({"store": n.store.code, "name": n.store.name, "address": n.store.address,
                           "distance_km": n.distance_km, "open_now": n.open_now, "available": sellable})
        if len(nearby) >= limit:
            break
    own = rows.get(store.pk) or Stock(store=store, product=product)
    reserved = _live_reserved(own, expired)
    return TillStock(
        sku=product.sku, name=product.name, on_hand=own.on_hand, reserved=reserved, safety=own.safety,
        unavailable=own.unavailable, shortfall=own.shortfall,
        sellable_at_till=max(0, own.on_hand - reserved - own.unavailable),
        # Nothing online while a shortfall waits for its count (the ledger lost track of the shelf).
        available_online=0 if own.shortfall else max(0, own.on_hand - reserved - own.safety - own.unavailable),
        needs_count=own.needs_count, nearby=nearby,
    )


# --- the pricing policy for offline tills ---------------------------------------------------------------------------


def pricing_version() -> int:
    """The policy's version: a till's snapshot is current while this has not moved."""
    return pricing.policy_version()


def pricing_snapshot(*, store: Store, at: datetime) -> dict:
    """What an offline till needs to price as the server does: the store's part of the policy in force (its prices,
    the price lists and promotions that can apply at this store for the tills' channel and have not ended), the
    store's time zone (promotions' weekdays and times of day are in it), the version it is (unsigned)."""
    channel = settings.PRICING_TILL_CHANNEL
    policy = pricing.active_policy()
    return {
        "version": policy.version,
        "changed": True,
        "store": store.code,
        "channel": channel,
        "timezone": store.timezone,
        "generated_at": at.isoformat(),
        "policy": pricing.store_snapshot(policy, store_code=store.code, channel=channel, at=at),
    }


def canonical_json(body: dict) -> bytes:
    """The bytes a snapshot's signature is computed over: UTF-8 JSON with the keys sorted at every level, no
    whitespace, non-ASCII characters as themselves (RFC 8785's form for content of strings, integers, booleans and
    nulls only, which a snapshot is)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def snapshot_signature(body: dict, *, key: str) -> str:
    """`v1=<hex HMAC-SHA256 of canonical_json(body without "signature")>` keyed with the till's own API key (the
    full `prefix.secret` it sends in Authorization; the server keeps only its hash and uses it as received)."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return "v1=" + hmac.new(key.encode(), canonical_json(unsigned), hashlib.sha256).hexdigest()
