"""Reads for the network board (head office; a regional manager gets the board of their stores): today's orders by
state, promises at risk, stores over capacity, unserved orders, the served-on-time rate, orders per hour and a map.

Each figure is one aggregate query over today's rows (the store queue index covers the open fulfillments)."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Coalesce, ExtractHour
from django.utils import timezone

from inventory.models import Store
from orders.models import Fulfillment, FulfillmentStatus, Order, OrderLine

S = FulfillmentStatus
OPEN = (S.ASSIGNED, S.PICKING, S.PACKED)
# A fulfillment is served once the customer can have the goods: ready at the store, or with the courier.
SERVED = (S.READY_FOR_PICKUP, S.COLLECTED, S.NOT_COLLECTED, S.HANDED_TO_COURIER, S.DELIVERED, S.DELIVERY_FAILED,
          S.RETURNED_TO_STORE)
AT_RISK_MINUTES = 30
# When it was served: ready_at for pickups; for deliveries the last status change (handed over, unless it moved on).
SERVED_AT = Coalesce("ready_at", "status_changed_at")


@dataclass
class Board:
    day_start: datetime
    now: datetime
    orders_by_status: dict[str, int]
    fulfillments_by_status: dict[str, int]
    late: int
    at_risk: int
    unserved_orders: list[Order]
    over_capacity: list[dict]
    served: int
    served_on_time: int
    per_hour: list[int]
    per_store: list[dict]
    map_stores: list[dict] = field(default_factory=list)
    map_orders: list[dict] = field(default_factory=list)

    @property
    def on_time_rate(self) -> float | None:
        return round(100 * self.served_on_time / self.served, 1) if self.served else None


def network_board(*, stores: QuerySet[Store], now: datetime | None = None, map_limit: int = 500) -> Board:
    now = now or timezone.now()
    local = timezone.localtime(now)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    store_ids = stores.values("pk")
    today = Fulfillment.objects.filter(store__in=store_ids, created_at__gte=day_start)
    orders = Order.objects.filter(pk__in=today.values("order_id"))
    by_status = dict(orders.order_by().values_list("status").annotate(n=Count("pk")))
    open_now = Fulfillment.objects.filter(store__in=store_ids, status__in=OPEN)
    f_by_status = dict(
        Fulfillment.objects.filter(store__in=store_ids)
        .filter(Q(status__in=OPEN) | Q(created_at__gte=day_start))
        .order_by().values_list("status").annotate(n=Count("pk"))
    )
    late = open_now.filter(promised_by__lt=now).count()
    at_risk = open_now.filter(promised_by__gte=now, promised_by__lt=now + timedelta(minutes=AT_RISK_MINUTES)).count()
    unserved = list(
        orders.filter(pk__in=OrderLine.objects.filter(unfulfilled_qty__gt=0).values("order_id")).order_by("-created_at")[:50]
    )
    # Over capacity: more open fulfillments due within the hour than the store picks in an hour.
    due = (
        open_now.filter(promised_by__lt=now + timedelta(hours=1))
        .order_by().values("store_id").annotate(n=Count("pk"))
    )
    due_by_store = {row["store_id"]: row["n"] for row in due}
    store_rows = {s.pk: s for s in stores.filter(pk__in=list(due_by_store))}
    over = sorted(
        (
            {"store": store_rows[sid], "due": n, "capacity": store_rows[sid].picking_capacity_per_hour}
            for sid, n in due_by_store.items()
            if sid in store_rows and n > store_rows[sid].picking_capacity_per_hour
        ),
        key=lambda row: row["capacity"] - row["due"],
    )
    served_rows = today.filter(status__in=SERVED)
    served = served_rows.count()
    on_time = served_rows.filter(promised_by__gte=SERVED_AT).count()
    hours = dict(
        orders.annotate(hour=ExtractHour("created_at", tzinfo=local.tzinfo)).order_by()
        .values_list("hour").annotate(n=Count("pk"))
    )
    per_store = list(
        today.order_by().values("store_id", "store__code")
        .annotate(
            orders=Count("order_id", distinct=True),
            served=Count("pk", filter=Q(status__in=SERVED)),
            on_time=Count("pk", filter=Q(status__in=SERVED, promised_by__gte=SERVED_AT)),
        )
        .order_by("store__code")
    )
    for row in per_store:
        row["rate"] = round(100 * row["on_time"] / row["served"], 1) if row["served"] else None
    orders_today = {row["store_id"]: row["orders"] for row in per_store}
    map_stores = [
        {"code": s.code, "name": s.name, "lat": s.lat, "lon": s.lon, "orders": orders_today.get(s.pk, 0),
         "over": s.pk in {row["store"].pk for row in over}}
        for s in stores.exclude(lat__isnull=True).only("pk", "code", "name", "lat", "lon")
    ]
    map_orders = [
        {"number": n, "lat": lat, "lon": lon, "store": code, "store_lat": slat, "store_lon": slon}
        for n, lat, lon, code, slat, slon in today.filter(order__destination_lat__isnull=False)
        .order_by("-created_at")
        .values_list("order__number", "order__destination_lat", "order__destination_lon", "store__code",
                     "store__lat", "store__lon")[:map_limit]
    ]
    return Board(
        day_start=day_start, now=now, orders_by_status=by_status, fulfillments_by_status=f_by_status, late=late,
        at_risk=at_risk, unserved_orders=unserved, over_capacity=over, served=served, served_on_time=on_time,
        per_hour=[hours.get(h, 0) for h in range(24)], per_store=per_store, map_stores=map_stores,
        map_orders=map_orders,
    )


def svg_map(board: Board, *, width: int = 640, height: int = 480, pad: int = 24) -> dict:
    """Screen coordinates for the offline SVG map: an equirectangular projection fitted to the stores and orders."""
    points = [(s["lat"], s["lon"]) for s in board.map_stores] + [(o["lat"], o["lon"]) for o in board.map_orders]
    if not points:
        return {"width": width, "height": height, "stores": [], "orders": []}
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    span = max(lat1 - lat0, lon1 - lon0, 0.01)

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return (round(pad + (lon - lon0) / span * (width - 2 * pad), 1),
                round(height - pad - (lat - lat0) / span * (height - 2 * pad), 1))

    stores = [{**s, "x": xy(s["lat"], s["lon"])[0], "y": xy(s["lat"], s["lon"])[1],
               "r": 4 + min(s["orders"], 40) ** 0.5 * 2} for s in board.map_stores]
    orders = []
    for o in board.map_orders:
        x, y = xy(o["lat"], o["lon"])
        sx, sy = xy(o["store_lat"], o["store_lon"])
        orders.append({**o, "x": x, "y": y, "sx": sx, "sy": sy})
    return {"width": width, "height": height, "stores": stores, "orders": orders}
