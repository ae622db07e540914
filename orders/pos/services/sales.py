"""Till sales: batches of receipts synced from (possibly offline) tills, each applied in full or not at all, with its
stock and its points. See orders.pos.services for the selling policy and the counts-and-late-receipts rules."""


from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from inventory.exceptions import UnknownSku
from inventory.models import EventKind, MovementReason, Product, Store
from inventory.services import (
    FloorTake,
    ShopFloor,
    StockChange,
    apply_movement_batch,
)
from loyalty import conf as loyalty_conf
from loyalty import services as loyalty
from loyalty.models import Member
from loyalty.phones import normalize_phone
from o2o.domain_errors import DomainError
from orders.pos import fast_paths
from orders.pos.exceptions import (
    MemberRequired,
    ReceiptIdReused,
    TenderMismatch,
)
from orders.pos.models import (
    StockCountLine,
    TillReceipt,
    TillReceiptLine,
)
from orders.pos.services.common import MONEY_TENDERS, _lock_rows, _source, till_actor
from orders.pricing import engine as pricing_engine
from orders.pricing import tills as pricing
from orders.services import reconcile_taken, takeable


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
    """One receipt as the till sent it (validated). `content_hash` identifies its content for replays (the codes,
    promotions and override included: the same id with other codes is a reused id)."""

    receipt_id: str
    sold_at: datetime
    lines: tuple[SaleLine, ...]
    tenders: tuple[Tender, ...]
    content_hash: str
    member_phone: str | None = None
    codes: tuple[str, ...] = ()  # codes the customer gave at the till
    promotions: tuple[dict, ...] = ()  # what the till applied, for the record: {promotion, code?, discount_vnd}
    override: dict | None = None  # a manager's price override: {reason, staff_id}

    @property
    def pricing(self) -> dict:
        """What the till said about its prices, as the receipt keeps it ({} when it said nothing)."""
        if not (self.codes or self.promotions or self.override):
            return {}
        return {"codes": list(self.codes), "promotions": [dict(p) for p in self.promotions], "override": self.override}

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


def sync_sales(*, store: Store, sales: list[Sale | Outcome], till: str = "") -> list[Outcome]:
    """Apply a batch of receipts in the order given; returns one Outcome per entry. Entries that are already an
    Outcome (the view found them invalid) are passed through.

    The receipts are applied in chunks of POS_SYNC_CHUNK_RECEIPTS, one transaction per chunk: the chunk's stock rows
    are locked once (one SELECT ... FOR UPDATE in primary-key order), each receipt is checked against the locked
    quantities as left by the receipts before it, its points are posted in a savepoint of its own, and the chunk's
    movements, receipts and lines are written in a few statements at the end. Each applied receipt's prices are
    checked against the pricing policy in the same transaction (orders.pricing.tills.check_receipt: what differs is
    queued as a price exception, codes are consumed; a sale is never refused for its prices). A rejected receipt
    writes nothing
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
    # The pricing policy is read once per batch (the process's cached copy, one indexed read to see it is current).
    policy = pricing.policy_for({line.sku for _, sale in pending for line in sale.lines}) if pending else None
    size = max(1, settings.POS_SYNC_CHUNK_RECEIPTS)
    for start in range(0, len(pending), size):
        chunk = pending[start:start + size]
        taken: list[int] = []
        try:
            with transaction.atomic():
                answers = _apply_chunk(store=store, chunk=chunk, till=till, products=products, known=known,
                                       taken=taken, policy=policy)
        except DatabaseError:
            taken = []
            answers = {index: _apply_one(store=store, sale=sale, till=till, products=products, known=known,
                                         taken=taken, policy=policy)
                       for index, sale in chunk}
        for index, outcome in answers.items():
            outcomes[index] = outcome
        # The online commitments the chunk took, reconciled in this request right after its commit (each holder in
        # a transaction of its own; what fails stays pending for the periodic task).
        reconcile_taken(ids=taken)
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
    takes: dict[int, FloorTake]  # per product: what the sale took of the ledger (free, reserved, beyond)
    late: dict[int, int]  # product -> the first count that already saw this sale
    short: list[dict]  # products sold beyond what the ledger had on hand at all (a shortfall, count needed)

    @property
    def took(self) -> dict[int, int]:
        """Units off the ledger's on hand per product (free and reserved; not the shortfall)."""
        return {pid: t.free + t.reserved for pid, t in self.takes.items()}


