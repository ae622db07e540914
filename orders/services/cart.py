"""What every order action reads first: the cart's products, the pickup store, and the 409 that says no store can
serve the cart."""

import logging
from dataclasses import dataclass

from django.conf import settings
from geopy.distance import great_circle

from inventory.exceptions import InsufficientStock
from inventory.models import Product, Store
from o2o.domain_errors import InvalidInput
from orders import fast_paths
from orders.candidate_stores import Candidate, bounding_box
from orders.exceptions import (
    PickupNotOffered,
    UnknownPickupStore,
)
from orders.models import (
    FulfillmentStatus,
)

log = logging.getLogger(__name__)
S = FulfillmentStatus


@dataclass
class Cart:
    wanted: dict[int, int]  # product_id -> qty
    skus: dict[int, str]  # product_id -> sku
    products: dict[int, Product]

    @property
    def by_sku(self) -> dict[str, int]:
        return {self.skus[pid]: qty for pid, qty in sorted(self.wanted.items(), key=lambda kv: self.skus[kv[0]])}


def load_cart(lines: dict[str, int]) -> Cart:
    """Products of a cart {sku: qty}. Raises InvalidInput for an empty cart or a quantity ≤ 0, UnknownSku (422)."""
    if not lines:
        raise InvalidInput("The cart is empty.")
    bad = {sku: qty for sku, qty in lines.items() if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0}
    if bad:
        raise InvalidInput("Quantities must be whole numbers ≥ 1.", details={"lines": bad})
    found = fast_paths.active_products(lines.keys())
    products = {p.pk: p for p in found.values()}
    return Cart({found[sku].pk: qty for sku, qty in lines.items()}, {p.pk: p.sku for p in products.values()}, products)


def open_pickup_store(code: str) -> Store:
    store = Store.objects.filter(code=code, is_active=True).first()
    if store is None:
        raise UnknownPickupStore(details={"store": code})
    if not store.offers_pickup:
        raise PickupNotOffered(details={"store": code})
    return store


def shortage(cart: Cart, candidates: list[Candidate]) -> InsufficientStock:
    best = {pid: max((c.stock.get(pid, 0) for c in candidates), default=0) for pid in cart.wanted}
    return InsufficientStock(
        [
            {"sku": cart.skus[pid], "requested": qty, "available": best[pid]}
            for pid, qty in sorted(cart.wanted.items())
        ],
        "No store that can serve this cart has the units or the picking capacity now.",
    )


def any_store_delivers(lat: float, lon: float) -> bool:
    radius = settings.O2O_ROUTING_SEARCH_RADIUS_KM
    south, north, west, east = bounding_box(lat, lon, radius)
    for s_lat, s_lon, s_radius in Store.objects.filter(
        is_active=True, offers_delivery=True, lat__gte=south, lat__lte=north, lon__gte=west, lon__lte=east
    ).values_list("lat", "lon", "delivery_radius_km"):
        if great_circle((lat, lon), (s_lat, s_lon)).km <= s_radius:
            return True
    return False
