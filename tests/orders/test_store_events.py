"""The shop floor is the truth (issue #18), the orders side: what a store event (a till sale, a count finding fewer
units, damaged goods, a transfer shipped) took from online commitments, reconciled by orders.services.reconcile_taken:
checkout holds told (`hold.reduced`), delivery fulfilments re-routed with the event as the decision's cause, pickups
offered a ChangeOffer the customer answers over the API (or `keep` at its expiry), packed goods left alone, and an
order placed from a promise whose units are gone answered with a fresh promise. The events themselves are performed by
tests/orders/shop_floor.py (what inventory.services.ShopFloor writes)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from inventory import services as stock
from inventory.models import EventKind, Reservation, Stock, TakenReservation
from inventory.selectors import reservation_differences, stock_ledger_differences
from o2o.models import OutboxEvent, SalesChannelKey
from orders import services, tasks
from orders.models import (
    ChangeOffer,
    ChangeOfferStatus,
    Fulfillment,
    FulfillmentLine,
    Order,
    OrderLine,
    PickupCode,
    RoutingDecision,
    RoutingKind,
)
from orders.services.store_events import PENDING_GRACE
from tests.concurrency import run_concurrently
from tests.conftest import put_stock
from tests.factories import ProductFactory, SalesChannelFactory
from tests.orders.conftest import BEN_THANH, CUSTOMER
from tests.orders.shop_floor import store_event, wait_for_count

pytestmark = pytest.mark.django_db

SALE = "pos:HCM-Q1-001:R-0042"


def place(channel, lines, **kwargs):
    args = {"customer_name": CUSTOMER["name"], "customer_phone": CUSTOMER["phone"], "method": "delivery",
            "actor": "test", **BEN_THANH}
    args.update(kwargs)
    if args["method"] == "pickup":
        args.pop("lat")
        args.pop("lon")
    return services.place_order(channel=channel, lines=lines, **args)


def assert_audit_clean():
    assert stock_ledger_differences() == []
    assert reservation_differences() == []


def reserved(store, product) -> int:
    return Stock.objects.get(store=store, product=product).reserved


def on_hand(store, product) -> int:
    return Stock.objects.get(store=store, product=product).on_hand


def events(topic):
    return list(OutboxEvent.objects.filter(topic=topic).order_by("pk"))


def counts(order) -> tuple:
    """What a second reconciliation must not add to."""
    return (
        RoutingDecision.objects.filter(order=order).count(),
        ChangeOffer.objects.filter(order=order).count(),
        Fulfillment.objects.filter(order=order).count(),
        OutboxEvent.objects.count(),
        sorted(Reservation.objects.values_list("store_id", "product_id", "quantity", "reference")),
        sorted(OrderLine.objects.filter(order=order).values_list("product_id", "unfulfilled_qty")),
    )


# --- 1. checkout holds ------------------------------------------------------------------------------------------------


def test_hold_reduced_then_dropped_and_its_website_told(chain, channel):
    website = SalesChannelFactory(code="tiki", name="Tiki")  # the hold's website, not the fixture's channel
    near, shirt = chain["near"], chain["shirt"]
    hold = stock.hold_stock(store=near, quantities={shirt: 2}, ttl_seconds=600, actor="test", channel=website)
    assert reserved(near, shirt) == 2  # 3 on hand: 1 free at the till

    ids = store_event(near, shirt, 2)  # the free unit, then 1 from the hold
    assert len(ids) == 1
    taken = TakenReservation.objects.get(pk=ids[0])
    assert (taken.reference, taken.units, taken.cause, taken.channel_id) == (hold.reference, 1, SALE, website.pk)
    assert taken.reconciled_at is None
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "hold_reduced" and done.reference == hold.reference and done.cause == SALE
    assert Reservation.objects.get(reference=hold.reference).quantity == 1
    (event,) = events("hold.reduced")
    assert event.channel_id == website.pk and event.aggregate == hold.reference
    assert event.payload["hold"] == hold.reference and event.payload["cause"] == SALE
    assert event.payload["store"] == "HCM-Q1-001" and event.payload["event"] == "sale"
    assert event.payload["taken"] == [{"sku": "AO-THUN-M", "qty": 1}]
    assert event.payload["left"] == [{"sku": "AO-THUN-M", "qty": 1}]
    assert event.payload["dropped"] is False
    assert "R-0042" in event.payload["reason"]
    taken.refresh_from_db()
    assert taken.reconciled_at is not None and taken.outcome.startswith("Checkout hold reduced")
    assert_audit_clean()

    # a count finds one unit fewer: the last unit of the hold goes, the hold is dropped
    ids = store_event(near, shirt, 1, cause="count:HCM-Q1-001:C-7", kind=EventKind.COUNT)
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "hold_dropped"
    assert not Reservation.objects.filter(reference=hold.reference).exists()
    dropped = events("hold.reduced")[-1]
    assert dropped.channel_id == website.pk
    assert dropped.payload["dropped"] is True and dropped.payload["event"] == "count"
    assert dropped.payload["taken"] == [{"sku": "AO-THUN-M", "qty": 1}]
    assert dropped.payload["left"] == [{"sku": "AO-THUN-M", "qty": 0}]
    assert TakenReservation.objects.get(pk=ids[0]).outcome.startswith("Checkout hold dropped")
    assert (on_hand(near, shirt), reserved(near, shirt)) == (0, 0)
    assert_audit_clean()


def test_holds_are_taken_before_placed_orders(chain, channel):
    near, shirt = chain["near"], chain["shirt"]
    order = place(channel, {"AO-THUN-M": 1})
    f = order.fulfillments.get()
    assert f.store == near
    hold = stock.hold_stock(store=near, quantities={shirt: 2}, ttl_seconds=600, actor="test", channel=channel)
    ids = store_event(near, shirt, 2)  # nothing free: both from the hold, the order untouched
    assert list(TakenReservation.objects.filter(pk__in=ids).values_list("reference", "units")) == [(hold.reference, 2)]
    assert Reservation.objects.get(reference=f.reference).quantity == 1
    assert services.reconcile_taken(ids=ids)[0].result == "hold_dropped"
    assert_audit_clean()


def test_hold_made_over_the_api_tells_its_website(api, chain, channel):
    r = api.post("/api/v1/holds/", {"store": "HCM-Q3-001", "lines": [{"sku": "AO-THUN-M", "qty": 5},
                                                                     {"sku": "TUI-VAI", "qty": 1}]},
                 format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    assert r.status_code == 201, r.content
    reference = r.json()["reference"]
    ids = store_event(chain["mid"], chain["shirt"], 2, cause="pos:HCM-Q3-001:R-9")
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "hold_reduced"
    (event,) = events("hold.reduced")
    assert event.channel_id == channel.pk and event.payload["hold"] == reference
    assert event.payload["taken"] == [{"sku": "AO-THUN-M", "qty": 2}]
    assert event.payload["left"] == [{"sku": "AO-THUN-M", "qty": 3}, {"sku": "TUI-VAI", "qty": 1}]
    assert event.payload["dropped"] is False
    assert_audit_clean()


def test_hold_without_a_website_is_recorded(chain):
    hold = stock.hold_stock(store=chain["near"], quantities={chain["hat"]: 1}, ttl_seconds=600, actor="test")
    ids = store_event(chain["near"], chain["hat"], 1)
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "hold_dropped" and "no website on the hold" in done.outcome
    (event,) = events("hold.reduced")
    assert event.channel_id is None and event.payload["hold"] == hold.reference
    assert_audit_clean()


def test_newest_hold_is_taken_first(chain, channel):
    near, shirt = chain["near"], chain["shirt"]
    older = stock.hold_stock(store=near, quantities={shirt: 1}, ttl_seconds=600, actor="test", channel=channel)
    newer = stock.hold_stock(store=near, quantities={shirt: 1}, ttl_seconds=600, actor="test", channel=channel)
    ids = store_event(near, shirt, 2)  # 1 free, then the newest hold
    assert list(TakenReservation.objects.filter(pk__in=ids).values_list("reference", flat=True)) == [newer.reference]
    assert Reservation.objects.filter(reference=older.reference).exists()
    services.reconcile_taken(ids=ids)
    assert [e.payload["hold"] for e in events("hold.reduced")] == [newer.reference]
    assert_audit_clean()


# --- 2. delivery fulfilments re-routed --------------------------------------------------------------------------------


def test_assigned_delivery_taken_whole_is_rerouted_to_the_next_store(chain, channel):
    near, mid, shirt = chain["near"], chain["mid"], chain["shirt"]
    order = place(channel, {"AO-THUN-M": 1})
    source = order.fulfillments.get()
    assert source.store == near and source.status == "assigned"

    ids = store_event(near, shirt, 3)  # 2 free, then the order's unit
    assert list(TakenReservation.objects.filter(pk__in=ids).values_list("reference", "units")) == [
        (source.reference, 1)
    ]
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "rerouted" and done.order == order.number and done.cause == SALE

    source.refresh_from_db()
    assert source.status == "cancelled"
    assert FulfillmentLine.objects.get(fulfillment=source).picked_qty == 0
    new = Fulfillment.objects.get(order=order, status="assigned")
    assert new.store == mid and new.round == 2 and done.fulfillments == [new.pk]
    assert [(line.product_id, line.qty) for line in new.lines.all()] == [(shirt.pk, 1)]
    assert reserved(near, shirt) == 0 and reserved(mid, shirt) == 1
    assert Reservation.objects.get(reference=new.reference).quantity == 1

    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT)
    assert decision.pk == done.decision and decision.applied and decision.cause == SALE
    assert "A till sale at HCM-Q1-001 (receipt R-0042)" in decision.reason
    assert [c["store"] for c in decision.candidates if c["chosen"]] == ["HCM-Q3-001"]
    assert "HCM-Q1-001" not in [c["store"] for c in decision.candidates]

    (event,) = events("order.rerouted")
    assert event.channel_id == channel.pk
    assert event.payload["kind"] == "store_event" and event.payload["cause"] == SALE
    assert event.payload["from_store"] == "HCM-Q1-001"
    assert [x["store"] for x in event.payload["fulfillments"]] == ["HCM-Q3-001"]
    assert event.payload["promise_moved"] is done.promise_moved
    assert isinstance(event.payload["promise_moved"], bool)
    taken = TakenReservation.objects.get(pk=ids[0])
    assert taken.reconciled_at is not None and "HCM-Q3-001" in taken.outcome
    assert Order.objects.get(pk=order.pk).status == "open"
    assert_audit_clean()

    # the new store ships it as usual
    for step in ("picking", "packed", "handed_to_courier", "delivered"):
        services.transition_fulfillment(fulfillment=new, to=step, actor="test")
    assert Order.objects.get(pk=order.pk).status == "completed"
    assert_audit_clean()


def test_partial_take_keeps_the_source_and_reroutes_only_the_missing_units(chain, channel):
    near, mid, shirt = chain["near"], chain["mid"], chain["shirt"]
    order = place(channel, {"AO-THUN-M": 3})
    source = order.fulfillments.get()
    assert source.store == near and reserved(near, shirt) == 3

    ids = store_event(near, shirt, 1, cause="damage:HCM-Q1-001:D-1", kind=EventKind.DAMAGE)
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "rerouted"
    source.refresh_from_db()
    assert source.status == "assigned"
    line = FulfillmentLine.objects.get(fulfillment=source)
    assert (line.qty, line.picked_qty, line.units) == (3, 2, 2)
    assert Reservation.objects.get(reference=source.reference).quantity == 2
    new = Fulfillment.objects.exclude(pk=source.pk).get(order=order)
    assert new.store == mid and new.status == "assigned"
    assert [(x.product_id, x.qty) for x in new.lines.all()] == [(shirt.pk, 1)]
    assert reserved(near, shirt) == 2 and reserved(mid, shirt) == 1
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT)
    assert decision.cause == "damage:HCM-Q1-001:D-1" and decision.applied
    assert "Goods found damaged at HCM-Q1-001 (report D-1)" in decision.reason
    (event,) = events("order.rerouted")
    assert event.payload["cause"] == "damage:HCM-Q1-001:D-1" and "promise_moved" in event.payload
    assert "kept with what is left" in TakenReservation.objects.get(pk=ids[0]).outcome
    assert_audit_clean()

    # both parts are handed over: each commits what it holds
    for f in (source, new):
        for step in ("picking", "packed", "handed_to_courier"):
            services.transition_fulfillment(fulfillment=f, to=step, actor="test")
    assert (on_hand(near, shirt), reserved(near, shirt)) == (0, 0)
    assert (on_hand(mid, shirt), reserved(mid, shirt)) == (4, 0)
    assert_audit_clean()


def test_picking_fulfilment_is_taken_after_assigned_ones(chain, channel):
    near, shirt = chain["near"], chain["shirt"]
    picking = place(channel, {"AO-THUN-M": 1})
    assigned = place(channel, {"AO-THUN-M": 1})
    fp, fa = picking.fulfillments.get(), assigned.fulfillments.get()
    assert fp.store == fa.store == near
    services.transition_fulfillment(fulfillment=fp, to="picking", actor="test")
    ids = store_event(near, shirt, 2)  # 1 free, then the assigned order's unit, the picking one untouched
    assert list(TakenReservation.objects.filter(pk__in=ids).values_list("reference", flat=True)) == [fa.reference]
    assert Reservation.objects.get(reference=fp.reference).quantity == 1
    services.reconcile_taken(ids=ids)
    assert_audit_clean()


def test_two_events_before_reconciliation_each_reroute_their_own_units(chain, channel):
    near, mid, shirt = chain["near"], chain["mid"], chain["shirt"]
    order = place(channel, {"AO-THUN-M": 3})
    source = order.fulfillments.get()
    ids = store_event(near, shirt, 1) + store_event(near, shirt, 1, cause="pos:HCM-Q1-001:R-0043")
    done = services.reconcile_taken(ids=ids)
    assert [(d.cause, d.result) for d in done] == [(SALE, "rerouted"), ("pos:HCM-Q1-001:R-0043", "rerouted")]
    assert FulfillmentLine.objects.get(fulfillment=source).units == 1
    assert Reservation.objects.get(reference=source.reference).quantity == 1
    moved = Fulfillment.objects.filter(order=order, store=mid, status="assigned")
    assert sum(line.qty for f in moved for line in f.lines.all()) == 2
    causes = list(RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).order_by("pk")
                  .values_list("cause", flat=True))
    assert causes == [SALE, "pos:HCM-Q1-001:R-0043"]
    assert (reserved(near, shirt), reserved(mid, shirt)) == (1, 2)
    assert_audit_clean()


def test_picking_delivery_taken_whole_is_cancelled_and_rerouted(chain, channel):
    order = place(channel, {"AO-THUN-M": 1})
    source = order.fulfillments.get()
    services.transition_fulfillment(fulfillment=source, to="picking", actor="test")
    (done,) = services.reconcile_taken(ids=store_event(chain["near"], chain["shirt"], 3))
    assert done.result == "rerouted"
    assert Fulfillment.objects.get(pk=source.pk).status == "cancelled"
    assert Fulfillment.objects.get(order=order, status="assigned").store == chain["mid"]
    assert Order.objects.get(pk=order.pk).status == "open"
    assert_audit_clean()


def test_a_short_pick_before_reconciliation_leaves_nothing_missing(chain, channel):
    """The till sold one of the order's 3 shirts; the picker then finds 2 and reports the short pick before the
    event is reconciled: the short pick re-routes the missing shirt, the reconciliation finds nothing left to move,
    and the shirt is written off once (by the sale), not twice."""
    near, mid, shirt = chain["near"], chain["mid"], chain["shirt"]
    order = place(channel, {"AO-THUN-M": 3})
    source = order.fulfillments.get()
    ids = store_event(near, shirt, 1)
    services.report_short_pick(fulfillment=source, found={shirt.pk: 2}, actor="staff:lan")
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "nothing_missing"
    assert RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).count() == 0
    assert FulfillmentLine.objects.get(fulfillment=source).units == 2
    moved = Fulfillment.objects.exclude(pk=source.pk).get(order=order)
    assert moved.store == mid and [x.qty for x in moved.lines.all()] == [1]
    assert (on_hand(near, shirt), reserved(near, shirt)) == (2, 2)
    assert_audit_clean()


# --- 3. nowhere to re-route -------------------------------------------------------------------------------------------


def test_no_other_store_leaves_the_lines_unfulfilled(chain, channel):
    near = chain["near"]
    scarf = ProductFactory(sku="KHAN-LUA")
    put_stock(near, scarf, 1)  # the only one in the chain
    order = place(channel, {"KHAN-LUA": 1})
    source = order.fulfillments.get()
    assert source.store == near

    ids = store_event(near, scarf, 1, cause="transfer:HCM-Q1-001:T-9", kind=EventKind.TRANSFER)
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "unfulfilled" and done.fulfillments == []
    source.refresh_from_db()
    assert source.status == "cancelled"
    assert OrderLine.objects.get(order=order, product=scarf).unfulfilled_qty == 1
    assert Order.objects.get(pk=order.pk).status == "cancelled"  # nothing left to serve
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT)
    assert decision.pk == done.decision
    assert not decision.applied and decision.plan_status == "unserved"
    assert decision.cause == "transfer:HCM-Q1-001:T-9"
    assert "A transfer shipped at HCM-Q1-001 (transfer T-9)" in decision.reason
    (event,) = events("order.lines_unfulfilled")
    assert event.channel_id == channel.pk
    assert event.payload["lines"] == [{"sku": "KHAN-LUA", "qty": 1}]
    assert event.payload["cause"] == "transfer:HCM-Q1-001:T-9"
    assert events("order.rerouted") == []
    assert "No other store" in TakenReservation.objects.get(pk=ids[0]).outcome
    assert_audit_clean()


# --- 4. pickups: a change offered -------------------------------------------------------------------------------------


@pytest.fixture
def offered(chain, channel):
    """A pickup of 2 shirts at Q1 (3 on hand); a till sale of 2 leaves it 1 shirt: a change offered."""
    order = place(channel, {"AO-THUN-M": 2}, method="pickup", pickup_store_code="HCM-Q1-001")
    f = order.fulfillments.get()
    code = PickupCode.objects.get(fulfillment=f)
    ids = store_event(chain["near"], chain["shirt"], 2)
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "change_offered"
    offer = ChangeOffer.objects.get(pk=done.offer)
    return {"order": order, "f": f, "code": code, "offer": offer, "done": done, "ids": ids}


def accept(api, order, offer, option, key):
    return api.post(f"/api/v1/orders/{order.number}/change-offers/{offer.pk}/accept/", {"option": option},
                    format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_pickup_taken_gets_a_change_offer(chain, channel, offered):
    order, f, offer = offered["order"], offered["f"], offered["offer"]
    assert offer.status == ChangeOfferStatus.OPEN and offer.fulfillment_id == f.pk
    assert offer.cause == SALE and offer.event_kind == "sale"
    assert offer.missing == [{"sku": "AO-THUN-M", "qty": 1}]
    options = {o["id"]: o for o in offer.options}
    assert list(options) == ["move", "keep", "cancel"]
    assert options["move"]["store"] == "HCM-Q3-001" and options["move"]["lines"] == [{"sku": "AO-THUN-M", "qty": 2}]
    assert options["keep"]["store"] == "HCM-Q1-001" and options["keep"]["lines"] == [{"sku": "AO-THUN-M", "qty": 1}]
    assert options["keep"]["missing"] == [{"sku": "AO-THUN-M", "qty": 1}]
    assert options["cancel"]["missing"] == [{"sku": "AO-THUN-M", "qty": 1}]
    # the pick list shrank to what the store still holds; nothing moved yet
    f.refresh_from_db()
    assert f.status == "assigned" and FulfillmentLine.objects.get(fulfillment=f).picked_qty == 1
    assert Reservation.objects.get(reference=f.reference).quantity == 1
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT)
    assert decision.pk == offered["done"].decision
    assert not decision.applied and decision.plan_status == "offered" and decision.cause == SALE
    assert decision.plan["change_offer"] == offer.pk
    (event,) = events("order.change_offered")
    assert event.channel_id == channel.pk
    assert event.payload["offer"] == offer.pk and event.payload["cause"] == SALE
    assert [o["id"] for o in event.payload["options"]] == ["move", "keep", "cancel"]
    assert events("order.rerouted") == [] and events("order.lines_unfulfilled") == []
    assert_audit_clean()


def test_accept_move_over_the_api(api, chain, channel, offered):
    order, f, offer, old_code = offered["order"], offered["f"], offered["offer"], offered["code"]
    near, mid, shirt = chain["near"], chain["mid"], chain["shirt"]
    detail = api.get(f"/api/v1/orders/{order.number}/").json()
    assert [o["id"] for o in detail["change_offers"]] == [offer.pk]

    r = accept(api, order, offer, "move", "answer-1")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["offer"]["status"] == "accepted" and body["offer"]["chosen"] == "move"
    assert body["order"]["change_offers"] == []
    f.refresh_from_db()
    assert f.status == "cancelled"
    new = Fulfillment.objects.get(order=order, status="assigned")
    assert new.store == mid and new.method == "pickup"
    assert [(x.product_id, x.qty) for x in new.lines.all()] == [(shirt.pk, 2)]
    new_code = PickupCode.objects.get(fulfillment=new)
    old_code.refresh_from_db()
    assert new_code.is_live and not old_code.is_live and new_code.code != old_code.code
    assert Order.objects.get(pk=order.pk).pickup_store == mid
    assert reserved(near, shirt) == 0 and reserved(mid, shirt) == 2
    offer.refresh_from_db()
    assert offer.status == ChangeOfferStatus.ACCEPTED and offer.chosen == "move"
    assert offer.decided_by == f"channel:{channel.code}"
    moved = RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).order_by("pk").last()
    assert moved.applied and moved.cause == SALE and moved.plan["change_offer"] == offer.pk
    assert "move the pickup from HCM-Q1-001 to HCM-Q3-001" in moved.reason
    (event,) = events("order.rerouted")
    assert event.payload["cause"] == SALE and event.payload["offer"] == offer.pk
    assert event.payload["fulfillments"][0]["pickup_code"] == new_code.code
    live = [x for x in body["order"]["fulfillments"] if x["status"] == "assigned"]
    assert [x["store"]["code"] for x in live] == ["HCM-Q3-001"]
    assert live[0]["pickup"]["code"] == new_code.code
    assert_audit_clean()

    # answering again (another request) is refused: the offer is no longer open
    r = accept(api, order, offer, "keep", "answer-2")
    assert r.status_code == 409 and r.json()["code"] == "change_offer_not_open"
    # the same key and body replays the first answer, changing nothing
    before = counts(order)
    again = accept(api, order, offer, "move", "answer-1")
    assert again.status_code == 200 and again.json() == body
    assert counts(order) == before
    # the same key with another answer is refused, not replayed
    other = accept(api, order, offer, "cancel", "answer-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert counts(order) == before


def test_accept_keep_marks_the_missing_units_unfulfilled(api, chain, channel, offered):
    order, f, offer = offered["order"], offered["f"], offered["offer"]
    r = accept(api, order, offer, "keep", "k-keep")
    assert r.status_code == 200, r.content
    assert r.json()["offer"]["chosen"] == "keep"
    assert OrderLine.objects.get(order=order, product=chain["shirt"]).unfulfilled_qty == 1
    f.refresh_from_db()
    assert f.status == "assigned" and FulfillmentLine.objects.get(fulfillment=f).units == 1
    assert PickupCode.objects.get(fulfillment=f).is_live
    assert Reservation.objects.get(reference=f.reference).quantity == 1
    kept = RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).order_by("pk").last()
    assert kept.plan_status == "kept" and not kept.applied and kept.cause == SALE
    (event,) = events("order.lines_unfulfilled")
    assert event.payload["lines"] == [{"sku": "AO-THUN-M", "qty": 1}] and event.payload["cause"] == SALE
    # the customer collects what is left: 1 unit committed
    for step in ("picking", "packed", "ready_for_pickup", "collected"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="test")
    assert (on_hand(chain["near"], chain["shirt"]), reserved(chain["near"], chain["shirt"])) == (0, 0)
    assert Order.objects.get(pk=order.pk).status == "completed"
    assert_audit_clean()


def test_accept_cancel_cancels_the_order(api, chain, channel, offered):
    order, f, offer = offered["order"], offered["f"], offered["offer"]
    r = accept(api, order, offer, "cancel", "k-cancel")
    assert r.status_code == 200, r.content
    assert r.json()["order"]["status"] == "cancelled"
    assert Order.objects.get(pk=order.pk).status == "cancelled"
    f.refresh_from_db()
    assert f.status == "cancelled"
    assert not Reservation.objects.filter(reference=f.reference).exists()
    assert not PickupCode.objects.get(fulfillment=f).is_live
    assert reserved(chain["near"], chain["shirt"]) == 0
    cancelled = RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).order_by("pk").last()
    assert cancelled.plan_status == "cancelled" and cancelled.cause == SALE
    # answering twice: 409
    r = accept(api, order, offer, "cancel", "k-cancel-2")
    assert r.status_code == 409 and r.json()["code"] == "change_offer_not_open"
    assert_audit_clean()


def test_unknown_option_and_unknown_offer(api, chain, channel, offered):
    order, offer = offered["order"], offered["offer"]
    before = counts(order)
    r = accept(api, order, offer, "teleport", "k-x")
    assert r.status_code == 422 and r.json()["code"] == "unknown_change_option"
    assert counts(order) == before
    assert ChangeOffer.objects.get(pk=offer.pk).status == ChangeOfferStatus.OPEN
    r = api.post(f"/api/v1/orders/{order.number}/change-offers/{offer.pk + 1000}/accept/", {"option": "keep"},
                 format="json", HTTP_IDEMPOTENCY_KEY="k-y")
    assert r.status_code == 404 and r.json()["code"] == "change_offer_not_found"
    # another website never sees the offer
    other = SalesChannelFactory(code="shopee", name="Shopee")
    _, key = SalesChannelKey.objects.create_key(name="other", channel=other)
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    r = accept(stranger, order, offer, "cancel", "k-z")
    assert r.status_code == 404
    assert Order.objects.get(pk=order.pk).status == "open"


def test_one_receipt_taking_two_skus_of_a_pickup_makes_one_offer(api, chain, channel):
    near = chain["near"]
    order = place(channel, {"AO-THUN-M": 3, "NON-LA": 1}, method="pickup", pickup_store_code="HCM-Q1-001")
    ids = store_event(near, chain["shirt"], 1) + store_event(near, chain["hat"], 1)  # one receipt, two lines
    assert len(ids) == 2
    (done,) = services.reconcile_taken(ids=ids)
    offer = ChangeOffer.objects.get(pk=done.offer)
    assert offer.missing == [{"sku": "AO-THUN-M", "qty": 1}, {"sku": "NON-LA", "qty": 1}]
    assert [o["id"] for o in offer.options] == ["move", "keep", "cancel"]  # Q3: 5 shirts and 1 hat
    keep = next(o for o in offer.options if o["id"] == "keep")
    assert keep["lines"] == [{"sku": "AO-THUN-M", "qty": 2}]
    assert len(events("order.change_offered")) == 1
    detail = api.get(f"/api/v1/orders/{order.number}/").json()
    (routing,) = [d for d in detail["routing"] if d["kind"] == "store_event"]
    assert routing["cause"] == SALE and routing["plan_status"] == "offered"
    (listed,) = detail["change_offers"]
    assert listed["id"] == offer.pk and listed["cause"] == SALE and listed["event"] == "sale"
    r = accept(api, order, offer, "keep", "k-2")
    assert r.status_code == 200, r.content
    lines = dict(OrderLine.objects.filter(order=order).values_list("product__sku", "unfulfilled_qty"))
    assert lines == {"AO-THUN-M": 1, "NON-LA": 1}
    assert_audit_clean()


def test_answer_needs_an_idempotency_key(api, chain, channel, offered):
    r = api.post(f"/api/v1/orders/{offered['order'].number}/change-offers/{offered['offer'].pk}/accept/",
                 {"option": "keep"}, format="json")
    assert r.status_code == 400, r.content
    assert ChangeOffer.objects.get(pk=offered["offer"].pk).status == ChangeOfferStatus.OPEN


def test_unanswered_offer_is_kept_at_expiry(chain, channel, offered):
    order, f, offer = offered["order"], offered["f"], offered["offer"]
    assert services.expire_change_offers(now=offer.expires_at - timedelta(seconds=1)) == 0
    assert ChangeOffer.objects.get(pk=offer.pk).status == ChangeOfferStatus.OPEN
    assert tasks.expire_change_offers() == 0  # not yet due
    assert services.expire_change_offers(now=offer.expires_at + timedelta(seconds=1)) == 1
    offer.refresh_from_db()
    assert offer.status == ChangeOfferStatus.EXPIRED and offer.chosen == "keep"
    assert offer.decided_by == "task:expire_change_offers"
    assert OrderLine.objects.get(order=order, product=chain["shirt"]).unfulfilled_qty == 1
    f.refresh_from_db()
    assert f.status == "assigned"
    (event,) = events("order.lines_unfulfilled")
    assert event.payload["offer"] == offer.pk
    assert "the offer expired unanswered" in RoutingDecision.objects.order_by("pk").last().reason
    # nothing more to expire, and an expired offer cannot be answered
    assert services.expire_change_offers(now=offer.expires_at + timedelta(hours=1)) == 0
    assert_audit_clean()


def test_an_order_cancelled_meanwhile_closes_its_offer(api, chain, channel, offered):
    """The customer cancels the order (POST .../cancel/) instead of answering: the offer is no longer listed,
    cannot be answered, and its expiry changes nothing on the cancelled order."""
    order, offer = offered["order"], offered["offer"]
    r = api.post(f"/api/v1/orders/{order.number}/cancel/", {"reason": "changed my mind"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.get(f"/api/v1/orders/{order.number}/").json()["change_offers"] == []
    before = counts(order)
    r = accept(api, order, offer, "keep", "k-after-cancel")
    assert r.status_code == 409 and r.json()["code"] == "change_offer_not_open", r.content
    assert counts(order) == before
    offer.refresh_from_db()
    assert (offer.status, offer.chosen, offer.decided_by) == (ChangeOfferStatus.WITHDRAWN, "", "channel:website")
    assert services.expire_change_offers(now=offer.expires_at + timedelta(seconds=1)) == 0
    assert counts(order) == before
    assert events("order.lines_unfulfilled") == []
    assert OrderLine.objects.get(order=order, product=chain["shirt"]).unfulfilled_qty == 0
    assert_audit_clean()


def test_a_whole_pickup_cancelled_meanwhile_does_not_jam_the_expiry(api, chain, channel):
    order = place(channel, {"AO-THUN-M": 2}, method="pickup", pickup_store_code="HCM-Q1-001")
    (done,) = services.reconcile_taken(ids=store_event(chain["near"], chain["shirt"], 3))
    offer = ChangeOffer.objects.get(pk=done.offer)
    assert [o["id"] for o in offer.options] == ["move", "cancel"]  # nothing left to keep
    services.cancel_order(order=order, actor="channel:website")
    offer.refresh_from_db()
    assert offer.status == ChangeOfferStatus.WITHDRAWN  # closed with the order, not left open for the expiry
    # An offer still open on a cancelled order (written by code before the cancel closed them) expires quietly.
    ChangeOffer.objects.filter(pk=offer.pk).update(status=ChangeOfferStatus.OPEN)
    assert services.expire_change_offers(now=offer.expires_at + timedelta(seconds=1)) == 1
    offer.refresh_from_db()
    assert offer.status == ChangeOfferStatus.EXPIRED  # not left open, retried (and failing) on every run
    assert services.expire_change_offers(now=offer.expires_at + timedelta(hours=1)) == 0
    assert_audit_clean()


def test_an_offer_past_its_expiry_cannot_be_answered(api, chain, channel, offered):
    order, offer = offered["order"], offered["offer"]
    ChangeOffer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = accept(api, order, offer, "move", "k-late")
    assert r.status_code == 409 and r.json()["code"] == "change_offer_not_open"
    assert Fulfillment.objects.filter(order=order).count() == 1


def test_pickup_with_no_other_store_is_offered_keep_or_cancel(api, chain, channel):
    scarf = ProductFactory(sku="KHAN-LUA")
    put_stock(chain["near"], scarf, 2)
    order = place(channel, {"KHAN-LUA": 2}, method="pickup", pickup_store_code="HCM-Q1-001")
    (done,) = services.reconcile_taken(ids=store_event(chain["near"], scarf, 1))
    offer = ChangeOffer.objects.get(pk=done.offer)
    assert [o["id"] for o in offer.options] == ["keep", "cancel"]
    decision = RoutingDecision.objects.get(pk=done.decision)
    assert decision.plan_status == "offered" and not decision.applied and decision.cause == SALE
    r = accept(api, order, offer, "move", "k-m")
    assert r.status_code == 422 and r.json()["code"] == "unknown_change_option"
    assert_audit_clean()


def test_pickup_taken_whole_offers_move_or_cancel_and_expires_to_cancel(chain, channel):
    order = place(channel, {"AO-THUN-M": 2}, method="pickup", pickup_store_code="HCM-Q1-001")
    f = order.fulfillments.get()
    ids = store_event(chain["near"], chain["shirt"], 3)  # 1 free, then both of the pickup's
    (done,) = services.reconcile_taken(ids=ids)
    offer = ChangeOffer.objects.get(pk=done.offer)
    assert [o["id"] for o in offer.options] == ["move", "cancel"]
    assert offer.missing == [{"sku": "AO-THUN-M", "qty": 2}]
    assert FulfillmentLine.objects.get(fulfillment=f).picked_qty == 0
    assert not Reservation.objects.filter(reference=f.reference).exists()
    assert services.expire_change_offers(now=offer.expires_at + timedelta(seconds=1)) == 1
    offer.refresh_from_db()
    assert offer.status == ChangeOfferStatus.EXPIRED and offer.chosen == "cancel"
    assert Order.objects.get(pk=order.pk).status == "cancelled"
    assert Fulfillment.objects.get(pk=f.pk).status == "cancelled"
    assert not PickupCode.objects.get(fulfillment=f).is_live
    assert_audit_clean()


def test_a_second_event_supersedes_the_open_offer(api, chain, channel, offered):
    order, f, first = offered["order"], offered["f"], offered["offer"]
    ids = store_event(chain["near"], chain["shirt"], 1, cause="pos:HCM-Q1-001:R-0043")
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "change_offered" and done.offer != first.pk
    first.refresh_from_db()
    assert first.status == ChangeOfferStatus.SUPERSEDED
    second = ChangeOffer.objects.get(pk=done.offer)
    assert second.status == ChangeOfferStatus.OPEN and second.cause == "pos:HCM-Q1-001:R-0043"
    assert second.missing == [{"sku": "AO-THUN-M", "qty": 2}]  # the first offer's missing unit carried over
    assert [o["id"] for o in second.options] == ["move", "cancel"]
    move = next(o for o in second.options if o["id"] == "move")
    assert move["lines"] == [{"sku": "AO-THUN-M", "qty": 2}]
    r = accept(api, order, first, "keep", "k-old")
    assert r.status_code == 409 and r.json()["code"] == "change_offer_not_open"
    r = accept(api, order, second, "move", "k-new")
    assert r.status_code == 200, r.content
    new = Fulfillment.objects.get(order=order, status="assigned")
    assert new.store == chain["mid"] and [x.qty for x in new.lines.all()] == [2]
    assert Fulfillment.objects.get(pk=f.pk).status == "cancelled"
    assert_audit_clean()


def test_move_refused_when_the_offered_store_sold_out_meanwhile(api, chain, channel, offered):
    order, f, offer = offered["order"], offered["f"], offered["offer"]
    store_event(chain["mid"], chain["shirt"], 4, cause="pos:HCM-Q3-001:R-1")  # mid keeps 1 shirt: not 2
    before = counts(order)
    r = accept(api, order, offer, "move", "k-move")
    assert r.status_code == 409 and r.json()["code"] == "change_option_unavailable", r.content
    assert r.json()["details"]["options"] == ["keep", "cancel"]
    assert counts(order) == before
    assert ChangeOffer.objects.get(pk=offer.pk).status == ChangeOfferStatus.OPEN
    assert Fulfillment.objects.get(pk=f.pk).status == "assigned"
    r = accept(api, order, offer, "keep", "k-keep")
    assert r.status_code == 200, r.content
    assert_audit_clean()


# --- 5. reconciling once ----------------------------------------------------------------------------------------------


def test_reconciling_twice_changes_nothing_more(chain, channel):
    order = place(channel, {"AO-THUN-M": 1})
    ids = store_event(chain["near"], chain["shirt"], 3)
    assert len(services.reconcile_taken(ids=ids)) == 1
    before = counts(order)
    outcome = list(TakenReservation.objects.filter(pk__in=ids).values_list("reconciled_at", "outcome"))
    assert services.reconcile_taken(ids=ids) == []
    assert services.reconcile_taken(now=timezone.now() + timedelta(hours=1)) == []
    assert counts(order) == before
    assert list(TakenReservation.objects.filter(pk__in=ids).values_list("reconciled_at", "outcome")) == outcome
    assert RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).count() == 1
    assert len(events("order.rerouted")) == 1
    assert services.reconcile_taken(ids=[]) == []
    assert_audit_clean()


def test_pending_rows_are_picked_up_after_the_grace_period(chain, channel):
    order = place(channel, {"AO-THUN-M": 1})
    hold = stock.hold_stock(store=chain["mid"], quantities={chain["shirt"]: 5}, ttl_seconds=600, actor="test",
                            channel=channel)
    order_ids = store_event(chain["near"], chain["shirt"], 3)
    hold_ids = store_event(chain["mid"], chain["shirt"], 1, cause="pos:HCM-Q3-001:R-7")
    put_stock(chain["far"], chain["shirt"], 2)  # mid's shirts are all held: the order will go to far
    # the POS could not reconcile (it crashed after its commit): the rows wait, and are young
    assert services.reconcile_taken() == []
    assert tasks.reconcile_taken_reservations() == 0
    assert TakenReservation.objects.filter(reconciled_at__isnull=True).count() == 2
    TakenReservation.objects.filter(pk__in=order_ids + hold_ids).update(
        created_at=timezone.now() - PENDING_GRACE - timedelta(seconds=1)
    )
    assert tasks.reconcile_taken_reservations() == 2
    assert not TakenReservation.objects.filter(reconciled_at__isnull=True).exists()
    assert RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT).cause == SALE
    assert Reservation.objects.get(reference=hold.reference).quantity == 4
    (reduced,) = events("hold.reduced")
    assert reduced.payload["cause"] == "pos:HCM-Q3-001:R-7"
    (new,) = Fulfillment.objects.filter(order=order, status="assigned")
    assert new.store == chain["far"]
    assert services.reconcile_taken(now=timezone.now() + timedelta(minutes=5)) == []
    assert_audit_clean()


def test_reconcile_with_explicit_now_picks_rows_older_than_grace(chain, channel):
    place(channel, {"AO-THUN-M": 1})
    ids = store_event(chain["near"], chain["shirt"], 3)
    assert services.reconcile_taken(now=timezone.now() + PENDING_GRACE / 2) == []
    (done,) = services.reconcile_taken(now=timezone.now() + PENDING_GRACE + timedelta(seconds=1))
    assert done.taken_ids == ids and done.result == "rerouted"


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_two_runners_reconcile_a_take_once(chain, channel):
    """The POS and the periodic task reconcile the same rows at once: one settles them, the other skips them."""
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED is a PostgreSQL promise")
    order = place(channel, {"AO-THUN-M": 1})
    ids = store_event(chain["near"], chain["shirt"], 3)
    results = run_concurrently(2, lambda i: services.reconcile_taken(ids=ids))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sorted(len(r) for r in results) == [0, 1]
    assert RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).count() == 1
    assert len(events("order.rerouted")) == 1
    assert Fulfillment.objects.filter(order=order, status="assigned").count() == 1
    assert not TakenReservation.objects.filter(reconciled_at__isnull=True).exists()
    assert_audit_clean()


# --- 6. packed between the event and its reconciliation ---------------------------------------------------------------


def test_packed_before_reconciled_is_left_alone_and_handover_commits_what_is_reserved(chain, channel):
    near, shirt = chain["near"], chain["shirt"]
    order = place(channel, {"AO-THUN-M": 2})
    f = order.fulfillments.get()
    services.transition_fulfillment(fulfillment=f, to="picking", actor="test")
    ids = store_event(near, shirt, 2)  # 1 free, then 1 of the picking order's
    assert Reservation.objects.get(reference=f.reference).quantity == 1
    services.transition_fulfillment(fulfillment=f, to="packed", actor="test")  # the bag closed first

    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "packed" and done.order == order.number
    assert "nothing was re-routed" in TakenReservation.objects.get(pk=ids[0]).outcome
    assert Fulfillment.objects.filter(order=order).count() == 1
    assert not RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).exists()
    assert events("order.rerouted") == [] and events("order.lines_unfulfilled") == []
    assert FulfillmentLine.objects.get(fulfillment=f).units == 2  # as packed: the bag holds what was picked
    assert_audit_clean()

    services.transition_fulfillment(fulfillment=f, to="handed_to_courier", actor="test")
    assert not Reservation.objects.filter(reference=f.reference).exists()
    row = Stock.objects.get(store=near, product=shirt)
    assert (row.on_hand, row.reserved) == (0, 0)  # 3 - 2 by the event - 1 committed
    assert_audit_clean()


def test_cancelled_before_reconciled_is_closed(chain, channel):
    order = place(channel, {"AO-THUN-M": 1})
    ids = store_event(chain["near"], chain["shirt"], 3)
    services.cancel_order(order=order, actor="test")
    (done,) = services.reconcile_taken(ids=ids)
    assert done.result == "closed"
    assert not RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT).exists()
    assert_audit_clean()


# --- 7. placing from a promise whose units are gone -------------------------------------------------------------------


def _order_body(quote, key_lines):
    return {"lines": key_lines, "customer": CUSTOMER, "method": "delivery", "promise": quote["id"],
            "option": quote["options"][0]["id"], "payment_state": "paid"}


def test_placing_from_a_promise_whose_unit_a_till_sold_gets_a_fresh_promise(api, chain, channel):
    # the hat: 1 at Q1 (nearest), 1 at Q3
    lines = [{"sku": "NON-LA", "qty": 1}]
    quote = api.post("/api/v1/promises/", {"lines": lines, "destination": BEN_THANH}, format="json")
    assert quote.status_code == 201, quote.content
    quote = quote.json()
    assert quote["options"][0]["shipments"][0]["store"] == "HCM-Q1-001"
    assert store_event(chain["near"], chain["hat"], 1) == []  # a free unit: nothing reserved was taken
    r = api.post("/api/v1/orders/", _order_body(quote, lines), format="json", HTTP_IDEMPOTENCY_KEY="p-1")
    assert r.status_code == 409, r.content
    body = r.json()
    assert body["code"] == "insufficient_stock"
    fresh = body["details"]["fresh_promise"]
    assert fresh is not None and fresh["id"] != quote["id"]
    assert "fresh_promise_unavailable" not in body["details"]
    stores = {s["store"] for o in fresh["options"] for s in o.get("shipments", [])}
    assert stores == {"HCM-Q3-001"}
    assert not Order.objects.exists()
    # the fresh promise places
    r = api.post("/api/v1/orders/", _order_body(fresh, lines), format="json", HTTP_IDEMPOTENCY_KEY="p-2")
    assert r.status_code == 201, r.content
    assert r.json()["fulfillments"][0]["store"]["code"] == "HCM-Q3-001"
    assert_audit_clean()


def test_placing_from_a_promise_when_no_unit_is_left_anywhere(api, chain, channel):
    scarf = ProductFactory(sku="KHAN-LUA")
    put_stock(chain["near"], scarf, 1)
    lines = [{"sku": "KHAN-LUA", "qty": 1}]
    quote = api.post("/api/v1/promises/", {"lines": lines, "destination": BEN_THANH}, format="json").json()
    # another order takes the last unit, then the till sells nothing more: the promise cannot be kept
    place(channel, {"KHAN-LUA": 1})
    r = api.post("/api/v1/orders/", _order_body(quote, lines), format="json", HTTP_IDEMPOTENCY_KEY="p-3")
    assert r.status_code == 409, r.content
    body = r.json()
    assert body["code"] == "insufficient_stock"
    assert body["details"]["fresh_promise"] is None
    assert body["details"]["fresh_promise_unavailable"]
    assert Order.objects.count() == 1
    assert_audit_clean()


def test_a_row_waiting_for_a_count_sells_nothing_online(api, chain, channel):
    wait_for_count(chain["near"], chain["shirt"], 1)  # the till sold one the ledger did not have
    quote = api.post("/api/v1/promises/", {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "destination": BEN_THANH},
                     format="json")
    assert quote.status_code == 201, quote.content
    stores = {s["store"] for o in quote.json()["options"] for s in o.get("shipments", [])}
    assert "HCM-Q1-001" not in stores and "HCM-Q3-001" in stores
    order = place(channel, {"AO-THUN-M": 1})
    assert order.fulfillments.get().store == chain["mid"]
    assert_audit_clean()


def test_placing_from_a_pickup_promise_whose_unit_is_gone(api, chain, channel):
    lines = [{"sku": "NON-LA", "qty": 1}]
    quote = api.post("/api/v1/promises/", {"lines": lines, "pickup_store": "HCM-Q1-001"}, format="json")
    assert quote.status_code == 201, quote.content
    quote = quote.json()
    store_event(chain["near"], chain["hat"], 1, cause="count:HCM-Q1-001:C-1", kind=EventKind.COUNT)
    body = {"lines": lines, "customer": CUSTOMER, "method": "pickup", "pickup_store": "HCM-Q1-001",
            "promise": quote["id"], "option": quote["options"][0]["id"]}
    r = api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="p-4")
    assert r.status_code == 409, r.content
    details = r.json()["details"]
    assert r.json()["code"] == "insufficient_stock"
    assert details["fresh_promise"] is None and details["fresh_promise_unavailable"]
    assert not Order.objects.exists()


# --- 8. the admin pages -----------------------------------------------------------------------------------------------


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_routing_page_shows_the_cause(staff, chain, channel):
    order = place(channel, {"AO-THUN-M": 1})
    ids = store_event(chain["near"], chain["shirt"], 3)
    services.reconcile_taken(ids=ids)
    page = staff.get(reverse("admin:orders_order_routing", args=[order.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    decision = RoutingDecision.objects.get(order=order, kind=RoutingKind.STORE_EVENT)
    assert f'id="decision-{decision.pk}" data-kind="store_event"' in html
    assert f"<code>{SALE}</code>" in html
    assert 'id="taken"' in html and "HCM-Q3-001" in html
    assert "A till sale at HCM-Q1-001 (receipt R-0042)" in html


def test_order_and_fulfillment_pages_render_after_a_store_event(staff, chain, channel):
    order = place(channel, {"AO-THUN-M": 3})
    source = order.fulfillments.get()
    services.reconcile_taken(ids=store_event(chain["near"], chain["shirt"], 1))
    new = Fulfillment.objects.exclude(pk=source.pk).get(order=order)
    for url in (
        reverse("admin:orders_order_change", args=[order.pk]),
        reverse("admin:orders_order_changelist"),
        reverse("admin:orders_order_board"),
        reverse("admin:orders_fulfillment_change", args=[source.pk]),
        reverse("admin:orders_fulfillment_change", args=[new.pk]),
        reverse("admin:orders_fulfillment_changelist"),
        reverse("admin:orders_fulfillment_queue"),
    ):
        assert staff.get(url).status_code == 200, url
    change = staff.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert SALE in change  # the decisions inline shows the cause too
    queue = staff.get(reverse("admin:orders_fulfillment_queue"), {"store": chain["near"].pk}).content.decode()
    assert order.number in queue and "AO-THUN-M × 3 (picked 2)" in queue


def test_routing_page_of_a_pickup_shows_the_offer(staff, chain, channel, offered):
    page = staff.get(reverse("admin:orders_order_routing", args=[offered["order"].pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="change-offers"' in html and f'data-offer="{offered["offer"].pk}"' in html
    assert f"<code>{SALE}</code>" in html and "move → HCM-Q3-001" in html


def test_routing_page_after_a_pickup_moved(api, staff, chain, channel, offered):
    order, offer = offered["order"], offered["offer"]
    assert accept(api, order, offer, "move", "k-1").status_code == 200
    new = Fulfillment.objects.get(order=order, status="assigned")
    page = staff.get(reverse("admin:orders_order_routing", args=[order.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    moved = RoutingDecision.objects.filter(order=order, kind=RoutingKind.STORE_EVENT, applied=True).get()
    block = html[html.index(f'id="decision-{moved.pk}"'):]
    block = block[:block.index("</div>")]
    assert f"<code>{SALE}</code>" in block and f"#{new.pk}</a>" in block and "HCM-Q3-001" in block
    assert "offer-accepted" in html


def test_store_queue_shows_rows_that_need_a_count(staff, chain, channel):
    wait_for_count(chain["near"], chain["shirt"], 2)
    page = staff.get(reverse("admin:orders_fulfillment_queue"), {"store": chain["near"].pk})
    assert page.status_code == 200
    html = page.content.decode()
    row = Stock.objects.get(store=chain["near"], product=chain["shirt"])
    assert 'id="to-count"' in html and f'data-stock="{row.pk}"' in html
    assert "<strong>2</strong>" in html
    # another store's page does not list it
    page = staff.get(reverse("admin:orders_fulfillment_queue"), {"store": chain["far"].pk})
    assert page.status_code == 200 and f'data-stock="{row.pk}"' not in page.content.decode()
    assert_audit_clean()
