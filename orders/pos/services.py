"""Every POS write: till sales, voids and refunds, stock counts, goods receipts, transfers and pickup handovers.

Stock moves only through the stock service's own mechanism: the rows are locked with inventory.services.lock_stock_rows
(one SELECT ... FOR UPDATE, primary-key order, expired holds released first) and changed with
inventory.services.apply_movements / apply_movement_batch (one ledger movement per row and receipt, the same deltas applied to the
row, the stock rules checked again). Loyalty points move only through loyalty.services, inside the same transaction as the receipt's stock, so a
receipt applies in full or not at all. Lock order: stock rows (by pk), then the member row — the same order as an
order placement that reserves stock and then captures points.

Selling policy at the till (per store and SKU, on the locked row):
    * A till may sell everything that is physically on hand and not set aside: `on_hand - reserved - unavailable`.
      That includes the `safety` buffer (only the website must keep off it) and the units online ATP shows.
    * `reserved` units (held for online checkouts and placed orders) are untouchable by tills: a till sale never
      takes them, so online promises are never broken by the POS. (orders.services has no "a till took my units"
      re-route hook — report_short_pick writes the units off itself — so tills do not sell into reservations.)
    * Selling more than that is the *negative availability* case. If `Store.allow_negative_availability` is off,
      the receipt is rejected with `insufficient_stock` and writes nothing. If it is on, the sale is recorded in
      full: the movement takes only what the ledger can give (down to `reserved + unavailable`, never below), the
      rest is recorded as the line's `shortfall` (and in the movement's note), and the row is flagged
      `needs_count` so a count reconciles the ledger with the shelf.

Receipts are idempotent by (store, receipt id) — a database unique constraint — plus a hash of their content: the
same id and content returns the first answer (`duplicate`), the same id with other content is rejected
(`receipt_id_reused`) and writes nothing. A batch is applied in chunks (one transaction each, see sync_sales);
within a chunk every receipt is checked before anything of it is written and its points are posted in a savepoint,
so each receipt applies in full or not at all and one bad receipt never blocks the rest of its batch.

Counts and late receipts. A count says "at `counted_at` there were N units". The adjustment is
`N - ledger on-hand as of counted_at`, where the as-of ledger places every till sale at its *time of sale* (the
receipt's `sold_at`) and every other movement at the time it was recorded. So:
    * a sale made before the count but synced after it was recorded is "late": the count already saw those units
      gone, so the late sale takes nothing off the ledger (its line records `late_for_count`; points are posted
      as usual) — nothing is counted twice;
    * a sale synced before the count but made after `counted_at` stays in the ledger and is not undone by the
      count — nothing is lost;
    * a sale made before the count and synced before it is part of the as-of ledger, so the count does not take it
      again.
Count lines may carry `expected_on_hand` (the ledger on-hand the till saw): if the ledger has moved since, the whole
count is refused (`stale_quantity`) and nothing is written. A count that finds fewer units than are reserved plus
quarantined is refused (`count_below_set_aside`): those reservations must be short-picked first.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from inventory.exceptions import InsufficientStock, StaleStockQuantity, UnknownSku
from inventory.models import MovementReason, Product, Stock, StockMovement, Store
from inventory.services import (
    Pair,
    StockChange,
    StockDelta,
    apply_movement_batch,
    apply_movements,
    copy_insert,
    flag_for_count,
    lock_stock_rows,
)
from loyalty import conf as loyalty_conf
from loyalty import services as loyalty
from loyalty.exceptions import NothingToReverse
from loyalty.models import Member
from loyalty.phones import normalize_phone
from o2o.domain_errors import DomainError, InvalidInput
from orders.pos.exceptions import (
    CountBelowSetAside,
    MemberRequired,
    PickupNotFound,
    ReceiptAlreadyRefunded,
    ReceiptIdReused,
    ReceiptNotFound,
    TenderMismatch,
    TransferAlreadyReceived,
    TransferNotFound,
)
from orders.pos.models import (
    GoodsReceipt,
    StockCount,
    StockCountLine,
    StockTransfer,
    StockTransferLine,
    TillReceipt,
    TillReceiptLine,
    TillRefund,
)

MONEY_TENDERS = ("cash", "card", "ewallet")
TENDER_TYPES = (*MONEY_TENDERS, "points")


# --- inputs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaleLine:
    sku: str
    qty: int
    unit_price_vnd: int
    discount_vnd: int = 0

    @property
    def net_vnd(self) -> int:
        return self.qty * self.unit_price_vnd - self.discount_vnd


@dataclass(frozen=True)
class Tender:
    type: str
    amount_vnd: int = 0
    points: int = 0


@dataclass(frozen=True)
class Sale:
    """One receipt as the till sent it (validated). `content_hash` identifies its content for replays."""

    receipt_id: str
    sold_at: datetime
    lines: tuple[SaleLine, ...]
    tenders: tuple[Tender, ...]
    content_hash: str
    member_phone: str | None = None

    @property
    def total_vnd(self) -> int:
        return sum(line.net_vnd for line in self.lines)

    @property
    def money_vnd(self) -> int:
        return sum(t.amount_vnd for t in self.tenders if t.type in MONEY_TENDERS)

    @property
    def points(self) -> int:
        return sum(t.points for t in self.tenders if t.type == "points")


@dataclass
class Outcome:
    """The answer for one receipt of a batch."""

    receipt_id: str | None
    status: str  # applied | duplicate | rejected
    result: dict | None = None
    reason: str | None = None
    message: str | None = None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        if self.status == "rejected":
            return {
                "receipt_id": self.receipt_id, "status": "rejected", "reason": self.reason, "message": self.message,
                "details": self.details,
            }
        return {"receipt_id": self.receipt_id, "status": self.status, "result": self.result}


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


def _till_sellable(row: Stock | None) -> int:
    """What a till may sell from a row: on hand and not set aside (safety included)."""
    return 0 if row is None else max(0, row.on_hand - row.reserved - row.unavailable)


# --- sales ----------------------------------------------------------------------------------------------------------


def sync_sales(*, store: Store, sales: list[Sale | Outcome], till: str = "") -> list[Outcome]:
    """Apply a batch of receipts in the order given; returns one Outcome per entry. Entries that are already an
    Outcome (the view found them invalid) are passed through.

    The receipts are applied in chunks of POS_SYNC_CHUNK_RECEIPTS, one transaction per chunk: the chunk's stock rows
    are locked once (one SELECT ... FOR UPDATE in primary-key order), each receipt is checked against the locked
    quantities as left by the receipts before it, its points are posted in a savepoint of its own, and the chunk's
    movements, receipts and lines are written in a few statements at the end. A rejected receipt writes nothing
    (its checks run before any write; a loyalty refusal rolls back its savepoint), so each receipt is still all or
    nothing and one bad receipt never blocks the others. Should the chunk fail in the database (a concurrent resend
    of one of its receipt ids with other content, a deadlock), it is rolled back whole and its receipts are applied
    again one transaction each (`apply_sale`), which gives the same answers."""
    skus = {line.sku for sale in sales if isinstance(sale, Sale) for line in sale.lines}
    products = {p.sku: p for p in Product.objects.filter(sku__in=skus, is_active=True)}
    ids = [sale.receipt_id for sale in sales if isinstance(sale, Sale)]
    known: dict[str, tuple[str, dict]] = {
        rid: (content_hash, result)
        for rid, content_hash, result in TillReceipt.objects.filter(store=store, receipt_id__in=ids).values_list(
            "receipt_id", "content_hash", "result"
        )
    }
    outcomes: list[Outcome | None] = [None] * len(sales)
    pending: list[tuple[int, Sale]] = []
    for index, sale in enumerate(sales):
        if isinstance(sale, Outcome):
            outcomes[index] = sale
        elif sale.receipt_id in known:
            outcomes[index] = _replayed(sale, *known[sale.receipt_id])
        else:
            pending.append((index, sale))
    size = max(1, settings.POS_SYNC_CHUNK_RECEIPTS)
    for start in range(0, len(pending), size):
        chunk = pending[start:start + size]
        try:
            with transaction.atomic():
                answers = _apply_chunk(store=store, chunk=chunk, till=till, products=products, known=known)
        except DatabaseError:
            answers = {index: _apply_one(store=store, sale=sale, till=till, products=products, known=known)
                       for index, sale in chunk}
        for index, outcome in answers.items():
            outcomes[index] = outcome
    return outcomes  # type: ignore[return-value]


def _rejected(sale: Sale, exc: DomainError) -> Outcome:
    return Outcome(sale.receipt_id, "rejected", reason=exc.code, message=exc.message, details=exc.details)


def _replayed(sale: Sale, content_hash: str, result: dict) -> Outcome:
    if content_hash != sale.content_hash:
        return _rejected(sale, ReceiptIdReused(details={"receipt_id": sale.receipt_id}))
    return Outcome(sale.receipt_id, "duplicate", result=result)


def _check_sale(sale: Sale, products: dict[str, Product]) -> dict[int, int]:
    """The checks that need no stock: known SKUs, tenders that add up. Returns the units per product."""
    missing = {line.sku for line in sale.lines} - products.keys()
    if missing:
        raise UnknownSku(sorted(missing))
    paid = sale.money_vnd + sale.points * loyalty_conf.point_value_vnd()
    if paid != sale.total_vnd:
        raise TenderMismatch(details={"total_vnd": sale.total_vnd, "tendered_vnd": paid})
    if sale.points and not sale.member_phone:
        raise MemberRequired()
    per_product: dict[int, int] = defaultdict(int)
    for line in sale.lines:
        per_product[products[line.sku].pk] += line.qty
    return dict(per_product)


LateCounts = dict[int, list[tuple[datetime, int]]]


def _late_counts(store: Store, product_ids, since: datetime) -> LateCounts:
    """Counts already recorded at `counted_at >= since` per product: (counted_at, count pk)."""
    found: LateCounts = defaultdict(list)
    for pid, counted_at, count_pk in StockCountLine.objects.filter(
        count__store_id=store.pk, product_id__in=list(product_ids), count__counted_at__gte=since
    ).values_list("product_id", "count__counted_at", "count_id"):
        found[pid].append((counted_at, count_pk))
    return found


@dataclass
class _Plan:
    taken: dict[int, int]  # units the sale takes off the ledger's on-hand, per product
    late: dict[int, int]  # product -> the first count that already saw this sale
    short: list[dict]  # products sold beyond what the till may sell (negative availability)


def _plan_sale(
    *, store: Store, sale: Sale, per_product: dict[int, int], products: dict[str, Product], sellable, late_counts: LateCounts
) -> _Plan:
    """What a receipt takes from each locked row (`sellable(pid)`: what the till may still sell of it). Raises
    InsufficientStock when the store's policy refuses negative availability."""
    late = {}
    for pid in per_product:
        seen_by = [pk for counted_at, pk in late_counts.get(pid, ()) if counted_at >= sale.sold_at]
        if seen_by:
            late[pid] = min(seen_by)
    taken: dict[int, int] = {}
    short: list[dict] = []
    for pid, qty in sorted(per_product.items()):
        if pid in late:  # the count saw these units gone: taking them again would count them twice
            taken[pid] = 0
            continue
        can = max(0, sellable(pid))
        taken[pid] = min(qty, can)
        if qty > can:
            short.append({"product_id": pid, "requested": qty, "sellable_at_till": can})
    if short and not store.allow_negative_availability:
        skus = {p.pk: sku for sku, p in products.items()}
        for entry in short:
            entry.update(store=store.code, sku=skus[entry["product_id"]])
        raise InsufficientStock(short, "The till sold more than the store has on hand and not reserved.")
    return _Plan(taken=taken, late=late, short=short)