def sale_reference(store: Store, receipt_id: str) -> str:
    """The sale's ledger reference: its movements', and the cause on every reservation it takes."""
    return f"pos:{store.code}:{receipt_id}"


def _plan_sale(
    *, store: Store, sale: Sale, per_product: dict[int, int], products: dict[str, Product], floor: ShopFloor,
    late_counts: LateCounts,
) -> _Plan:
    """What a receipt takes from each locked row: a sale that happened is never refused for stock. Units free at
    the till first, then units reserved for online checkouts and orders (the shop floor takes them; their holders
    are reconciled after the commit), then beyond the ledger (a shortfall: the row is flagged for a count)."""
    late = {}
    for pid in per_product:
        seen_by = [pk for counted_at, pk in late_counts.get(pid, ()) if counted_at >= sale.sold_at]
        if seen_by:
            late[pid] = min(seen_by)
    takes: dict[int, FloorTake] = {}
    short: list[dict] = []
    cause = sale_reference(store, sale.receipt_id)
    for pid, qty in sorted(per_product.items()):
        if pid in late:  # the count saw these units gone: taking them again would count them twice
            continue
        take = floor.take((store.pk, pid), qty, cause=cause)
        takes[pid] = take
        if take.beyond:
            sku = next(line.sku for line in sale.lines if products[line.sku].pk == pid)
            short.append({"product_id": pid, "sku": sku, "requested": qty, "on_ledger": take.free + take.reserved,
                          "shortfall": take.beyond})
    return _Plan(takes=takes, late=late, short=short)


def _check_prices(*, store: Store, sale: Sale, policy: pricing_engine.Policy | None) -> pricing.ReceiptCheck:
    """The receipt's prices against the policy at its time of sale (after its points: a receipt refused for them
    never reaches this, so a rejected receipt queues nothing and consumes no code)."""
    override = sale.override or {}
    return pricing.check_receipt(
        store=store, receipt_id=sale.receipt_id, sold_at=sale.sold_at,
        lines=[pricing.TillLine(line.sku, line.qty, line.unit_price_vnd, line.discount_vnd) for line in sale.lines],
        codes=list(sale.codes), member_phone=_e164(sale.member_phone) if sale.member_phone else None,
        override_reason=override.get("reason", ""), override_staff=override.get("staff_id", ""), policy=policy,
        reported_promotions=[p["promotion"] for p in sale.promotions],
    )


def _build_receipt(
    *, store: Store, sale: Sale, plan: _Plan, products: dict[str, Product], points: dict | None, till: str,
    now: datetime, check: pricing.ReceiptCheck,
) -> tuple[TillReceipt, list[TillReceiptLine], dict, list[StockChange]]:
    """The receipt row, its lines (receipt not yet set), its result and its stock movements — unsaved."""
    note = ""
    if plan.short:
        note = "shortfall (sold beyond the ledger, count needed): " + ", ".join(
            f"{e['sku']}×{e['shortfall']}" for e in plan.short
        )
    reference = sale_reference(store, sale.receipt_id)
    moving = [(pid, take) for pid, take in sorted(plan.takes.items()) if take.units]
    changes = [
        StockChange(
            pair=(store.pk, pid), delta=take.leaving(), reference=reference, note=note,
            idempotency_key=f"pos:{store.pk}:{sale.receipt_id}:sale" + (f"#{n}" if len(moving) > 1 else ""),
        )
        for n, (pid, take) in enumerate(moving)
    ]
    remaining = defaultdict(int, plan.took)  # a product a count already saw took nothing
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
    skus = {products[line.sku].pk: line.sku for line in sale.lines}
    result = {
        "receipt_id": sale.receipt_id,
        "sold_at": sale.sold_at.isoformat(),
        "total_vnd": sale.total_vnd,
        # What the pricing policy would have charged for these goods, and how many price exceptions the receipt
        # queued for operations (the sale stands either way).
        "policy_total_vnd": check.policy_total_vnd,
        "price_exceptions": len(check.exceptions),
        "lines": out_lines,
        "needs_count": bool(plan.short),
        # Units the sale took from online checkouts and orders at this store: their holders are re-routed or told.
        "taken_from_online": [{"sku": skus[pid], "qty": t.reserved} for pid, t in sorted(plan.takes.items())
                              if t.reserved],
        "points": points,
    }
    receipt = TillReceipt(
        store=store, receipt_id=sale.receipt_id, content_hash=sale.content_hash, sold_at=sale.sold_at, received_at=now,
        till=till[:150], total_vnd=sale.total_vnd, money_vnd=sale.money_vnd, points_redeemed=sale.points,
        member_phone=points["member"] if points else "", earn_posting_id=earn_id, redeem_posting_id=redeem_id,
        tenders=[t.__dict__ for t in sale.tenders], result=result, pricing=sale.pricing,
    )
    return receipt, lines, result, changes


