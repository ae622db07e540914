"""Every write of pricing, and the one door every channel prices through (`price`).

- `price(...)`: a cart priced in a context (channel, store, member, time, codes) by the engine, with the codes
  checked first (unknown, expired, used up, someone else's, out of scope: 422s with their own codes).
- `commit(...)`: what an order or a till receipt applied, recorded in the caller's transaction: codes taken by
  conditional updates (a single-use code is taken once across all channels), capped promotions' budgets counted the
  same way (never past the cap), one PromotionApplication row per promotion for the results.
- `release(...)`: an order cancelled gives its codes and budgets back.
- `policy_changed()`: every change to the policy raises its version (caches and till snapshots reload).
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Min, Q
from django.utils import timezone
from django.utils.translation import gettext

from inventory.exceptions import UnknownSku
from inventory.models import Product, Store
from o2o.domain_errors import InvalidInput

from . import engine, selectors
from .exceptions import (
    BudgetExhausted,
    CodeExpired,
    CodeNotYours,
    CodeOutOfScope,
    CodeUsedUp,
    InvalidPromotion,
    UnknownCode,
)
from .models import (
    Code,
    CodeUse,
    PolicyVersion,
    PriceException,
    Promotion,
    PromotionApplication,
    PromotionMemberUse,
)

log = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a till


def normalize_code(text: str) -> str:
    return (text or "").strip().upper()


def policy_changed() -> int:
    """Raise the policy's version (call it in the transaction that changed the policy). Returns the new version."""
    selectors.forget_cached_policy()  # this process sees its own change at once (others within the recheck time)
    # The products as they stand go with the version: the next product check finds nothing to move it again for.
    fingerprint = selectors.products_fingerprint()
    updated = PolicyVersion.objects.filter(pk=1).update(version=F("version") + 1, changed_at=timezone.now(),
                                                        products_fingerprint=fingerprint)
    if not updated:
        try:
            with transaction.atomic():
                PolicyVersion.objects.create(pk=1, version=2, products_fingerprint=fingerprint)
        except IntegrityError:
            PolicyVersion.objects.filter(pk=1).update(version=F("version") + 1, changed_at=timezone.now(),
                                                      products_fingerprint=fingerprint)
    return selectors.policy_version()


# --- the context --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    phone: str | None = None
    tier: str | None = None


def customer(phone: str | None, *, policy: engine.Policy | None = None) -> Customer:
    """The member (and tier) behind a phone already normalised; not a member: no tier. With a `policy` that no tier
    changes (no tier-only promotion, no fee free for a tier), the tier is not read."""
    if not phone:
        return Customer()
    if policy is not None and not selectors.policy_uses_tiers(policy):
        return Customer(phone=phone)
    return Customer(phone=phone, tier=selectors.member_tier(phone))


def _grants(texts: list[str], *, who: Customer, at: datetime) -> tuple[tuple[engine.CodeGrant, ...], dict[str, Code]]:
    wanted = sorted({normalize_code(t) for t in texts if normalize_code(t)})
    found = selectors.codes_by_text(wanted)
    grants = []
    for text in wanted:
        code = found.get(text)
        if code is None or not code.promotion.is_active:
            raise UnknownCode(details={"code": text})
        if code.expires_at is not None and code.expires_at <= at:
            raise CodeExpired(details={"code": text, "expired_at": code.expires_at.isoformat()})
        if code.max_uses is not None and code.uses >= code.max_uses:
            raise CodeUsedUp(details={"code": text})
        if code.member_phone and code.member_phone != who.phone:
            raise CodeNotYours(details={"code": text})
        grants.append(engine.CodeGrant(code=text, promotion=code.promotion.code, value_vnd=code.value_vnd))
    return tuple(grants), found


def context(
    *, channel: str, store: Store | None, who: Customer, at: datetime, codes: tuple[engine.CodeGrant, ...] = (),
    policy: engine.Policy,
) -> engine.Context:
    return engine.Context(
        channel=channel, at=at, timezone=store.timezone if store else settings.PRICING_DEFAULT_TIMEZONE,
        store=store.code if store else None, member=who.phone, tier=who.tier, codes=codes,
        budgets=selectors.budgets_for(policy, member_phone=who.phone, channel=channel,
                                      store=store.code if store else None, at=at),
    )