def _build_receipt(
    *, store: Store, sale: Sale, plan: _Plan, products: dict[str, Product], points: dict | None, till: str,
    now: datetime,
) -> tuple[TillReceipt, list[TillReceiptLine], dict, list[StockChange]]:
    """The receipt row, its lines (receipt not yet set), its result and its stock movements — unsaved."""
    note = ""
    if plan.short:
        note = "shortfall (negative availability, count needed): " + ", ".join(
            f"{e['product_id']}×{e['requested'] - e['sellable_at_till']}" for e in plan.short
        )
    reference = f"pos:{store.code}:{sale.receipt_id}"
    moving = [(pid, qty) for pid, qty in sorted(plan.taken.items()) if qty]
    changes = [
        StockChange(
            pair=(store.pk, pid), delta=StockDelta(on_hand=-qty), reference=reference, note=note,
            idempotency_key=f"pos:{store.pk}:{sale.receipt_id}:sale" + (f"#{n}" if len(moving) > 1 else ""),
        )
        for n, (pid, qty) in enumerate(moving)
    ]
    remaining = dict(plan.taken)
    lines, out_lines = [], []
    for line in sale.lines:
        pid = products[line.sku].pk
        took = min(line.qty, remaining[pid])
        remaining[pid] -= took
        shortfall = 0 if pid in plan.late else line.qty - took
        lines.append(
            TillReceiptLine(
                product_id=pid, qty=line.qty, unit_price_vnd=line.unit_price_vnd, discount_vnd=line.discount_vnd,
                taken=took, shortfall=shortfall, late_for_count_id=plan.late.get(pid),
            )
        )
        out_lines.append({"sku": line.sku, "qty": line.qty, "shortfall": shortfall, "late_for_count": pid in plan.late})
    points = dict(points) if points else None
    earn_id = points.pop("_earn_id", None) if points else None
    redeem_id = points.pop("_redeem_id", None) if points else None
    if points:
        points.pop("_member_id", None)
    result = {
        "receipt_id": sale.receipt_id,
        "sold_at": sale.sold_at.isoformat(),
        "total_vnd": sale.total_vnd,
        "lines": out_lines,
        "needs_count": bool(plan.short),
        "points": points,
    }
    receipt = TillReceipt(
        store=store, receipt_id=sale.receipt_id, content_hash=sale.content_hash, sold_at=sale.sold_at, received_at=now,
        till=till[:150], total_vnd=sale.total_vnd, money_vnd=sale.money_vnd, points_redeemed=sale.points,
        member_phone=points["member"] if points else "", earn_posting_id=earn_id, redeem_posting_id=redeem_id,
        tenders=[t.__dict__ for t in sale.tenders], result=result,
    )
    return receipt, lines, result, changes