def _e164(phone: str) -> str | None:
    try:
        return normalize_phone(phone)
    except DomainError:
        return None


def _apply_chunk(
    *, store: Store, chunk: list[tuple[int, Sale]], till: str, products: dict[str, Product],
    known: dict[str, tuple[str, dict]], taken: list[int], policy: pricing_engine.Policy | None = None,
) -> dict[int, Outcome]:
    """One transaction for a chunk of receipts (see sync_sales). Adds what it applied to `known`, and the ids of the
    reservations it took (TakenReservation) to `taken`, on success."""
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
    rows = _lock_rows(store, pids, now=now, create_missing=True)
    floor = ShopFloor(rows, takeable=takeable)
    # Under the row locks: a concurrent resend of these receipts has committed or will wait for this chunk.
    first = {
        rid: (content_hash, result)
        for rid, content_hash, result in TillReceipt.objects.filter(
            store=store, receipt_id__in=[sale.receipt_id for _, sale, _ in checked]
        ).values_list("receipt_id", "content_hash", "result")
    }
    late_counts = _late_counts(store, pids, min(sale.sold_at for _, sale, _ in checked))
    members = loyalty.lock_members_for_phones({sale.member_phone for _, sale, _ in checked if sale.member_phone})
    # A member's balance is read once at the end of the chunk, unless the member comes back in a later receipt.
    unread: dict[int, dict] = {}
    seen: dict[str, tuple[str, dict]] = {}
    receipts: list[tuple[TillReceipt, list[TillReceiptLine]]] = []
    changes: list[StockChange] = []
    for index, sale, per_product in checked:
        prior = first.get(sale.receipt_id) or seen.get(sale.receipt_id) or known.get(sale.receipt_id)
        if prior is not None:
            out[index] = _replayed(sale, *prior)
            continue
        plan = _plan_sale(
            store=store, sale=sale, per_product=per_product, products=products, late_counts=late_counts, floor=floor,
        )
        try:
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
            for take in plan.takes.values():
                floor.undo(take)
            out[index] = _rejected(sale, exc)
            continue
        check = _check_prices(store=store, sale=sale, policy=policy)
        receipt, lines, result, moves = _build_receipt(
            store=store, sale=sale, plan=plan, products=products, points=points, till=till, now=now, check=check
        )
        if points is not None:
            unread[points["_member_id"]] = result["points"]
        receipts.append((receipt, lines))
        changes.extend(moves)
        seen[sale.receipt_id] = (sale.content_hash, result)
        out[index] = Outcome(sale.receipt_id, "applied", result=result)
    if unread:
        for pk, available in Member.objects.filter(pk__in=list(unread)).values_list("pk", "available"):
            unread[pk]["available"] = available
    apply_movement_batch(rows, changes, reason=MovementReason.SALE, actor=actor, now=now)
    taken_ids = floor.write(kind=EventKind.SALE, actor=actor)
    fast_paths.insert_receipts([receipt for receipt, _ in receipts])
    for receipt, lines in receipts:
        for line in lines:
            line.receipt = receipt
    all_lines = [line for _, lines in receipts for line in lines]
    fast_paths.insert_receipt_lines(all_lines)
    known.update(seen)
    taken.extend(taken_ids)
    return out


