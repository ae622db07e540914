"""A candidate store: a store that could serve an order, as the routing input loads it (orders.routing_input, through
the fast paths of orders.fast_paths), with its distance, the cart's units it can sell online, its picking load and
whether it is open. Plain values and geometry; no queries.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime
from typing import NamedTuple

from orders.models import FulfillmentStatus

KM_PER_DEGREE_LAT = 111.32
EARTH_RADIUS_KM = 6371.009  # geopy's great_circle and the router use the same mean radius
# A store's picking load: the order lines of its fulfillments not yet packed.
OPEN_LOAD_STATUSES = (FulfillmentStatus.ASSIGNED, FulfillmentStatus.PICKING)
# The store columns every reader of candidates selects, in this order.
STORE_COLUMNS = (
    "id", "code", "name", "lat", "lon", "delivery_radius_km", "offers_delivery", "offers_pickup",
    "picking_capacity_per_hour", "timezone",
)


class Interval(NamedTuple):
    """An opening interval, as opening_status() reads it (without building model instances)."""

    weekday: int
    opens: dtime
    closes: dtime


@dataclass
class Candidate:
    store_id: int
    code: str
    name: str
    lat: float
    lon: float
    distance_km: float
    delivery_radius_km: float
    methods: list[str]
    capacity_per_hour: int
    stock: dict[int, int] = field(default_factory=dict)  # product_id -> units sellable online
    load: int = 0  # open order lines already assigned in the slot
    open_now: bool = False
    closes_at: datetime | None = None
    next_opening: datetime | None = None
    time_zone: str = "Asia/Ho_Chi_Minh"

    def capacity(self, slot_hours: float) -> int:
        return max(0, int(self.capacity_per_hour * slot_hours) - self.load)

    def serves_whole(self, lines: dict[int, int]) -> bool:
        return all(self.stock.get(pid, 0) >= qty for pid, qty in lines.items())


def candidate_from_store_row(row: tuple, *, distance_km: float, stock: dict[int, int] | None = None) -> Candidate:
    """A candidate from the STORE_COLUMNS of a store, in that order."""
    pk, code, name, lat, lon, radius, delivers, picks, capacity, time_zone = row
    methods = [m for m, on in (("delivery", delivers), ("pickup", picks)) if on]
    return Candidate(
        pk, code, name, lat, lon, round(distance_km, 3), radius, methods, capacity, dict(stock or {}),
        time_zone=time_zone,
    )


def nearest_first(c: Candidate) -> tuple[float, str]:
    return c.distance_km, c.code


def bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    """(south, north, west, east) of a box around the point that holds every point within radius_km."""
    dlat = radius_km / KM_PER_DEGREE_LAT
    dlon = radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))