def price(
    *, channel: str, lines: dict[str, int], store: Store | None = None, member_phone: str | None = None,
    codes: list[str] | None = None, at: datetime | None = None, delivery: engine.Delivery | None = None,
    strict_codes: bool = True, policy: engine.Policy | None = None,
) -> engine.PricedCart:
    """The priced cart. With `strict_codes`, a code that is unknown, expired, used up, someone else's or out of
    scope raises its 422 (the website's checkout); without, it is left out (a till's receipt is priced as the policy
    would have, and the refusal becomes a price exception)."""
    at = at or timezone.now()
    policy = policy or selectors.active_policy()
    who = customer(member_phone, policy=policy)
    grants: tuple[engine.CodeGrant, ...] = ()
    if codes:
        if strict_codes:
            grants, _ = _grants(codes, who=who, at=at)
        else:
            grants = tuple(g for g in (_lenient_grant(t, who=who, at=at) for t in codes) if g is not None)
    ctx = context(channel=channel, store=store, who=who, at=at, codes=grants, policy=policy)
    try:
        priced = engine.price_cart(policy, ctx, [engine.CartLine(s, q) for s, q in lines.items()], delivery=delivery)
    except engine.UnknownSkus as exc:
        raise UnknownSku(exc.skus) from exc
    if strict_codes:
        for outcome in priced.codes:
            if outcome.reason == "out_of_scope":
                raise CodeOutOfScope(details={"code": outcome.code})
    return priced


def _lenient_grant(text: str, *, who: Customer, at: datetime) -> engine.CodeGrant | None:
    try:
        grants, _ = _grants([text], who=who, at=at)
    except (UnknownCode, CodeExpired, CodeUsedUp, CodeNotYours):
        return None
    return grants[0] if grants else None


def priced_json(priced: engine.PricedCart) -> dict:
    """The breakdown as the API shows it and orders store it."""
    return {
        "policy_version": priced.policy_version,
        "lines": [
            {
                "sku": line.sku, "qty": line.qty, "base_price_vnd": line.base_price_vnd,
                "unit_price_vnd": line.unit_price_vnd, "price_source": line.price_source, "gross_vnd": line.gross_vnd,
                "discount_vnd": line.discount_vnd, "net_vnd": line.net_vnd,
                "discounts": [{"promotion": d.promotion, "amount_vnd": d.amount_vnd} for d in line.discounts],
            }
            for line in priced.lines
        ],
        "promotions": [
            {"promotion": a.promotion, "name": a.name, "kind": a.kind, "code": a.code, "discount_vnd": a.discount_vnd,
             "rule": a.rule, "lines": [{"sku": s, "discount_vnd": d} for s, d in a.lines]}
            for a in priced.applied
        ],
        "codes": [{"code": c.code, "promotion": c.promotion, "applied": c.applied, "reason": c.reason}
                  for c in priced.codes],
        "subtotal_vnd": priced.subtotal_vnd,
        "discount_vnd": priced.discount_vnd,
        "total_vnd": priced.total_vnd,
        "delivery_fee_vnd": priced.delivery_fee_vnd,
        "delivery_fee_rule": priced.fee_rule,
        "delivery_fee_reason": priced.fee_reason,
        "grand_total_vnd": priced.grand_total_vnd,
    }


def same_prices(a: dict, b: dict) -> bool:
    """Do two breakdowns charge the same (lines, discounts, fee)? What a promise showed against a re-pricing."""
    keys = ("subtotal_vnd", "discount_vnd", "total_vnd", "delivery_fee_vnd")
    lines = lambda d: [(x["sku"], x["qty"], x["net_vnd"]) for x in d["lines"]]  # noqa: E731
    return all(a.get(k) == b.get(k) for k in keys) and lines(a) == lines(b)


# --- recording what was applied -----------------------------------------------------------------------------------


