"""The tills' prices against the policy: each synced receipt is priced as the policy would have at its time; what
differs becomes a price exception in the ops queue (the sale stands: the goods have left)."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings

from inventory.exceptions import UnknownSku
from inventory.models import Store

from . import engine, selectors
from .engine import Applied, PricedCart
from .models import CodeUse, PriceException
from .services import commit, normalize_code, price

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TillLine:
    sku: str
    qty: int
    unit_price_vnd: int
    discount_vnd: int = 0


@dataclass(frozen=True)
class ReceiptCheck:
    """What the policy would have charged (None: it could not price the receipt, see check_receipt) and the price
    exceptions queued for the receipt."""

    policy_total_vnd: int | None
    exceptions: tuple[PriceException, ...] = ()


def policy_for(skus: Iterable[str]) -> engine.Policy:
    """The policy in force, for a batch of receipts selling `skus` (active products). A process's cached policy
    that does not know one of them (a product added since it was loaded) is loaded again, once per batch, rather
    than leaving the receipt unpriced."""
    policy = selectors.active_policy()
    if not set(skus) <= policy.base_prices.keys():
        selectors.forget_cached_policy()
        policy = selectors.active_policy()
    return policy


def check_receipt(
    *, store: Store, receipt_id: str, sold_at: datetime, lines: list[TillLine], codes: list[str],
    member_phone: str | None, override_reason: str = "", override_staff: str = "",
    policy: engine.Policy | None = None, reported_promotions: Iterable[str] = (),
) -> ReceiptCheck:
    """A till receipt against the policy in force at its time (the till's channel, its store, the member and
    codes it gave), in the sync's transaction. The sale stands whatever the answer. Queued as PriceException:

    - each code the policy refuses (unknown, expired, used up, someone else's): `code_refused`; a single-use code
      is consumed by the first receipt that applies it (CodeUse consumed), so a second receipt gets this;
    - when the receipt's goods total differs from the policy's by more than PRICING_EXCEPTION_TOLERANCE_VND, each
      line whose net (qty × unit price - discount) differs: `below_policy` / `above_policy`, or `override` when the
      till sent a manager's override (its reason and staff id are kept) — or the receipt as a whole when no single
      line is beyond the tolerance. A till that shares a cart discount out over its lines otherwise than the engine
      but charges the policy's total is not an exception;
    - each code or capped promotion the policy applied that could no longer be taken: `code_refused` / `over_budget`.

    Codes and budgets are taken as for an order (consumed at once). A replay of the receipt is not checked again
    (the sync answers it from the first result). Nothing is written before the receipt is priced, so a receipt the
    policy cannot price (a SKU the policy does not know) is left unpriced (policy_total_vnd None), never refused."""
    channel = settings.PRICING_TILL_CHANNEL
    reference = f"pos:{store.code}:{receipt_id}"
    qty: dict[str, int] = {}
    charged: dict[str, int] = {}
    for line in lines:
        qty[line.sku] = qty.get(line.sku, 0) + line.qty
        charged[line.sku] = charged.get(line.sku, 0) + line.qty * line.unit_price_vnd - line.discount_vnd
    try:
        priced = price(channel=channel, lines=qty, store=store, member_phone=member_phone, codes=codes, at=sold_at,
                       strict_codes=False, policy=policy)
    except UnknownSku as exc:
        log.warning("till receipt %s not priced: %s", reference, exc.details)
        return ReceiptCheck(policy_total_vnd=None)
    exceptions: list[PriceException] = []
    base = dict(store=store, receipt_id=receipt_id, sold_at=sold_at, policy_version=priced.policy_version,
                override_reason=override_reason[:300], override_staff=override_staff[:64])
    given = {normalize_code(c) for c in codes if normalize_code(c)}
    granted = {c.code for c in priced.codes}
    for text in sorted(given - granted):
        exceptions.append(PriceException(kind=PriceException.Kind.CODE_REFUSED, detail=f"code {text} not valid", **base))
    tolerance = settings.PRICING_EXCEPTION_TOLERANCE_VND
    till_said = ", ".join(sorted(set(reported_promotions)))

    def kind(diff: int) -> str:
        if override_reason:
            return PriceException.Kind.OVERRIDE
        return PriceException.Kind.BELOW_POLICY if diff < 0 else PriceException.Kind.ABOVE_POLICY

    def detail(promotions: Iterable[str]) -> str:
        text = "policy: " + (", ".join(promotions) or "no promotion")
        return (text + f"; till: {till_said}" if till_said else text)[:300]

    charged_total = sum(charged.values())
    if abs(charged_total - priced.total_vnd) > tolerance:
        flagged = 0
        for line in priced.lines:
            diff = charged[line.sku] - line.net_vnd
            if abs(diff) <= tolerance:
                continue
            flagged += 1
            exceptions.append(PriceException(
                kind=kind(diff), sku=line.sku, qty=line.qty, expected_vnd=line.net_vnd,
                charged_vnd=max(charged[line.sku], 0), difference_vnd=diff,
                detail=detail(a.promotion for a in priced.applied if dict(a.lines).get(line.sku)), **base,
            ))
        if not flagged:  # small differences on several lines that add up beyond the tolerance
            diff = charged_total - priced.total_vnd
            exceptions.append(PriceException(
                kind=kind(diff), qty=sum(qty.values()), expected_vnd=priced.total_vnd, charged_vnd=charged_total,
                difference_vnd=diff, detail=detail(a.promotion for a in priced.applied), **base,
            ))
    given_by_till = replace(priced, applied=tuple(
        a for a in priced.applied if _till_gave(a, charged=charged, priced=priced, tolerance=tolerance,
                                                 reported=set(reported_promotions))
    ))
    for problem in commit(priced=given_by_till, reference=reference, channel=channel, store_code=store.code,
                          member_phone=member_phone, at=sold_at, strict=False, status=CodeUse.Status.CONSUMED):
        what, _, name = problem.partition(":")
        refused = PriceException.Kind.OVER_BUDGET if what == "over_budget" else PriceException.Kind.CODE_REFUSED
        exceptions.append(PriceException(kind=refused, detail=f"{what.replace('_', ' ')}: {name}", **base))
    saved = PriceException.objects.bulk_create(exceptions) if exceptions else []
    return ReceiptCheck(policy_total_vnd=priced.total_vnd, exceptions=tuple(saved))


def _till_gave(applied: Applied, *, charged: dict[str, int], priced: PricedCart, tolerance: int,
               reported: set[str]) -> bool:
    """Did the till give the customer this promotion of the policy's? Then it counts as a use (budget, code, the
    promotion's results); a promotion the till missed (the customer paid more) does not. The receipt at the policy's
    total: yes. Otherwise the till's own report when it sent one, else whether each line the promotion discounted
    was charged no more than the policy's net for it."""
    if abs(sum(charged.values()) - priced.total_vnd) <= tolerance:
        return True
    if reported:
        return applied.promotion in reported
    nets = {line.sku: line.net_vnd for line in priced.lines}
    return all(charged.get(sku, 0) <= nets[sku] + tolerance for sku, _ in applied.lines)
