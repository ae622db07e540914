"""The tills' prices against the policy: each synced receipt is priced as the policy would have at its time; what
differs becomes a price exception in the ops queue (the sale stands: the goods have left)."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from inventory.models import Store

from . import engine
from .models import CodeUse, PriceException
from .services import commit, normalize_code, price


@dataclass(frozen=True)
class TillLine:
    sku: str
    qty: int
    unit_price_vnd: int
    discount_vnd: int = 0


def check_receipt(
    *, store: Store, receipt_id: str, sold_at: datetime, lines: list[TillLine], codes: list[str],
    member_phone: str | None, override_reason: str = "", override_staff: str = "",
    policy: engine.Policy | None = None,
) -> list[PriceException]:
    """A till receipt against the policy in force at its time, in the sync's transaction. The sale stands whatever
    the answer; each line charged other than the policy (beyond PRICING_EXCEPTION_TOLERANCE_VND), each code that
    could not be taken and each promotion over its budget becomes a PriceException for the ops queue. A manager
    override (reason and staff id from the till) is recorded as such. Codes and budgets are taken as for an order."""
    channel = settings.PRICING_TILL_CHANNEL
    reference = f"pos:{store.code}:{receipt_id}"
    qty: dict[str, int] = {}
    charged: dict[str, int] = {}
    for line in lines:
        qty[line.sku] = qty.get(line.sku, 0) + line.qty
        charged[line.sku] = charged.get(line.sku, 0) + line.qty * line.unit_price_vnd - line.discount_vnd
    priced = price(channel=channel, lines=qty, store=store, member_phone=member_phone, codes=codes, at=sold_at,
                   strict_codes=False, policy=policy)
    exceptions: list[PriceException] = []
    base = dict(store=store, receipt_id=receipt_id, sold_at=sold_at, policy_version=priced.policy_version,
                override_reason=override_reason[:300], override_staff=override_staff[:64])
    given = {normalize_code(c) for c in codes if normalize_code(c)}
    granted = {c.code for c in priced.codes}
    for text in sorted(given - granted):
        exceptions.append(PriceException(kind=PriceException.Kind.CODE_REFUSED, detail=f"code {text} not valid", **base))
    tolerance = settings.PRICING_EXCEPTION_TOLERANCE_VND
    for line in priced.lines:
        diff = charged[line.sku] - line.net_vnd
        if abs(diff) <= tolerance:
            continue
        kind = (PriceException.Kind.OVERRIDE if override_reason else
                PriceException.Kind.BELOW_POLICY if diff < 0 else PriceException.Kind.ABOVE_POLICY)
        exceptions.append(PriceException(
            kind=kind, sku=line.sku, qty=line.qty, expected_vnd=line.net_vnd, charged_vnd=max(charged[line.sku], 0),
            difference_vnd=diff, detail=", ".join(a.promotion for a in priced.applied if dict(a.lines).get(line.sku))[:300],
            **base,
        ))
    for problem in commit(priced=priced, reference=reference, channel=channel, store_code=store.code,
                          member_phone=member_phone, at=sold_at, strict=False, status=CodeUse.Status.CONSUMED):
        what, _, name = problem.partition(":")
        kind = PriceException.Kind.OVER_BUDGET if what == "over_budget" else PriceException.Kind.CODE_REFUSED
        exceptions.append(PriceException(kind=kind, detail=f"{what.replace('_', ' ')}: {name}", **base))
    return PriceException.objects.bulk_create(exceptions) if exceptions else []