def commit(
    *, priced: engine.PricedCart, reference: str, channel: str, store_code: str = "", member_phone: str | None = None,
    at: datetime | None = None, strict: bool = True, status: str = CodeUse.Status.RESERVED, fresh: bool = False,
    policy: engine.Policy | None = None,
) -> list[str]:
    """Record the codes and promotions a priced cart applied, in the caller's transaction.

    Codes and capped budgets are taken by conditional updates, so concurrent checkouts and tills never take a
    single-use code twice nor pass a cap. `strict` (web checkout): a code or budget lost to a concurrent use raises
    CodeUsedUp (422) or BudgetExhausted (409) and the caller's transaction rolls back. Not strict (a till receipt:
    the goods have left): what could not be taken is returned as problems ("code_refused:<code>",
    "over_budget:<promotion>") for the price-exception queue. A replay of the same reference takes nothing again
    (`fresh`: the reference was made in this transaction, so it cannot be a replay: no look). `policy`: the one the
    cart was priced with (its caps; no read of the promotions)."""
    at = at or timezone.now()
    problems: list[str] = []
    if not priced.applied:
        return problems
    if not fresh and PromotionApplication.objects.filter(reference=reference).exists():
        return problems  # already recorded (a replay)
    codes = {a.promotion for a in priced.applied}
    known = {p.code: p for p in policy.promotions if p.code in codes} if policy is not None else {}
    if known.keys() != codes:
        known = {p.code: selectors.promotion_data(p, None) for p in Promotion.objects.filter(code__in=codes)}
    taken: list[engine.Applied] = []
    for applied in priced.applied:
        promo = known[applied.promotion]
        if applied.code:
            ok = Code.objects.filter(code=applied.code).filter(
                Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses"))
            ).update(uses=F("uses") + 1)
            if not ok:
                if strict:
                    raise CodeUsedUp(details={"code": applied.code})
                problems.append(f"code_refused:{applied.code}")
                continue
            CodeUse.objects.create(
                code=Code.objects.only("pk").get(code=applied.code), reference=reference, status=status,
                channel=channel, store=store_code, member_phone=member_phone or "", discount_vnd=applied.discount_vnd,
                created_at=at,
            )
        if not _take_budget(promo, applied.discount_vnd, member_phone):
            if strict:
                raise BudgetExhausted(details={"promotion": promo.code})
            problems.append(f"over_budget:{promo.code}")
            continue
        taken.append(applied)
    if taken:
        # One multi-row INSERT in plain SQL (valid on PostgreSQL and SQLite): bulk_create's own cost per row was most
        # of the statement's.
        rows = [(selectors.promotion_id(a.promotion), reference, channel, store_code, member_phone or "", a.code or "",
                 a.discount_vnd, priced.total_vnd, False, connection.ops.adapt_datetimefield_value(at)) for a in taken]
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO pricing_promotionapplication (promotion_id, reference, channel, store, member_phone, "
                "code, discount_vnd, revenue_vnd, cancelled, at) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows)),
                [value for row in rows for value in row],
            )
    return problems


def _take_budget(promo: engine.Promotion, discount: int, member_phone: str | None) -> bool:
    """Count one use and its discount against the caps, only if they hold (one conditional update each)."""
    if promo.max_uses is None and promo.max_discount_vnd is None and promo.max_uses_per_member is None:
        return True
    pk = selectors.promotion_id(promo.code)
    if promo.max_uses is not None or promo.max_discount_vnd is not None:
        cond = Q(pk=pk)
        if promo.max_uses is not None:
            cond &= Q(uses__lt=F("max_uses"))
        if promo.max_discount_vnd is not None:
            cond &= Q(discount_given_vnd__lte=F("max_discount_vnd") - discount)
        if not Promotion.objects.filter(cond).update(uses=F("uses") + 1,
                                                       discount_given_vnd=F("discount_given_vnd") + discount):
            return False
    if promo.max_uses_per_member is not None and member_phone:
        PromotionMemberUse.objects.get_or_create(promotion_id=pk, member_phone=member_phone)
        if not PromotionMemberUse.objects.filter(
            promotion_id=pk, member_phone=member_phone, uses__lt=promo.max_uses_per_member
        ).update(uses=F("uses") + 1):
            if promo.max_uses is not None or promo.max_discount_vnd is not None:  # give the chain-wide count back
                Promotion.objects.filter(pk=pk).update(uses=F("uses") - 1,
                                                             discount_given_vnd=F("discount_given_vnd") - discount)
            return False
    return True


