"""Checkout promises: the options the chain can keep now for a cart, stored so that placement gets exactly what the
customer was shown (orders.promises computes them with the router)."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

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
from orders.services.cart import any_store_delivers, load_cart, open_pickup_store, shortage

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
) -> Promise:
    """The options the chain can keep now for this cart, stored for O2O_PROMISE_TTL_SECONDS.

    With `pickup_store_code`: only pickup at that store. With a destination: express 1 h / 2 h delivery (or the
    scheduled fallback) and pickup at the nearby stores that can serve the whole cart. Raises UnknownSku (422),
    PickupNotOffered (422), OutOfDeliveryArea (422) or InsufficientStock (409) when there is no option at all."""
    at = at or timezone.now()
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
    return Promise.objects.create(
        channel=channel,
        cart=cart.by_sku,
        destination_lat=lat if not pickup_store else None,
        destination_lon=lon if not pickup_store else None,
        destination_address=address[:300],
        pickup_store=pickup_store,
        options=[promises.option_json(r, skus=cart.skus, lines=cart.wanted, at=at) for r in options],
        created_at=at,
        expires_at=at + timedelta(seconds=settings.O2O_PROMISE_TTL_SECONDS),
    )


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
        )
    except DomainError as exc:
        return None, exc.message
    return fresh, ""


def purge_expired_promises(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = Promise.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