def _lock_members(phones) -> dict[str, Member]:
    """Lock the existing members of a chunk's receipts in primary-key order before any of them is posted to, so two
    chunks with the same members in another order cannot deadlock (stock rows first, then members: the same order
    as an order placement that reserves stock and then captures points). Returns {E.164 phone: the member that
    holds its points} (a merged member resolves to the one it was merged into). New members are created as their
    receipt is applied; a phone that does not parse is that receipt's own rejection."""
    e164 = set()
    for phone in phones:
        try:
            e164.add(normalize_phone(phone))
        except DomainError:
            continue
    if not e164:
        return {}
    merged_into = Member.objects.filter(phone__in=e164, merged_into__isnull=False).values("merged_into_id")
    locked = {
        m.pk: m
        for m in Member.objects.select_for_update().filter(Q(phone__in=e164) | Q(pk__in=merged_into)).order_by("pk")
        .only("pk", "phone", "merged_into_id")
    }
    found = {}
    for m in locked.values():
        if m.phone in e164:
            root = m if m.merged_into_id is None else locked.get(m.merged_into_id)
            if root is not None and root.merged_into_id is None:
                found[m.phone] = root
    return found


def _e164(phone: str) -> str | None:
    try:
        return normalize_phone(phone)
    except DomainError:
        return None