def release(*, reference: str, at: datetime | None = None) -> int:
    """An order cancelled: its reserved codes and its promotions' budgets come back (once). Returns codes released."""
    at = at or timezone.now()
    released = 0
    for use in CodeUse.objects.select_for_update().filter(reference=reference, status=CodeUse.Status.RESERVED):
        CodeUse.objects.filter(pk=use.pk).update(status=CodeUse.Status.RELEASED, closed_at=at)
        Code.objects.filter(pk=use.code_id, uses__gt=0).update(uses=F("uses") - 1)
        released += 1
    applications = list(PromotionApplication.objects.select_related("promotion").filter(
        reference=reference, cancelled=False
    ))
    for a in applications:
        p = a.promotion
        if p.max_uses is not None or p.max_discount_vnd is not None:
            Promotion.objects.filter(pk=p.pk).update(
                uses=F("uses") - 1, discount_given_vnd=F("discount_given_vnd") - a.discount_vnd
            )
        if p.max_uses_per_member is not None and a.member_phone:
            PromotionMemberUse.objects.filter(promotion=p, member_phone=a.member_phone, uses__gt=0).update(
                uses=F("uses") - 1
            )
    PromotionApplication.objects.filter(pk__in=[a.pk for a in applications]).update(cancelled=True)
    return released


def consume(*, reference: str, at: datetime | None = None) -> int:
    """An order handed over: its reserved codes are consumed for good."""
    return CodeUse.objects.filter(reference=reference, status=CodeUse.Status.RESERVED).update(
        status=CodeUse.Status.CONSUMED, closed_at=at or timezone.now()
    )


# --- the policy's own checks ----------------------------------------------------------------------------------------


def check_promotion(data: dict) -> None:
    """Refuse a promotion that cannot be right: dates reversed, a percent over 100, a discount larger than the
    price it takes from, a buy-X-get-Y without Y, a bundle that costs more than its parts or lists a SKU twice, a
    minimum spend on a promotion of lines (the engine reads it only on cart promotions). Raises InvalidPromotion
    with the field at fault, in the request's language (the admin and the API both call this)."""
    errors: dict[str, str] = {}
    starts, ends = data.get("starts_at"), data.get("ends_at")
    if starts and ends and ends <= starts:
        errors["ends_at"] = gettext("The end must be after the start.")
    kind, target = data.get("kind"), data.get("target", engine.Target.CART)
    percent, amount = int(data.get("percent") or 0), int(data.get("amount_vnd") or 0)
    line_level = kind in (engine.Kind.BUY_X_GET_Y, engine.Kind.BUNDLE) or (
        target != engine.Target.CART and kind != engine.Kind.SPEND_THRESHOLD)
    if not 0 <= percent <= 100:
        errors["percent"] = gettext("A percent is between 0 and 100.")
    if amount < 0:
        errors["amount_vnd"] = gettext("An amount cannot be negative.")
    skus = list(data.get("skus") or [])
    bundle = data.get("bundle") or []
    prices = dict(Product.objects.filter(sku__in=skus + [s for s, _ in bundle]).values_list("sku", "price_vnd"))
    unknown = sorted(set(skus) - set(prices))
    if unknown:
        errors["skus"] = gettext("Unknown SKUs: %(skus)s.") % {"skus": ", ".join(unknown)}
    if target == engine.Target.SKU and not skus and kind != engine.Kind.BUNDLE:
        errors["skus"] = gettext("Name the SKUs the promotion is for.")
    if target == engine.Target.CATEGORY and not data.get("categories"):
        errors["categories"] = gettext("Name the categories the promotion is for.")
    if line_level and int(data.get("min_spend_vnd") or 0):
        errors["min_spend_vnd"] = gettext("A minimum spend applies to cart promotions only.")
    if kind == engine.Kind.PERCENT_OFF and percent <= 0:
        errors["percent"] = gettext("A percent-off promotion needs a percent above 0.")
    if kind == engine.Kind.AMOUNT_OFF:
        if amount <= 0 and not data.get("requires_code"):
            errors["amount_vnd"] = gettext("An amount-off promotion needs an amount above 0.")
        cheapest = None
        if target == engine.Target.SKU and skus and prices:
            cheapest = min(prices.get(s, amount) for s in skus)
        elif target == engine.Target.CATEGORY and data.get("categories"):
            cheapest = Product.objects.filter(category__in=data["categories"], is_active=True).aggregate(
                low=Min("price_vnd"))["low"]
        if cheapest is not None and amount > cheapest:
            errors["amount_vnd"] = gettext("The discount is larger than the price of a SKU it applies to.")
        if target == engine.Target.CART and data.get("min_spend_vnd") and amount > int(data["min_spend_vnd"]):
            errors["amount_vnd"] = gettext("The discount is larger than the spend it requires.")
    if kind == engine.Kind.BUY_X_GET_Y and (int(data.get("buy_qty") or 0) < 1 or int(data.get("get_qty") or 0) < 1):
        errors["get_qty"] = gettext("Buy X get Y needs X ≥ 1 and Y ≥ 1.")
    if kind == engine.Kind.BUY_X_GET_Y and percent <= 0:
        errors["percent"] = gettext("Buy X get Y needs the percent off the Y units (100 = free).")
    if kind == engine.Kind.BUNDLE:
        listed = [s for s, _ in bundle]
        if not bundle or any(int(q) < 1 for _, q in bundle):
            errors["bundle"] = gettext('A bundle lists SKUs and quantities: [["SKU-1", 1], ["SKU-2", 2]].')
        elif len(set(listed)) != len(listed):
            errors["bundle"] = gettext("A bundle lists each SKU once, with its quantity.")
        elif all(s in prices for s in listed):
            worth = sum(prices[s] * int(q) for s, q in bundle)
            if int(data.get("bundle_price_vnd") or 0) >= worth:
                errors["bundle_price_vnd"] = gettext("The bundle price must be below its parts' %(worth)s VND.") % {
                    "worth": worth}
        else:
            errors["bundle"] = gettext("Unknown SKUs in the bundle.")
    if kind == engine.Kind.SPEND_THRESHOLD:
        spend = int(data.get("min_spend_vnd") or 0)
        if spend <= 0:
            errors["min_spend_vnd"] = gettext("A spend threshold needs the spend.")
        if amount > spend:
            errors["amount_vnd"] = gettext("The discount is larger than the spend it requires.")
        if not amount and not percent:
            errors["amount_vnd"] = gettext("Give an amount or a percent off.")
    if any(not isinstance(d, int) or not 0 <= d <= 6 for d in data.get("weekdays") or []):
        errors["weekdays"] = gettext("Weekdays are 0 (Monday) to 6 (Sunday).")
    if errors:
        raise InvalidPromotion(details=errors)


