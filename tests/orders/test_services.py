"""The order services on PostgreSQL: promise → place → fulfil, splits, pickups, cancel, short picks, waves."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.exceptions import InsufficientStock, UnknownSku
from inventory.models import MovementReason, Reservation, Stock, StockMovement
from inventory.selectors import reservation_differences, stock_ledger_differences
from loyalty.phones import normalize_phone
from o2o.domain_errors import InvalidInput
from o2o.models import OutboxEvent
from orders import services
from orders.exceptions import (
    InvalidPhone,
    InvalidTransition,
    OrderNotCancellable,
    OutOfDeliveryArea,
    PickupNotOffered,
    PromiseExpired,
    PromiseMismatch,
)
from orders.models import Fulfillment, Order, OrderStatus, PickupCode, Promise, RoutingDecision
from tests.conftest import put_stock
from tests.factories import StoreFactory
from tests.orders.conftest import BEN_THANH, CUSTOMER, HANOI

pytestmark = pytest.mark.django_db


def _stock(store, product):
    return Stock.objects.get(store=store, product=product)


def _audit_clean():
    assert stock_ledger_differences() == []
    assert reservation_differences() == []


def place(channel, lines, **kwargs):
    defaults = {
        "customer_name": CUSTOMER["name"], "customer_phone": CUSTOMER["phone"], "method": "delivery",
        "actor": "test", **BEN_THANH,
    }
    defaults.update(kwargs)
    if defaults["method"] == "pickup":
        defaults.pop("lat", None)
        defaults.pop("lon", None)
    return services.place_order(channel=channel, lines=lines, **defaults)


def test_normalize_phone():
    assert normalize_phone("0901 234 567") == "+84901234567"
    assert normalize_phone("+84 90 123 4567") == "+84901234567"
    with pytest.raises(InvalidPhone):
        normalize_phone("12345")


def test_quote_offers_express_and_pickup_options(channel, chain):
    promise = services.quote_promise(channel=channel, lines={"AO-THUN-M": 2}, **BEN_THANH)
    by_id = {o["id"]: o for o in promise.options}
    assert by_id["express_1h"]["shipments"][0]["store"] == "HCM-Q1-001"  # nearest store holding the cart
    assert by_id["express_1h"]["split"] is False
    assert {"pickup:HCM-Q1-001", "pickup:HCM-Q3-001"} <= set(by_id)
    assert "pickup:HCM-Q7-001" not in by_id  # holds no shirts
    assert "scheduled" not in by_id  # a later fallback only when nothing fast is possible
    assert promise.expires_at > timezone.now()
    routing = by_id["express_1h"]["routing"]
    assert routing["plan"]["status"] in {"optimal", "feasible", "greedy"} and routing["reason"]


def test_quote_split_when_no_store_has_everything(channel, chain):
    # shirts at near and mid, bags at mid and far: mid has both, so no split for 1 + 1
    promise = services.quote_promise(channel=channel, lines={"AO-THUN-M": 1, "TUI-VAI": 1}, **BEN_THANH)
    option = promise.options[0]
    assert option["split"] is False and option["shipments"][0]["store"] == "HCM-Q3-001"
    # 6 shirts: near 3 + mid 5, nobody holds 6 → split
    promise = services.quote_promise(channel=channel, lines={"AO-THUN-M": 6}, **BEN_THANH)
    option = promise.options[0]
    assert option["split"] is True
    assert sum(line["qty"] for s in option["shipments"] for line in s["lines"]) == 6
    # no split allowed → no delivery option for 6 shirts at all
    with pytest.raises(InsufficientStock):
        services.quote_promise(channel=channel, lines={"AO-THUN-M": 6}, allow_split=False, **BEN_THANH)


def test_scheduled_fallback_when_stores_are_closed(channel, chain):
    from datetime import time

    from inventory.models import OpeningHours

    for store in (chain["near"], chain["mid"], chain["far"]):
        OpeningHours.objects.filter(store=store).delete()
        now_local = timezone.localtime()
        wd = (now_local.weekday() + 1) % 7
        OpeningHours.objects.create(store=store, weekday=wd, opens=time(8), closes=time(22))
    promise = services.quote_promise(channel=channel, lines={"TUI-VAI": 1}, **BEN_THANH)
    kinds = {o["kind"] for o in promise.options}
    assert "scheduled" in kinds and "express_1h" not in kinds and "express_2h" not in kinds
    scheduled = next(o for o in promise.options if o["kind"] == "scheduled")
    assert scheduled["window_start"] > timezone.now().isoformat()
    pickup = next(o for o in promise.options if o["kind"] == "pickup")
    assert timezone.localtime(timezone.datetime.fromisoformat(pickup["window_end"])).hour == 8  # opening + 15 min


def test_promise_to_delivered_with_ledger(channel, chain):
    promise = services.quote_promise(channel=channel, lines={"AO-THUN-M": 2}, **BEN_THANH)
    order = place(channel, {"AO-THUN-M": 2}, promise_id=promise.pk, option_id="express_1h", lat=None, lon=None)
    assert order.number.startswith("WEB-") and order.customer_phone == "+84901234567"
    assert order.destination_lat == BEN_THANH["lat"]
    assert order.total_vnd == 2 * 199_000
    (f,) = order.fulfillments.all()
    assert f.store == chain["near"] and f.status == "assigned"
    assert f.promised_by == timezone.datetime.fromisoformat(promise.options[0]["window_end"])
    assert _stock(chain["near"], chain["shirt"]).reserved == 2
    assert RoutingDecision.objects.get(order=order).candidates
    for step in ("picking", "packed", "handed_to_courier"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    row = _stock(chain["near"], chain["shirt"])
    assert (row.on_hand, row.reserved) == (1, 0)  # committed when the goods left
    services.transition_fulfillment(fulfillment=f, to="delivered", actor="courier")
    order.refresh_from_db()
    assert order.status == OrderStatus.COMPLETED
    topics = list(OutboxEvent.objects.filter(aggregate=order.aggregate).values_list("topic", flat=True))
    assert topics[:2] == ["order.placed", "order.routed"]
    assert "fulfillment.out_for_delivery" in topics and "fulfillment.delivered" in topics
    assert StockMovement.objects.filter(reference=f.reference, reason=MovementReason.COMMIT).count() == 1
    _audit_clean()


def test_pickup_with_code_to_collected(channel, chain):
    order = place(channel, {"NON-LA": 1}, method="pickup", pickup_store_code="HCM-Q3-001")
    (f,) = order.fulfillments.all()
    code = f.pickup_code
    assert len(code.code) == 6 and not set(code.code) & set("01OI")
    assert code.qr_payload == f"o2o:pickup:{order.number}:{code.code}"
    for step in ("picking", "packed", "ready_for_pickup"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    event = OutboxEvent.objects.get(topic="fulfillment.ready_for_pickup")
    assert event.payload["pickup_code"] == code.code
    with pytest.raises(InvalidTransition):
        services.transition_fulfillment(fulfillment=f, to="handed_to_courier", actor="staff")
    services.transition_fulfillment(fulfillment=f, to="collected", actor="staff")
    assert not PickupCode.objects.get(pk=code.pk).is_live
    assert _stock(chain["mid"], chain["hat"]).on_hand == 0
    # collected is final: back to picking is refused and changes nothing
    with pytest.raises(InvalidTransition) as exc:
        services.transition_fulfillment(fulfillment=f, to="picking", actor="staff")
    assert exc.value.status == 409
    assert Fulfillment.objects.get(pk=f.pk).status == "collected"
    _audit_clean()


def test_split_order_reserves_at_each_store(channel, chain):
    order = place(channel, {"AO-THUN-M": 6})
    fulfillments = list(order.fulfillments.order_by("store__code"))
    assert [f.store.code for f in fulfillments] == ["HCM-Q1-001", "HCM-Q3-001"]
    assert sum(line.qty for f in fulfillments for line in f.lines.all()) == 6
    assert _stock(chain["near"], chain["shirt"]).reserved + _stock(chain["mid"], chain["shirt"]).reserved == 6
    _audit_clean()


def test_cancel_releases_everything(channel, chain):
    order = place(channel, {"AO-THUN-M": 6})
    services.transition_fulfillment(fulfillment=order.fulfillments.first(), to="picking", actor="staff")
    services.cancel_order(order=order, actor="test")
    assert Reservation.objects.count() == 0
    assert set(order.fulfillments.values_list("status", flat=True)) == {"cancelled"}
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    services.cancel_order(order=order, actor="test")  # twice is harmless
    assert OutboxEvent.objects.filter(topic="order.cancelled").count() == 1
    _audit_clean()


def test_cannot_cancel_after_goods_left(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    f = order.fulfillments.get()
    for step in ("picking", "packed", "handed_to_courier"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    with pytest.raises(OrderNotCancellable):
        services.cancel_order(order=order, actor="test")


def test_failed_delivery_brings_goods_back(channel, chain):
    order = place(channel, {"AO-THUN-M": 1})
    f = order.fulfillments.get()
    for step in ("picking", "packed", "handed_to_courier", "delivery_failed"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    assert _stock(chain["near"], chain["shirt"]).on_hand == 2  # still with the courier
    services.transition_fulfillment(fulfillment=f, to="returned_to_store", actor="staff")
    assert _stock(chain["near"], chain["shirt"]).on_hand == 3  # back on sale at the store
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FAILED
    _audit_clean()


def test_short_pick_reroutes_to_next_best_store(channel, chain):
    order = place(channel, {"AO-THUN-M": 2})
    f = order.fulfillments.get()
    assert f.store == chain["near"]
    services.transition_fulfillment(fulfillment=f, to="picking", actor="staff")
    created = services.report_short_pick(fulfillment=f, found={chain["shirt"].pk: 1}, actor="staff")
    assert [c.store for c in created] == [chain["mid"]]
    assert created[0].round == 2 and created[0].lines.get().qty == 1
    near = _stock(chain["near"], chain["shirt"])
    assert (near.on_hand, near.reserved) == (2, 1)  # one unit written off, one still reserved
    assert _stock(chain["mid"], chain["shirt"]).reserved == 1
    assert RoutingDecision.objects.filter(order=order, kind="reroute").exists()
    # finish both parcels: the order completes
    services.transition_fulfillment(fulfillment=f, to="packed", actor="staff")
    assert Fulfillment.objects.get(pk=f.pk).lines.get().picked_qty == 1
    for step in ("handed_to_courier", "delivered"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    for step in ("picking", "packed", "handed_to_courier", "delivered"):
        services.transition_fulfillment(fulfillment=created[0], to=step, actor="staff")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.COMPLETED
    assert _stock(chain["near"], chain["shirt"]).on_hand == 1
    _audit_clean()


def test_short_pick_nothing_found_and_nowhere_else(channel, chain):
    order = place(channel, {"TUI-VAI": 2}, method="pickup", pickup_store_code="HCM-Q3-001")
    f = order.fulfillments.get()
    services.report_short_pick(fulfillment=f, found={chain["bag"].pk: 0}, actor="staff")
    f.refresh_from_db()
    assert f.status == "cancelled"
    assert order.lines.get().unfulfilled_qty == 2
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    assert OutboxEvent.objects.filter(topic="order.lines_unfulfilled").exists()
    _audit_clean()


def test_uncollected_pickups_are_released(channel, chain):
    order = place(channel, {"NON-LA": 1}, method="pickup", pickup_store_code="HCM-Q1-001")
    f = order.fulfillments.get()
    for step in ("picking", "packed", "ready_for_pickup"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    assert services.release_uncollected_pickups(hold_days=3) == 0
    Fulfillment.objects.filter(pk=f.pk).update(ready_at=timezone.now() - timedelta(days=3, minutes=1))
    assert services.release_uncollected_pickups(hold_days=3) == 1
    f.refresh_from_db()
    assert f.status == "not_collected" and not f.pickup_code.is_live
    assert _stock(chain["near"], chain["hat"]).reserved == 0
    assert OutboxEvent.objects.filter(topic="fulfillment.not_collected").exists()
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FAILED
    _audit_clean()


def test_wave_reassigns_only_orders_not_yet_picking(channel, db):
    """A: shirt only, nearest store S1 (which also has the only hat). B: shirt + hat, near S2. Routed one by one,
    A takes S1's shirt and B is split (hat from S1, shirt from S2... or the other way); the wave sends A to S2 and
    B whole to S1: fewer shipments."""
    from tests.factories import ProductFactory

    s1 = StoreFactory(code="W-S1", lat=10.7743, lon=106.7038)
    s2 = StoreFactory(code="W-S2", lat=10.7800, lon=106.6950)
    shirt, hat = ProductFactory(sku="W-SHIRT"), ProductFactory(sku="W-HAT")
    put_stock(s1, shirt, 1)
    put_stock(s1, hat, 1)
    put_stock(s2, shirt, 1)
    a = place(channel, {"W-SHIRT": 1}, lat=10.7745, lon=106.7036)  # right next to S1
    b = place(channel, {"W-SHIRT": 1, "W-HAT": 1}, lat=10.7745, lon=106.7030)
    assert a.fulfillments.get().store == s1
    assert b.fulfillments.count() == 2  # split: the shirt at S1 is taken
    result = services.route_wave(window_seconds=300)
    assert result.applied and result.current_shipments == 3 and result.new_shipments == 2
    assert set(result.reassigned) == {a.number, b.number}
    assert [f.store for f in a.fulfillments.exclude(status="cancelled")] == [s2]
    assert [f.store for f in b.fulfillments.exclude(status="cancelled")] == [s1]
    assert RoutingDecision.objects.filter(kind="wave").count() == 2
    _audit_clean()


def test_wave_leaves_picking_orders_alone(channel, db):
    from tests.factories import ProductFactory

    s1 = StoreFactory(code="W-S1", lat=10.7743, lon=106.7038)
    s2 = StoreFactory(code="W-S2", lat=10.7800, lon=106.6950)
    shirt, hat = ProductFactory(sku="W-SHIRT"), ProductFactory(sku="W-HAT")
    put_stock(s1, shirt, 1)
    put_stock(s1, hat, 1)
    put_stock(s2, shirt, 1)
    a = place(channel, {"W-SHIRT": 1}, lat=10.7745, lon=106.7036)
    b = place(channel, {"W-SHIRT": 1, "W-HAT": 1}, lat=10.7745, lon=106.7030)
    services.transition_fulfillment(fulfillment=a.fulfillments.get(), to="picking", actor="staff")
    result = services.route_wave(window_seconds=300)
    assert not result.applied
    assert a.fulfillments.get().status == "picking" and b.fulfillments.count() == 2
    _audit_clean()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"lines": {"NOPE": 1}}, UnknownSku),
        ({"lines": {"AO-THUN-M": 0}}, InvalidInput),
        ({"lines": {"AO-THUN-M": -2}}, InvalidInput),
        ({"lines": {"AO-THUN-M": 1}, **HANOI}, OutOfDeliveryArea),
        ({"lines": {"AO-THUN-M": 99}}, InsufficientStock),
        ({"lines": {"AO-THUN-M": 1}, "customer_phone": "abc"}, InvalidPhone),
    ],
)
def test_bad_input_writes_nothing(channel, chain, kwargs, error):
    before = (StockMovement.objects.count(), OutboxEvent.objects.count())
    lines = kwargs.pop("lines")
    with pytest.raises(error):
        place(channel, lines, **kwargs)
    assert Order.objects.count() == 0 and Reservation.objects.count() == 0
    assert (StockMovement.objects.count(), OutboxEvent.objects.count()) == before


def test_pickup_store_without_pickup(channel, chain):
    StoreFactory(code="HCM-NOPICK", offers_pickup=False)
    with pytest.raises(PickupNotOffered):
        place(channel, {"AO-THUN-M": 1}, method="pickup", pickup_store_code="HCM-NOPICK")
    with pytest.raises(PickupNotOffered):
        services.quote_promise(channel=channel, lines={"AO-THUN-M": 1}, pickup_store_code="HCM-NOPICK")
    assert Order.objects.count() == 0


def test_promise_rules(channel, chain):
    promise = services.quote_promise(channel=channel, lines={"AO-THUN-M": 2}, **BEN_THANH)
    with pytest.raises(PromiseMismatch):
        place(channel, {"AO-THUN-M": 3}, promise_id=promise.pk, option_id="express_1h")
    with pytest.raises(PromiseMismatch):
        place(channel, {"AO-THUN-M": 2}, promise_id=promise.pk, option_id="nope")
    Promise.objects.filter(pk=promise.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(PromiseExpired):
        place(channel, {"AO-THUN-M": 2}, promise_id=promise.pk, option_id="express_1h")
    assert Order.objects.count() == 0


def test_promise_kept_or_409_when_stock_moved(channel, chain):
    promise = services.quote_promise(channel=channel, lines={"NON-LA": 1}, **BEN_THANH)
    assert promise.options[0]["shipments"][0]["store"] == "HCM-Q1-001"
    place(channel, {"NON-LA": 1})  # someone else takes the hat at Q1 (routed now, nearest first)
    with pytest.raises(InsufficientStock):
        place(channel, {"NON-LA": 1}, promise_id=promise.pk, option_id=promise.options[0]["id"])
    assert Order.objects.count() == 1
    _audit_clean()


def test_capacity_full_store_is_skipped(channel, chain):
    from inventory.models import Store

    Store.objects.filter(pk=chain["near"].pk).update(picking_capacity_per_hour=1)
    first = services.quote_promise(channel=channel, lines={"AO-THUN-M": 1}, **BEN_THANH)
    assert first.options[0]["shipments"][0]["store"] == "HCM-Q1-001"
    place(channel, {"AO-THUN-M": 1}, promise_id=first.pk, option_id="express_1h")  # Q1's only line this hour
    promise = services.quote_promise(channel=channel, lines={"AO-THUN-M": 1}, **BEN_THANH)
    express = [o for o in promise.options if o["kind"] == "express_1h"]
    assert express and all(s["store"] != "HCM-Q1-001" for o in express for s in o["shipments"])
    problem = express[0]["routing"]["problem"]
    assert all(s["id"] != "HCM-Q1-001" for s in problem["stores"])  # not even a candidate for the hour