def _apply_chunk(
    *, store: Store, chunk: list[tuple[int, Sale]], till: str, products: dict[str, Product],
    known: dict[str, tuple[str, dict]],
) -> dict[int, Outcome]:
    """One transaction for a chunk of receipts (see sync_sales). Adds what it applied to `known` on success."""
    now = timezone.now()
    actor = till_actor(store, till)
    out: dict[int, Outcome] = {}
    checked = []
    for index, sale in chunk:
        try:
            checked.append((index, sale, _check_sale(sale, products)))
        except DomainError as exc:
            out[index] = _rejected(sale, exc)
    if not checked:
        return out
    pids = {pid for _, _, per_product in checked for pid in per_product}
    rows = _lock_rows(store, pids, now=now, create_missing=store.allow_negative_availability)
    # Under the row locks: a concurrent resend of these receipts has committed or will wait for this chunk.
    first = {
        rid: (content_hash, result)
        for rid, content_hash, result in TillReceipt.objects.filter(
            store=store, receipt_id__in=[sale.receipt_id for _, sale, _ in checked]
        ).values_list("receipt_id", "content_hash", "result")
    }
    late_counts = _late_counts(store, pids, min(sale.sold_at for _, sale, _ in checked))
    members = _lock_members({sale.member_phone for _, sale, _ in checked if sale.member_phone})
    # A member's balance is read once at the end of the chunk, unless the member comes back in a later receipt.
    unread: dict[int, dict] = {}
    used: dict[int, int] = defaultdict(int)
    seen: dict[str, tuple[str, dict]] = {}
    receipts: list[tuple[TillReceipt, list[TillReceiptLine]]] = []
    changes: list[StockChange] = []
    flagged: set[int] = set()
    for index, sale, per_product in checked:
        prior = first.get(sale.receipt_id) or seen.get(sale.receipt_id) or known.get(sale.receipt_id)
        if prior is not None:
            out[index] = _replayed(sale, *prior)
            continue
        try:
            plan = _plan_sale(
                store=store, sale=sale, per_product=per_product, products=products, late_counts=late_counts,
                sellable=lambda pid: _till_sellable(rows.get((store.pk, pid))) - used[pid],
            )
            points = None
            if sale.member_phone:
                phone = _e164(sale.member_phone)
                member = members.get(phone) if phone else None
                if member is not None and member.pk in unread:
                    unread.pop(member.pk)["available"] = _available(member.pk)
                if sale.points:
                    with transaction.atomic():  # a refused redemption rolls back this receipt's postings only
                        points = _post_points(store=store, sale=sale, actor=actor, now=now, member=member,
                                              read_available=False)
                else:  # earning alone cannot be refused once the phone parsed (its own savepoint guards the rest)
                    points = _post_points(store=store, sale=sale, actor=actor, now=now, member=member,
                                          read_available=False)
                if member is None and phone:
                    members[phone] = Member(pk=points["_member_id"], phone=points["member"])
        except DomainError as exc:
            out[index] = _rejected(sale, exc)
            continue
        receipt, lines, result, moves = _build_receipt(
            store=store, sale=sale, plan=plan, products=products, points=points, till=till, now=now
        )
        if points is not None:
            unread[points["_member_id"]] = result["points"]
        for pid, qty in plan.taken.items():
            used[pid] += qty
        flagged.update(e["product_id"] for e in plan.short)
        receipts.append((receipt, lines))
        changes.extend(moves)
        seen[sale.receipt_id] = (sale.content_hash, result)
        out[index] = Outcome(sale.receipt_id, "applied", result=result)
    if unread:
        for pk, available in Member.objects.filter(pk__in=list(unread)).values_list("pk", "available"):
            unread[pk]["available"] = available
    apply_movement_batch(rows, changes, reason=MovementReason.SALE, actor=actor, now=now)
    if connection.vendor == "postgresql":
        copy_insert(TillReceipt, [receipt for receipt, _ in receipts], with_ids=True)
    else:
        TillReceipt.objects.bulk_create([receipt for receipt, _ in receipts])
    for receipt, lines in receipts:
        for line in lines:
            line.receipt = receipt
    all_lines = [line for _, lines in receipts for line in lines]
    if connection.vendor == "postgresql":
        copy_insert(TillReceiptLine, all_lines)
    else:
        TillReceiptLine.objects.bulk_create(all_lines)
    if flagged:
        flag_for_count(store_id=store.pk, product_ids=flagged)
    known.update(seen)
    return out


def _apply_one(
    *, store: Store, sale: Sale, till: str, products: dict[str, Product], known: dict[str, tuple[str, dict]]
) -> Outcome:
    if sale.receipt_id in known:
        return _replayed(sale, *known[sale.receipt_id])
    try:
        result = apply_sale(store=store, sale=sale, till=till, products=products)
    except DomainError as exc:
        return _rejected(sale, exc)
    if result.get("status") == "duplicate":
        return Outcome(sale.receipt_id, "duplicate", result=result["first"])
    known[sale.receipt_id] = (sale.content_hash, result)
    return Outcome(sale.receipt_id, "applied", result=result)


