"""Vouchers bought with points: N points leave the member's balance in one loyalty posting and become a single-use
code worth N × the point value, usable by that member online and at any till (the engine stacks it with any
promotion: it is money the member already paid)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from loyalty import conf as loyalty_conf
from loyalty import services as loyalty
from loyalty.models import Member, Posting, PostingKind

from . import engine
from .models import Code, Promotion
from .services import new_code_text, policy_changed

VOUCHER_PROMOTION = "points-voucher"


def voucher_promotion() -> Promotion:
    """The stackable, code-only promotion that every points voucher belongs to (made on first use)."""
    promo, created = Promotion.objects.get_or_create(
        code=VOUCHER_PROMOTION,
        defaults={"name": "Voucher bought with points", "kind": engine.Kind.AMOUNT_OFF, "target": engine.Target.CART,
                  "requires_code": True, "campaign": "loyalty"},
    )
    if created:
        policy_changed()
    return promo


def buy_voucher(
    *, member: Member, points: int, channel: str, store: str = "", idempotency_key: str, actor: str = "",
    now: datetime | None = None,
) -> Code:
    """Spend `points` on a single-use voucher worth points × the point value, usable online and at any till by this
    member. The points leave the member's available balance in one loyalty posting (a double entry: available →
    redeemed, reference "voucher:<code>"); a replay of the key returns the same voucher."""
    now = now or timezone.now()
    with transaction.atomic():
        existing = _voucher_for_key(idempotency_key)
        if existing is not None:
            return existing
        promo = voucher_promotion()
        text = new_code_text("V")
        posting = loyalty.buy_voucher(
            member=member, points=points, idempotency_key=idempotency_key, now=now,
            source=loyalty.PostingSource(channel=channel, store=store, reference=f"voucher:{text}", actor=actor),
        )
        try:
            with transaction.atomic():
                return Code.objects.create(
                    code=text, promotion=promo, campaign="loyalty", member_phone=member.phone, max_uses=1,
                    value_vnd=points * loyalty_conf.point_value_vnd(), points_spent=points,
                    expires_at=now + timedelta(days=settings.PRICING_VOUCHER_VALID_DAYS),
                    voucher_posting_id=posting.pk, created_at=now,
                )
        except IntegrityError:  # a concurrent replay of the key made the voucher of this posting first
            return Code.objects.get(voucher_posting_id=posting.pk)


def _voucher_for_key(idempotency_key: str) -> Code | None:
    posting_id = Posting.objects.filter(idempotency_key=idempotency_key, kind=PostingKind.VOUCHER).values_list(
        "pk", flat=True
    ).first()
    if posting_id is None:
        return None
    return Code.objects.filter(voucher_posting_id=posting_id).first()


def vouchers_of(*, member: Member, at: datetime | None = None) -> list[Code]:
    """The member's vouchers bought with points that can still be used: not used (nor reserved by an open order),
    not expired; the ones expiring first first."""
    at = at or timezone.now()
    return list(
        Code.objects.filter(member_phone=member.phone, voucher_posting_id__isnull=False, uses__lt=F("max_uses"),
                            expires_at__gt=at)
        .order_by("expires_at", "pk")
    )
