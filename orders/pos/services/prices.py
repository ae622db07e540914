"""The price call of online tills: a cart priced by the one pricing door (orders.pricing.services.price) in the till's
context — its store, the tills' channel (settings.PRICING_TILL_CHANNEL), the member, the codes, the time — so the
same cart gets the same breakdown at a till as in the website's quote."""

from datetime import datetime

from django.conf import settings

from inventory.models import Store
from loyalty.phones import normalize_phone
from orders.pricing import services as pricing


def till_price(
    *, store: Store, lines: list[tuple[str, int]], member_phone: str | None = None, codes: list[str] | None = None,
    at: datetime | None = None,
) -> dict:
    """The breakdown (orders.pricing.services.priced_json) of `lines` (sku, qty; a SKU on several lines counts once
    for their sum). Raises InvalidPhone, UnknownSku and the code errors (unknown, expired, used up, not yours, out of
    scope: 422s with their own codes), as the website's quote does."""
    merged: dict[str, int] = {}
    for sku, qty in lines:
        merged[sku] = merged.get(sku, 0) + qty
    phone = normalize_phone(member_phone) if member_phone else None
    priced = pricing.price(channel=settings.PRICING_TILL_CHANNEL, lines=merged, store=store, member_phone=phone,
                           codes=list(codes or []), at=at)
    return pricing.priced_json(priced)