def apply_sale(*, store: Store, sale: Sale, till: str = "", products: dict[str, Product] | None = None) -> dict:
    """Apply one receipt in its own transaction: stock down, points redeemed and earned, the receipt recorded — all
    or nothing. (sync_sales applies whole chunks at a time and falls back to this.)

    Returns the receipt's result (also stored on the receipt); `{"status": "duplicate", "first": ...}` if the same
    receipt was applied meanwhile. Raises ReceiptIdReused, UnknownSku, InsufficientStock (store policy), TenderMismatch,
    MemberRequired, InvalidPhone, InsufficientPoints."""
    now = timezone.now()
    actor = till_actor(store, till)
    products = products if products is not None else {}
    wanted = {line.sku for line in sale.lines}
    if not wanted <= products.keys():
        products = {**products, **{p.sku: p for p in Product.objects.filter(sku__in=wanted, is_active=True)}}
    per_product = _check_sale(sale, products)
    try:
        with transaction.atomic():
            rows = _lock_rows(store, per_product.keys(), now=now, create_missing=store.allow_negative_availability)
            # Re-checked under the row locks (a concurrent resend may have committed since the batch was read).
            first = TillReceipt.objects.filter(store=store, receipt_id=sale.receipt_id).values_list(
                "content_hash", "result"
            ).first()
            if first is not None:
                if first[0] != sale.content_hash:
                    raise ReceiptIdReused(details={"receipt_id": sale.receipt_id})
                return {"status": "duplicate", "first": first[1]}
            plan = _plan_sale(
                store=store, sale=sale, per_product=per_product, products=products,
                late_counts=_late_counts(store, per_product, sale.sold_at),
                sellable=lambda pid: _till_sellable(rows.get((store.pk, pid))),
            )
            points = _post_points(store=store, sale=sale, actor=actor, now=now)
            receipt, lines, result, changes = _build_receipt(
                store=store, sale=sale, plan=plan, products=products, points=points, till=till, now=now
            )
            apply_movement_batch(rows, changes, reason=MovementReason.SALE, actor=actor, now=now)
            receipt.save(force_insert=True)
            for line in lines:
                line.receipt = receipt
            TillReceiptLine.objects.bulk_create(lines)
            if plan.short:
                flag_for_count(store_id=store.pk, product_ids=[e["product_id"] for e in plan.short])
    except IntegrityError:
        # The same receipt id was committed meanwhile (a concurrent resend): answer as a replay would.
        first = TillReceipt.objects.filter(store=store, receipt_id=sale.receipt_id).values_list(
            "content_hash", "result"
        ).first()
        if first is None:
            raise
        if first[0] != sale.content_hash:
            raise ReceiptIdReused(details={"receipt_id": sale.receipt_id}) from None
        return {"status": "duplicate", "first": first[1]}
    return result


def _post_points(
    *, store: Store, sale: Sale, actor: str, now: datetime, member: Member | None = None, read_available: bool = True
) -> dict | None:
    """Redeem the points tender, then earn on the money tenders (the member row is locked after the stock rows).
    `member`: the member already found for the receipt's phone (else it is found or created here)."""
    if not sale.member_phone:
        return None
    if member is None:
        member, _ = loyalty.get_or_create_member(phone=sale.member_phone, channel="pos", store=store.code)
    source = _source(store, sale.receipt_id, actor)
    out: dict = {"member": member.phone, "earned": 0, "redeemed": 0, "_member_id": member.pk}
    if sale.points:
        posting = loyalty.redeem_points(
            member=member, points=sale.points, source=source,
            idempotency_key=f"pos:{store.pk}:{sale.receipt_id}:redeem", now=now,
        )
        out["redeemed"] = posting.points
        out["_redeem_id"] = posting.pk
    if sale.money_vnd:
        posting = loyalty.earn_points(
            member=member, amount_paid_vnd=sale.money_vnd, source=source,
            idempotency_key=f"pos:{store.pk}:{sale.receipt_id}:earn", now=now,
        )
        out["earned"] = posting.points
        out["_earn_id"] = posting.pk
    if read_available:
        out["available"] = _available(member.pk)
    return out


def _available(member_id: int) -> int:
    return Member.objects.filter(pk=member_id).values_list("available", flat=True).get()


# --- voids and refunds ----------------------------------------------------------------------------------------------


def _lock_receipt(store: Store, receipt_id: str) -> TillReceipt:
    receipt = TillReceipt.objects.select_for_update().filter(store=store, receipt_id=receipt_id).first()
    if receipt is None:
        raise ReceiptNotFound(details={"receipt_id": receipt_id})
    return receipt


def _reverse_points(*, receipt: TillReceipt, fraction: Fraction, key: str, source, now: datetime) -> dict:
    out = {"reversed": 0, "given_back": 0}
    if receipt.earn_posting_id:
        try:
            posting = loyalty.reverse_earning(
                earning=receipt.earn_posting_id, fraction=fraction, source=source, idempotency_key=f"{key}:reverse",
                now=now,
            )
            out["reversed"] = posting.points
        except NothingToReverse:
            pass
    if receipt.redeem_posting_id:
        try:
            posting = loyalty.refund_redemption(
                redemption=receipt.redeem_posting_id, fraction=fraction, source=source,
                idempotency_key=f"{key}:refund", now=now,
            )
            out["given_back"] = posting.points
        except NothingToReverse:
            pass
    return out