def _apply_one(
    *, store: Store, sale: Sale, till: str, products: dict[str, Product], known: dict[str, tuple[str, dict]],
    taken: list[int] | None = None, policy: pricing_engine.Policy | None = None,
) -> Outcome:
    """One receipt in its own transaction (sync_sales' fallback, and what bench/pos/run.py times). The reservations
    it took are added to `taken` for the caller to reconcile, or reconciled here without it (as apply_sale does)."""
    if sale.receipt_id in known:
        return _replayed(sale, *known[sale.receipt_id])
    try:
        result = apply_sale(store=store, sale=sale, till=till, products=products, taken=taken, policy=policy)
    except DomainError as exc:
        return _rejected(sale, exc)
    if result.get("status") == "duplicate":
        return Outcome(sale.receipt_id, "duplicate", result=result["first"])
    known[sale.receipt_id] = (sale.content_hash, result)
    return Outcome(sale.receipt_id, "applied", result=result)


def apply_sale(
    *, store: Store, sale: Sale, till: str = "", products: dict[str, Product] | None = None,
    taken: list[int] | None = None, policy: pricing_engine.Policy | None = None,
) -> dict:
    """Apply one receipt in its own transaction: stock down (never refused for stock: see _plan_sale), points
    redeemed and earned, its prices checked against the policy (`policy`: the batch's; else the one in force), the
    receipt recorded — all or nothing. (sync_sales applies whole chunks at a time and falls
    back to this.) The reservations the sale took are reconciled after the commit: by the caller when it passes
    `taken` (the TakenReservation ids are added to it), else here.

    Returns the receipt's result (also stored on the receipt); `{"status": "duplicate", "first": ...}` if the same
    receipt was applied meanwhile. Raises ReceiptIdReused, UnknownSku, TenderMismatch, MemberRequired, InvalidPhone,
    InsufficientPoints."""
    ids: list[int] = []
    result = _apply_sale(store=store, sale=sale, till=till, products=products, taken=ids, policy=policy)
    if taken is not None:
        taken.extend(ids)
    else:
        reconcile_taken(ids=ids)
    return result


def _apply_sale(
    *, store: Store, sale: Sale, till: str, products: dict[str, Product] | None, taken: list[int],
    policy: pricing_engine.Policy | None,
) -> dict:
    now = timezone.now()
    actor = till_actor(store, till)
    products = products if products is not None else {}
    wanted = {line.sku for line in sale.lines}
    if not wanted <= products.keys():
        products = {**products, **{p.sku: p for p in Product.objects.filter(sku__in=wanted, is_active=True)}}
    per_product = _check_sale(sale, products)
    try:
        with transaction.atomic():
            rows = _lock_rows(store, per_product.keys(), now=now, create_missing=True)
            floor = ShopFloor(rows, takeable=takeable)
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
                late_counts=_late_counts(store, per_product, sale.sold_at), floor=floor,
            )
            points = _post_points(store=store, sale=sale, actor=actor, now=now)
            if policy is None:
                policy = pricing.policy_for(wanted)
            check = _check_prices(store=store, sale=sale, policy=policy)
            receipt, lines, result, changes = _build_receipt(
                store=store, sale=sale, plan=plan, products=products, points=points, till=till, now=now, check=check
            )
            apply_movement_batch(rows, changes, reason=MovementReason.SALE, actor=actor, now=now)
            receipt.save(force_insert=True)
            for line in lines:
                line.receipt = receipt
            TillReceiptLine.objects.bulk_create(lines)
            taken.extend(floor.write(kind=EventKind.SALE, actor=actor))
    except IntegrityError:
        taken.clear()
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
