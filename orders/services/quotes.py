"""Checkout promises: the options the chain can keep now for a cart, each with its price (goods, discounts, delivery
fee), stored so that placement gets exactly what the customer was shown (orders.promises computes them with the
router; orders.services.plans.price_plan prices them as placement will)."""

import functools
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from inventory.models import Store
from loyalty.phones import normalize_phone
from o2o.domain_errors import DomainError, InvalidInput
from o2o.models import SalesChannel
from orders import promises, routing_input
from orders.exceptions import (
    OutOfDeliveryArea,
)
from orders.models import (
    FulfillmentStatus,
    Promise,
)
from orders.pricing import engine
from orders.pricing import services as pricing
from orders.pricing.exceptions import CodeOutOfScope
from orders.services.cart import Cart, any_store_delivers, load_cart, open_pickup_store, shortage
from orders.services.plans import current_policy, farthest_km, price_plan

log = logging.getLogger(__name__)
S = FulfillmentStatus


def quote_promise(
    *,
    channel: SalesChannel,
    lines: dict[str, int],
    lat: float | None = None,
    lon: float | None = None,
    address: str = "",
    pickup_store_code: str | None = None,
    allow_split: bool = True,
    at: datetime | None = None,
    member_phone: str | None = None,
    codes: list[str] | None = None,
) -> Promise:
    """The options the chain can keep now for this cart, stored for O2O_PROMISE_TTL_SECONDS.

    With `pickup_store_code`: only pickup at that store. With a destination: express 1 h / 2 h delivery (or the
    scheduled fallback) and pickup at the nearby stores that can serve the whole cart. Raises UnknownSku (422),
    PickupNotOffered (422), OutOfDeliveryArea (422) or InsufficientStock (409) when there is no option at all.

    Each option is priced for the member (`member_phone`: tier, per-member promotions) with the `codes` at its
    selling store, with its delivery fee (see _priced). A code that is unknown, expired, used up or another
    member's is refused (422), as is one that no option can use (code_out_of_scope)."""
    at = at or timezone.now()
    phone = normalize_phone(member_phone) if member_phone else None
    codes = list(codes or [])
    cart = load_cart(lines)
    options: list[promises.Routed] = []
    pickup_store = None
    if pickup_store_code:
        pickup_store = open_pickup_store(pickup_store_code)
        cands = routing_input.load_candidates(
            lat=pickup_store.lat, lon=pickup_store.lon, lines=cart.wanted, method="pickup", at=at,
            only_store_ids=[pickup_store.pk], only_whole_cart=True,
        )
        for c in cands:
            routed = promises.pickup_at(lines=cart.wanted, candidate=c, skus=cart.skus, at=at)
            if routed.served:
                options.append(routed)
        if not options:
            raise shortage(cart, cands)
    else:
        if lat is None or lon is None:
            raise InvalidInput("Give a destination (lat and lon, or an address) or a pickup store.")
        delivery = routing_input.load_candidates(lat=lat, lon=lon, lines=cart.wanted, method="delivery", at=at)
        options += promises.fastest_delivery(
            lines=cart.wanted, candidates=delivery, skus=cart.skus, lat=lat, lon=lon, allow_split=allow_split, at=at,
            all_tiers=True,
        )
        pickups = routing_input.load_candidates(
            lat=lat, lon=lon, lines=cart.wanted, method="pickup", at=at, radius_km=settings.O2O_PICKUP_SEARCH_RADIUS_KM,
            k=settings.O2O_PICKUP_OPTIONS, only_whole_cart=True,
        )
        for c in pickups:
            if c.capacity(promises.TIER_SLOT_HOURS["pickup"]) < len(cart.wanted):
                continue
            routed = promises.pickup_at(lines=cart.wanted, candidate=c, skus=cart.skus, at=at)
            if routed.served:
                options.append(routed)
        if not options:
            if not delivery and not pickups and not any_store_delivers(lat, lon):
                raise OutOfDeliveryArea(details={"lat": lat, "lon": lon})
            raise shortage(cart, delivery + pickups)
    priced = _priced(options, channel=channel, cart=cart, member_phone=phone, codes=codes, at=at)
    return Promise.objects.create(
        channel=channel,
        cart=cart.by_sku,
        destination_lat=lat if not pickup_store else None,
        destination_lon=lon if not pickup_store else None,
        destination_address=address[:300],
        pickup_store=pickup_store,
        options=[
            {**promises.option_json(r, skus=cart.skus, lines=cart.wanted, at=at), **_price_fields(p)}
            for r, p in zip(options, priced, strict=True)
        ],
        pricing_input={"member_phone": phone, "codes": codes},
        created_at=at,
        expires_at=at + timedelta(seconds=settings.O2O_PROMISE_TTL_SECONDS),
    )


def _priced(
    options: list[promises.Routed], *, channel: SalesChannel, cart: Cart, member_phone: str | None, codes: list[str],
    at: datetime,
) -> list[engine.PricedCart]:
    """Each option's price as placement will compute it (orders.services.plans.price_plan): at its selling store
    (the pickup store, or the first shipment's), with the fee of its farthest shipment (none for pickup). A code
    that cannot be used at some options' stores shows there as not applied (out_of_scope); placing such an option
    with the code is refused, without it the price holds."""
    policy = current_policy(cart)
    firsts = [r.shipments[0].candidate for r in options]
    cities: dict[str, str] = {}
    if any(rule.city for rule in policy.fee_rules):  # zoned fees: the selling stores' cities (one query)
        cities = dict(Store.objects.filter(code__in={c.code for c in firsts}).values_list("code", "city"))
    out, refused = [], []
    for r, first in zip(options, firsts, strict=True):
        price = functools.partial(
            price_plan, channel=channel.code, lines=cart.by_sku, member_phone=member_phone, codes=codes, at=at,
            policy=policy, farthest=farthest_km(r.method, [s.candidate.distance_km for s in r.shipments]),
            store=Store(pk=first.store_id, code=first.code, timezone=first.time_zone, city=cities.get(first.code, "")),
        )
        try:
            out.append(price())
        except CodeOutOfScope as exc:
            refused.append(exc)
            out.append(price(strict_codes=False))
    if refused and len(refused) == len(options):
        raise refused[0]
    return out


def _price_fields(priced: engine.PricedCart) -> dict:
    return {
        "delivery_fee_vnd": priced.delivery_fee_vnd,
        "total_vnd": priced.grand_total_vnd,
        "pricing": pricing.priced_json(priced),
    }


def requote(*, channel: SalesChannel, promise_id, allow_split: bool = True) -> tuple[Promise | None, str]:
    """A fresh promise for the cart and destination (or pickup store) of an earlier one of the channel's, quoted now:
    what an order placed from the earlier promise gets when its units are gone (a store event took them, another
    order was faster). (None, why) when no option can be given now."""
    earlier = Promise.objects.filter(pk=promise_id, channel=channel).select_related("pickup_store").first()
    if earlier is None:
        return None, "The promise is unknown."
    try:
        fresh = quote_promise(
            channel=channel, lines=earlier.cart, lat=earlier.destination_lat, lon=earlier.destination_lon,
            address=earlier.destination_address,
            pickup_store_code=earlier.pickup_store.code if earlier.pickup_store else None, allow_split=allow_split,
            member_phone=(earlier.pricing_input or {}).get("member_phone"),
            codes=(earlier.pricing_input or {}).get("codes") or [],
        )
    except DomainError as exc:
        return None, exc.message
    return fresh, ""


def purge_expired_promises(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = Promise.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