@transaction.atomic
def void_receipt(*, store: Store, receipt_id: str, till: str = "") -> dict:
    """Cancel a receipt entered in error: the sale's ledger effect is undone (the units it took go back on hand),
    earned points are reversed and redeemed points given back. Voiding twice returns the first answer. A receipt
    with refunds cannot be voided (ReceiptAlreadyRefunded)."""
    now = timezone.now()
    actor = till_actor(store, till)
    receipt = _lock_receipt(store, receipt_id)
    if receipt.status == TillReceipt.Status.VOIDED:
        return TillRefund.objects.get(receipt=receipt, kind=TillRefund.Kind.VOID).result
    if receipt.refunds.exists():
        raise ReceiptAlreadyRefunded(details={"receipt_id": receipt_id})
    lines = list(receipt.lines.all())
    per_product: dict[int, int] = defaultdict(int)
    for line in lines:
        per_product[line.product_id] += line.taken
    rows = _lock_rows(store, per_product.keys(), now=now, create_missing=False)
    reference = f"pos:{store.code}:{receipt_id}"
    apply_movements(
        rows,
        [((store.pk, pid), StockDelta(on_hand=qty)) for pid, qty in sorted(per_product.items()) if qty],
        reason=MovementReason.SALE_VOID, reference=reference, actor=actor, note="receipt voided",
        idempotency_key=f"pos:{store.pk}:{receipt_id}:void", now=now,
    )
    points = _reverse_points(
        receipt=receipt, fraction=Fraction(1), key=f"pos:{store.pk}:{receipt_id}:void",
        source=_source(store, receipt_id, actor), now=now,
    )
    TillReceipt.objects.filter(pk=receipt.pk).update(status=TillReceipt.Status.VOIDED)
    result = {"receipt_id": receipt_id, "kind": "void", "amount_vnd": receipt.total_vnd, "points": points,
              "lines": [{"sku": line.product.sku, "qty": line.qty, "restocked": line.taken} for line in
                        receipt.lines.select_related("product")]}
    TillRefund.objects.create(
        store=store, receipt=receipt, refund_id=f"void:{receipt_id}", kind=TillRefund.Kind.VOID, content_hash="",
        amount_vnd=receipt.total_vnd, created_at=now, result=result,
    )
    return result


# --- counts ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountLine:
    sku: str
    counted: int
    expected_on_hand: int | None = None


def ledger_on_hand_as_of(*, store: Store, product_ids, at: datetime) -> dict[int, int]:
    """The ledger's on-hand per product as of `at`: till sales placed at their time of sale, every other movement
    at the time it was recorded (see the module docstring)."""
    ids = list(product_ids)
    totals: dict[int, int] = defaultdict(int)
    moved = (
        StockMovement.objects.filter(store_id=store.pk, product_id__in=ids, created_at__lte=at)
        .exclude(reason=MovementReason.SALE)
        .values("product_id")
        .annotate(n=Sum("delta_on_hand"))
        .values_list("product_id", "n")
    )
    for pid, n in moved:
        totals[pid] += n
    sold = (
        TillReceiptLine.objects.filter(receipt__store_id=store.pk, product_id__in=ids, receipt__sold_at__lte=at)
        .values("product_id")
        .annotate(n=Sum("taken"))
        .values_list("product_id", "n")
    )
    for pid, n in sold:
        totals[pid] -= n
    return {pid: totals.get(pid, 0) for pid in ids}


def _products_for(skus) -> dict[str, Product]:
    skus = set(skus)
    found = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
    if skus - found.keys():
        raise UnknownSku(sorted(skus - found.keys()))
    return found


def count_matches(count: StockCount, *, counted_at: datetime, lines: list[CountLine]) -> bool:
    """Whether a count already booked under this id is the one given again: the same instant and the same units per
    SKU. The content hash alone cannot tell, since each way in hashes its own form (the till its request body, the
    admin import its rows): a count sent by the till and then imported from a file, or sent again with its lines in
    another order, is the same count. `expected_on_hand` is a precondition checked when it was booked, not content."""
    if count.counted_at != counted_at:
        return False
    booked = sorted(count.lines.values_list("product__sku", "counted"))
    return booked == sorted((line.sku, line.counted) for line in lines)


def goods_receipt_matches(receipt: GoodsReceipt, *, lines: dict[str, int]) -> bool:
    """Whether a delivery note already booked under this id is the one given again: the same units per SKU (the
    source is a description: a head-office file may name the supplier differently from the till). See
    count_matches for why the content hash alone cannot tell."""
    return receipt.lines == [{"sku": sku, "qty": qty} for sku, qty in sorted(lines.items())]


@transaction.atomic
def record_count(
    *, store: Store, count_id: str, counted_at: datetime, lines: list[CountLine], content_hash: str, till: str = "",
    actor: str | None = None,
) -> tuple[dict, bool]:
    """Apply a cycle count: per SKU, `counted - ledger on-hand as of counted_at` becomes a count movement, and the
    SKU's needs-count flag is cleared. All lines or none. Returns (result, replayed). `actor` (e.g. "staff:lan" for
    an admin import) replaces the till as the ledger's actor."""
    now = timezone.now()
    actor = actor or till_actor(store, till)
    first = StockCount.objects.filter(store=store, count_id=count_id).first()
    if first is not None:
        if first.content_hash != content_hash and not count_matches(first, counted_at=counted_at, lines=lines):
            raise ReceiptIdReused(details={"count_id": count_id})
        return first.result, True
    if counted_at > now:
        raise InvalidInput("A count cannot be in the future.", details={"counted_at": counted_at.isoformat()})
    products = _products_for(line.sku for line in lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=True)
    # Under the row locks: a concurrent resend of the same count waits here, then finds it (or fails on the index).
    first = StockCount.objects.filter(store=store, count_id=count_id).first()
    if first is not None:
        if first.content_hash != content_hash and not count_matches(first, counted_at=counted_at, lines=lines):
            raise ReceiptIdReused(details={"count_id": count_id})
        return first.result, True
    as_of = ledger_on_hand_as_of(store=store, product_ids=[p.pk for p in products.values()], at=counted_at)
    stale, below, changes, out = [], [], [], []
    for line in lines:
        pid = products[line.sku].pk
        row = rows[(store.pk, pid)]
        if line.expected_on_hand is not None and line.expected_on_hand != row.on_hand:
            stale.append({"sku": line.sku, "expected_on_hand": line.expected_on_hand, "on_hand": row.on_hand})
        adjustment = line.counted - as_of[pid]
        after = row.on_hand + adjustment
        if after < row.reserved + row.unavailable or after < 0:
            below.append({"sku": line.sku, "counted": line.counted, "on_hand_after": after, "reserved": row.reserved,
                          "unavailable": row.unavailable})
        changes.append(((store.pk, pid), StockDelta(on_hand=adjustment)))
        out.append({"sku": line.sku, "counted": line.counted, "ledger_as_of": as_of[pid], "on_hand_before": row.on_hand,
                    "adjustment": adjustment, "on_hand_after": after})
    if stale:
        raise StaleStockQuantity(details={"lines": stale})
    if below:
        raise CountBelowSetAside(details={"lines": below})
    try:
        with transaction.atomic():
            count = StockCount.objects.create(
                store=store, count_id=count_id, content_hash=content_hash, counted_at=counted_at, received_at=now
            )
    except IntegrityError:
        raise ReceiptIdReused(details={"count_id": count_id}) from None
    apply_movements(rows, changes, reason=MovementReason.COUNT, reference=f"count:{store.code}:{count_id}", actor=actor,
           note=f"counted at {counted_at.isoformat()}", now=now)
    StockCountLine.objects.bulk_create(
        [StockCountLine(count=count, product=products[o["sku"]], counted=o["counted"], ledger_as_of=o["ledger_as_of"],
                        adjustment=o["adjustment"]) for o in out]
    )
    flag_for_count(store_id=store.pk, product_ids=[p.pk for p in products.values()], flagged=False)
    result = {"count_id": count_id, "counted_at": counted_at.isoformat(), "lines": out}
    StockCount.objects.filter(pk=count.pk).update(result=result)
    return result, False