def review_exceptions(*, ids: list[int], status: str, reviewer: str, at: datetime | None = None) -> int:
    """Mark open price exceptions accepted or followed up, with the reviewer. One reviewed meanwhile by someone else
    is left as they left it (a conditional update). Returns how many were marked."""
    if status not in (PriceException.Status.ACCEPTED, PriceException.Status.FOLLOWED_UP):
        raise InvalidInput("Review as accepted or followed_up.", details={"status": status})
    return PriceException.objects.filter(pk__in=ids, status=PriceException.Status.OPEN).update(
        status=status, reviewed_by=reviewer[:150], reviewed_at=at or timezone.now()
    )


# --- codes in bulk and vouchers bought with points ------------------------------------------------------------------


def new_code_text(prefix: str = "", length: int = 8) -> str:
    return normalize_code(prefix) + "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def generate_codes(
    *, promotion: Promotion, count: int, prefix: str = "", campaign: str = "", max_uses: int | None = 1,
    expires_at: datetime | None = None, member_phone: str = "",
) -> list[Code]:
    """`count` new random codes for a campaign (unique: a clash is drawn again)."""
    if count < 1 or count > 100_000:
        raise InvalidPromotion("Generate between 1 and 100,000 codes at a time.", details={"count": count})
    made: list[Code] = []
    with transaction.atomic():
        while len(made) < count:
            batch = {new_code_text(prefix) for _ in range(min(count - len(made), 5000))}
            existing = set(Code.objects.filter(code__in=batch).values_list("code", flat=True))
            rows = [Code(code=c, promotion=promotion, campaign=campaign or promotion.campaign, max_uses=max_uses,
                         expires_at=expires_at, member_phone=member_phone) for c in sorted(batch - existing)]
            made += Code.objects.bulk_create(rows, ignore_conflicts=False)
    return made
