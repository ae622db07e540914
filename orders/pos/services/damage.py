"""Goods found damaged on the shelf, booked at the till: into quarantine, taken from reservations if need be."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.models import EventKind, MovementReason, Store
from inventory.services import ShopFloor, apply_movements
from orders.pos.models import DamageReport
from orders.pos.services.common import _lock_rows, _products_for, first_answer, sku_lines, till_actor
from orders.services import reconcile_taken, takeable


def damage_reference(store: Store, report_id: str) -> str:
    return f"damage:{store.code}:{report_id}"


def report_damage(
    *, store: Store, report_id: str, lines: dict[str, int], content_hash: str, note: str = "", till: str = ""
) -> tuple[dict, bool]:
    """Damaged units found on the shelf go to quarantine (unavailable): the ones free at the till first, then units
    reserved for online checkouts and orders (the shop floor takes them; their holders are reconciled right after
    the commit: holds told, fulfilments re-routed, pickups offered a change), and units the ledger did not have at
    all are a shortfall (the row flagged for a count). Never refused for stock. Idempotent per report id: the same
    report again returns the first answer; the same id with other content is refused (ReceiptIdReused). Returns
    (result, replayed)."""
    taken: list[int] = []
    out = _report_damage(store=store, report_id=report_id, lines=lines, content_hash=content_hash, note=note,
                         till=till, taken=taken)
    reconcile_taken(ids=taken)
    return out


@transaction.atomic
def _report_damage(
    *, store: Store, report_id: str, lines: dict[str, int], content_hash: str, note: str, till: str, taken: list[int]
) -> tuple[dict, bool]:
    now = timezone.now()
    first = DamageReport.objects.filter(store=store, report_id=report_id).first()
    if first is not None:
        return first_answer(first, content_hash=content_hash, lines=lines, details={"report_id": report_id})
    products = _products_for(lines)
    rows = _lock_rows(store, [p.pk for p in products.values()], now=now, create_missing=True)
    try:
        with transaction.atomic():
            report = DamageReport.objects.create(
                store=store, report_id=report_id, content_hash=content_hash, note=note[:300], reported_at=now,
                lines=sku_lines(lines),
            )
    except IntegrityError:  # the same id booked meanwhile (a concurrent resend)
        first = DamageReport.objects.get(store=store, report_id=report_id)
        return first_answer(first, content_hash=content_hash, lines=lines, details={"report_id": report_id})
    reference = damage_reference(store, report_id)
    actor = till_actor(store, till)
    floor = ShopFloor(rows, takeable=takeable)
    takes = {sku: floor.take((store.pk, products[sku].pk), qty, cause=reference) for sku, qty in sorted(lines.items())}
    apply_movements(rows, [(t.pair, t.quarantined()) for t in takes.values()], reason=MovementReason.DAMAGE,
                    reference=reference, actor=actor, note=note[:300] or "found damaged on the shelf", now=now)
    taken.extend(floor.write(kind=EventKind.DAMAGE, actor=actor))
    result = {
        "report_id": report_id, "reported_at": now.isoformat(), "note": note,
        "lines": [{"sku": sku, "qty": t.units, "quarantined": t.free + t.reserved, "taken_from_online": t.reserved,
                   "shortfall": t.beyond} for sku, t in takes.items()],
        "needs_count": any(t.beyond for t in takes.values()),
    }
    DamageReport.objects.filter(pk=report.pk).update(result=result)
    return result, False