# --- goods receipts -------------------------------------------------------------------------------------------------


@transaction.atomic
def receive_goods(
    *, store: Store, receipt_id: str, source: str, lines: dict[str, int], content_hash: str, till: str = "",
    actor: str | None = None,
) -> tuple[dict, bool]:
    """Book a delivery into the store's stock (on hand up). Returns (result, replayed). `actor` (e.g. "staff:lan"
    for an admin import) replaces the till as the ledger's actor."""
    now = timezone.now()
    first = GoodsReceipt.objects.filter(store=store, receipt_id=receipt_id).first()
    if first is not None:
        if first.content_hash != content_hash and not goods_receipt_matches(first, lines=lines):
            raise ReceiptIdReused(details={"receipt_id": receipt_id})
        return first.result, True
    products = _products_for(lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=True)
    try:
        with transaction.atomic():
            receipt = GoodsReceipt.objects.create(
                store=store, receipt_id=receipt_id, content_hash=content_hash, source=source[:120], received_at=now,
                lines=[{"sku": sku, "qty": qty} for sku, qty in sorted(lines.items())],
            )
    except IntegrityError:
        first = GoodsReceipt.objects.get(store=store, receipt_id=receipt_id)
        if first.content_hash != content_hash and not goods_receipt_matches(first, lines=lines):
            raise ReceiptIdReused(details={"receipt_id": receipt_id}) from None
        return first.result, True
    apply_movements(
        rows,
        [((store.pk, products[sku].pk), StockDelta(on_hand=qty)) for sku, qty in sorted(lines.items())],
        reason=MovementReason.GOODS_RECEIPT, reference=f"goods:{store.code}:{receipt_id}", actor=actor or till_actor(store, till),
        note=source[:300], now=now,
    )
    result = {"receipt_id": receipt_id, "source": source, "received_at": now.isoformat(),
              "lines": [{"sku": sku, "qty": qty} for sku, qty in sorted(lines.items())]}
    GoodsReceipt.objects.filter(pk=receipt.pk).update(result=result)
    return result, False


# --- transfers ------------------------------------------------------------------------------------------------------


def transfer_result(transfer: StockTransfer) -> dict:
    return {
        "id": transfer.pk,
        "transfer_id": transfer.transfer_id,
        "from_store": transfer.from_store.code,
        "to_store": transfer.to_store.code,
        "status": transfer.status,
        "shipped_at": transfer.shipped_at.isoformat(),
        "received_at": transfer.received_at.isoformat() if transfer.received_at else None,
        "lines": [
            {"sku": line.product.sku, "shipped_qty": line.shipped_qty, "received_qty": line.received_qty,
             "discrepancy": line.discrepancy}
            for line in transfer.lines.select_related("product").order_by("id")
        ],
    }


@transaction.atomic
def ship_transfer(
    *, store: Store, to_store_code: str, transfer_id: str, lines: dict[str, int], content_hash: str, till: str = "",
    note: str = "",
) -> tuple[dict, bool]:
    """Ship units to another store: on hand down here (never into reserved or quarantined units), in transit until
    the other store receives them. Returns (result, replayed)."""
    now = timezone.now()
    first = StockTransfer.objects.filter(from_store=store, transfer_id=transfer_id).first()
    if first is not None:
        if first.content_hash != content_hash:
            raise ReceiptIdReused(details={"transfer_id": transfer_id})
        return transfer_result(first), True
    to_store = Store.objects.filter(code=to_store_code, is_active=True).exclude(pk=store.pk).first()
    if to_store is None:
        raise InvalidInput("Unknown destination store.", details={"to_store": to_store_code})
    products = _products_for(lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=False)
    short = []
    for sku, qty in sorted(lines.items()):
        can = _till_sellable(rows.get((store.pk, products[sku].pk)))
        if qty > can:
            short.append({"store": store.code, "sku": sku, "requested": qty, "available": can})
    if short:
        raise InsufficientStock(short, "Not enough units on hand and not reserved to ship.")
    try:
        with transaction.atomic():
            transfer = StockTransfer.objects.create(
                from_store=store, to_store=to_store, transfer_id=transfer_id, content_hash=content_hash, shipped_at=now,
                note=note[:300],
            )
    except IntegrityError:
        first = StockTransfer.objects.get(from_store=store, transfer_id=transfer_id)
        if first.content_hash != content_hash:
            raise ReceiptIdReused(details={"transfer_id": transfer_id}) from None
        return transfer_result(first), True
    StockTransferLine.objects.bulk_create(
        [StockTransferLine(transfer=transfer, product=products[sku], shipped_qty=qty) for sku, qty in sorted(lines.items())]
    )
    apply_movements(
        rows,
        [((store.pk, products[sku].pk), StockDelta(on_hand=-qty)) for sku, qty in sorted(lines.items())],
        reason=MovementReason.TRANSFER_OUT, reference=transfer.reference, actor=till_actor(store, till),
        note=f"to {to_store.code}", now=now,
    )
    return transfer_result(transfer), False


@transaction.atomic
def receive_transfer(
    *, store: Store, transfer_pk: int, received: dict[str, int], content_hash: str, till: str = ""
) -> tuple[dict, bool]:
    """Book what arrived of a transfer to this store: on hand up by the units received; shipped minus received is
    recorded per line as the discrepancy (SKUs not listed arrived with 0). Returns (result, replayed)."""
    now = timezone.now()
    transfer = (
        StockTransfer.objects.select_for_update().select_related("from_store", "to_store")
        .filter(pk=transfer_pk, to_store=store).first()
    )
    if transfer is None:
        raise TransferNotFound(details={"transfer": transfer_pk})
    if transfer.status == StockTransfer.Status.RECEIVED:
        if transfer.receive_hash != content_hash:
            raise TransferAlreadyReceived(details={"transfer": transfer_pk})
        return transfer_result(transfer), True
    lines = {line.product.sku: line for line in transfer.lines.select_related("product")}
    extra = set(received) - lines.keys()
    if extra:
        raise InvalidInput("These SKUs were not shipped in this transfer.", details={"skus": sorted(extra)})
    rows = _lock_rows(store, [line.product_id for line in lines.values()], now=now, create_missing=True)
    changes = []
    discrepancies = []
    for sku, line in sorted(lines.items()):
        qty = received.get(sku, 0)
        StockTransferLine.objects.filter(pk=line.pk).update(received_qty=qty)
        if qty:
            changes.append(((store.pk, line.product_id), StockDelta(on_hand=qty)))
        if qty != line.shipped_qty:
            discrepancies.append(f"{sku}: shipped {line.shipped_qty}, received {qty}")
    apply_movements(
        rows, changes, reason=MovementReason.TRANSFER_IN, reference=transfer.reference, actor=till_actor(store, till),
        note=("discrepancy " + "; ".join(discrepancies)) if discrepancies else f"from {transfer.from_store.code}",
        now=now,
    )
    StockTransfer.objects.filter(pk=transfer.pk).update(
        status=StockTransfer.Status.RECEIVED, received_at=now, receive_hash=content_hash
    )
    transfer.refresh_from_db()
    return transfer_result(transfer), False


# --- pickups --------------------------------------------------------------------------------------------------------


def _pickup_code_here(store: Store, code: str, *, live_only: bool):
    from orders.models import PickupCode

    codes = PickupCode.objects.filter(code=code.strip().upper(), fulfillment__store_id=store.pk)
    if live_only:
        codes = codes.filter(is_live=True)
    found = codes.select_related("fulfillment__order").order_by("-is_live", "-id").first()
    if found is None:
        raise PickupNotFound(details={"code": code})
    return found


def pickup_at_store(*, store: Store, code: str):
    """The pickup with this code at this store (the live one, else the latest one). Another store's code is not
    found (404)."""
    return _pickup_code_here(store, code, live_only=False)


def hand_over_pickup(*, store: Store, code: str, till: str = ""):
    """The customer collects: the fulfillment becomes `collected` and its stock is committed (orders service).
    Handing over again returns the collected pickup (idempotent)."""
    from orders.exceptions import InvalidTransition
    from orders.models import FulfillmentStatus
    from orders.services import transition_fulfillment

    pickup = _pickup_code_here(store, code, live_only=False)
    if pickup.fulfillment.status == FulfillmentStatus.COLLECTED:
        return pickup, True
    try:
        transition_fulfillment(
            fulfillment=pickup.fulfillment_id, to=FulfillmentStatus.COLLECTED, actor=till_actor(store, till)
        )
    except InvalidTransition:
        pickup.fulfillment.refresh_from_db()
        if pickup.fulfillment.status == FulfillmentStatus.COLLECTED:  # a concurrent handover of the same code
            return pickup, True
        raise
    pickup.fulfillment.refresh_from_db()
    return pickup, False


__all__ = [
    "CountLine", "Outcome", "Sale", "SaleLine", "Tender", "apply_sale", "hand_over_pickup",
    "ledger_on_hand_as_of", "pickup_at_store", "receive_goods", "receive_transfer", "record_count",
    "ship_transfer", "sync_sales", "void_receipt",
]
