"""Points as a tender in the online order flow, and earning when the order completes (PostgreSQL, through the API the
website uses and the services the stores' screens call)."""

import math
from datetime import timedelta
from fractions import Fraction
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from inventory.models import Reservation
from inventory.selectors import reservation_differences, stock_ledger_differences
from loyalty import selectors as loyalty_selectors
from loyalty import services as loyalty
from loyalty.models import Member, Posting, PostingKind, RedemptionHold
from o2o.models import OutboxEvent
from orders import services
from orders.models import Order, OrderStatus
from tests.conftest import put_stock
from tests.orders.conftest import BEN_THANH, CUSTOMER
from tests.pos.conftest import receipt, store_client, sync

pytestmark = pytest.mark.django_db

PHONE = "+84901234567"  # CUSTOMER's phone in E.164
OTHER = "0912345678"
SHIRT = 199_000


def _member(phone=PHONE, points=0) -> Member:
    m, _ = loyalty.get_or_create_member(phone=phone, name="Khách")
    if points:
        loyalty.adjust_points(member=m, points=points, reason="welcome", staff="test")
    return Member.objects.get(pk=m.pk)


def _hold(api, points, phone=PHONE, key="h-1", ttl=None):
    body = {"phone": phone, "points": points, **({"ttl_seconds": ttl} if ttl else {})}
    r = api.post("/api/v1/loyalty/redemptions/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert r.status_code == 201, r.content
    return r.json()["id"]


def _order_body(loyalty_block, lines=None, method="delivery", **extra):
    body = {"lines": lines or [{"sku": "AO-THUN-M", "qty": 1}], "customer": CUSTOMER, "method": method, **extra}
    if method == "delivery" and "destination" not in body:
        body["destination"] = BEN_THANH
    if loyalty_block is not None:
        body["loyalty"] = loyalty_block
    return body


def _place(api, body, key="o-1"):
    return api.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def _deliver(order: Order) -> None:
    for f in order.fulfillments.order_by("pk"):
        for step in ("picking", "packed", "handed_to_courier", "delivered"):
            services.transition_fulfillment(fulfillment=f, to=step, actor="staff")


def _audits_clean() -> None:
    assert loyalty_selectors.unbalanced_postings() == []
    assert loyalty_selectors.ledger_differences() == []
    assert loyalty_selectors.negative_counters() == 0
    assert stock_ledger_differences() == []
    assert reservation_differences() == []
    call_command("loyalty_audit", stdout=StringIO())  # exits non-zero (SystemExit) on any difference
    call_command("inventory_audit", stdout=StringIO())


def _points_events(member: Member) -> list[dict]:
    return list(
        OutboxEvent.objects.filter(topic="points.changed", aggregate=f"member:{member.pk}")
        .order_by("id").values_list("payload", flat=True)
    )


def test_order_paid_partly_with_points(api, chain):
    member = _member(points=1_000)
    hold_id = _hold(api, 500)  # 500 points pay 50,000 ₫ of 2 × 199,000 ₫
    r = _place(api, _order_body({"hold_id": hold_id}, lines=[{"sku": "AO-THUN-M", "qty": 2}]))
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["total_vnd"], body["points_tender_vnd"], body["points_redeemed"]) == (2 * SHIRT, 50_000, 500)
    order = Order.objects.get(number=body["number"])
    capture = Posting.objects.get(kind=PostingKind.CAPTURE)
    assert (order.member_id, order.points_redeemed, order.points_tender_vnd) == (member.pk, 500, 50_000)
    assert order.redeem_posting_id == capture.pk and capture.reference == order.number
    assert RedemptionHold.objects.get(pk=hold_id).status == RedemptionHold.Status.CAPTURED
    member.refresh_from_db()
    assert (member.available, member.held) == (500, 0)
    balance = api.get(f"/api/v1/loyalty/members/{PHONE.replace('+', '%2B')}/balance/").json()
    assert balance["available"] == 500 and balance["held"] == 0
    events = _points_events(member)
    assert [e["kind"] for e in events] == ["adjust", "hold", "capture"]
    assert events[-1]["balance"] == {"available": 500, "held": 0, "pending": 0, "shortfall": 0, "total": 500}
    assert events[-1]["reference"] == order.number
    _audits_clean()


def test_replayed_placement_captures_nothing_twice(api, chain):
    _member(points=1_000)
    hold_id = _hold(api, 300)
    body = _order_body({"hold_id": hold_id})
    first = _place(api, body, key="same")
    again = _place(api, body, key="same")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert Order.objects.count() == 1
    assert Posting.objects.filter(kind=PostingKind.CAPTURE).count() == 1
    assert Member.objects.get(phone=PHONE).available == 700
    # The same hold for another order (another key) is refused: those points already paid for the first one.
    other = _place(api, body, key="other")
    assert other.status_code == 409 and other.json()["code"] == "redemption_not_held"
    assert Order.objects.count() == 1 and Posting.objects.filter(kind=PostingKind.CAPTURE).count() == 1
    _audits_clean()


def test_hold_of_another_member_is_refused_and_nothing_is_written(api, chain):
    _member(points=100)
    _member(OTHER, points=1_000)
    hold_id = _hold(api, 500, phone=OTHER)
    r = _place(api, _order_body({"hold_id": hold_id}))
    assert r.status_code == 422 and r.json()["code"] == "redemption_member_mismatch"
    # Naming the other member explicitly makes it theirs to spend (e.g. a family account).
    assert Order.objects.count() == 0 and Reservation.objects.count() == 0
    assert RedemptionHold.objects.get(pk=hold_id).status == RedemptionHold.Status.HELD
    ok = _place(api, _order_body({"hold_id": hold_id, "phone": OTHER}), key="o-2")
    assert ok.status_code == 201, ok.content
    assert Order.objects.get().member.phone == "+84912345678"
    _audits_clean()


@pytest.mark.parametrize("how", ["expired", "voided", "unknown", "too_big"])
def test_unusable_holds_are_refused(api, chain, how):
    member = _member(points=5_000)
    now = timezone.now()
    if how == "expired":
        hold_id = loyalty.hold_redemption(
            member=member, points=100, source=loyalty.PostingSource(channel="website"), idempotency_key="x",
            now=now - timedelta(hours=1), expires_at=now - timedelta(minutes=1),
        ).pk
    else:
        hold_id = _hold(api, 2_000 if how == "too_big" else 100)  # 2,000 points = 200,000 ₫ > 199,000 ₫
    if how == "voided":
        assert api.post(f"/api/v1/loyalty/redemptions/{hold_id}/void/", {}, format="json").status_code == 200
    if how == "unknown":
        hold_id += 1000
    r = _place(api, _order_body({"hold_id": hold_id}))
    expected = {"expired": (409, "redemption_not_held"), "voided": (409, "redemption_not_held"),
                "unknown": (404, "redemption_not_found"), "too_big": (422, "points_exceed_total")}[how]
    assert (r.status_code, r.json()["code"]) == expected, r.content
    assert Order.objects.count() == 0 and Reservation.objects.count() == 0
    assert not Posting.objects.filter(kind=PostingKind.CAPTURE).exists()
    _audits_clean()


def test_cancel_gives_the_points_back_once(api, chain):
    member = _member(points=1_000)
    number = _place(api, _order_body({"hold_id": _hold(api, 400)})).json()["number"]
    assert Member.objects.get(pk=member.pk).available == 600
    for _ in range(2):
        r = api.post(f"/api/v1/orders/{number}/cancel/", {"reason": "changed my mind"}, format="json")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
    refund = Posting.objects.get(kind=PostingKind.REFUND)
    assert refund.points == 400 and refund.reference == number
    assert Member.objects.get(pk=member.pk).available == 1_000
    assert _points_events(member)[-1]["balance"]["available"] == 1_000
    _audits_clean()


def test_completion_earns_pending_points_that_vest_after_the_return_window(api, chain, settings):
    settings.LOYALTY_ONLINE_PENDING_DAYS = 14
    member = _member(points=1_000)
    body = _order_body({"hold_id": _hold(api, 500)}, lines=[{"sku": "AO-THUN-M", "qty": 2}])
    order = Order.objects.get(number=_place(api, body).json()["number"])
    _deliver(order)
    order.refresh_from_db()
    assert order.status == OrderStatus.COMPLETED
    earn = Posting.objects.get(kind=PostingKind.EARN)
    money = 2 * SHIRT - 50_000
    assert order.earn_posting_id == earn.pk and earn.idempotency_key == f"order-earn:{order.number}"
    assert (earn.amount_vnd, earn.points) == (money, money // 10_000)
    member.refresh_from_db()
    assert (member.available, member.pending) == (500, money // 10_000)
    assert loyalty.vest_pending(now=timezone.now() + timedelta(days=13)) == 0
    assert loyalty.vest_pending(now=timezone.now() + timedelta(days=15)) == 1
    member.refresh_from_db()
    assert (member.available, member.pending) == (500 + money // 10_000, 0)
    assert [e["kind"] for e in _points_events(member)][-2:] == ["earn", "vest"]
    _audits_clean()


def test_short_picked_lines_do_not_earn_and_their_points_come_back(api, chain):
    member = _member(points=1_000)
    # Pickup at Q3: 1 shirt (199,000 ₫) and 2 bags (2 × 99,000 ₫); 600 points pay 60,000 ₫.
    body = _order_body({"hold_id": _hold(api, 600)}, method="pickup", pickup_store="HCM-Q3-001",
                       lines=[{"sku": "AO-THUN-M", "qty": 1}, {"sku": "TUI-VAI", "qty": 2}])
    order = Order.objects.get(number=_place(api, body).json()["number"])
    f = order.fulfillments.get()
    services.transition_fulfillment(fulfillment=f, to="picking", actor="staff")
    services.report_short_pick(fulfillment=f, found={chain["bag"].pk: 0}, actor="staff")  # no bags, pickup stays
    for step in ("packed", "ready_for_pickup", "collected"):
        services.transition_fulfillment(fulfillment=order.fulfillments.get(status__in=["picking", "packed",
                                         "ready_for_pickup"]), to=step, actor="staff")
    order.refresh_from_db()
    assert order.status == OrderStatus.COMPLETED
    subtotal = SHIRT + 2 * 99_000
    share = Fraction(SHIRT, subtotal)  # only the shirt was handed over
    earn = Posting.objects.get(pk=order.earn_posting_id)
    assert earn.amount_vnd == math.floor((subtotal - 60_000) * SHIRT / subtotal)
    refund = Posting.objects.get(kind=PostingKind.REFUND)
    assert refund.points == math.ceil(600 * (1 - share))  # the bags' share of the points, rounded up
    member.refresh_from_db()
    assert member.available == 1_000 - 600 + refund.points and member.pending == earn.points
    _audits_clean()


def test_member_without_points_earns_and_one_member_across_web_and_till(api, chain):
    # Web order naming the member (any phone format), no points spent.
    r = _place(api, _order_body({"phone": "84 90 123 4567"}))
    assert r.status_code == 201 and r.json()["points_tender_vnd"] == 0
    order = Order.objects.get(number=r.json()["number"])
    member = order.member
    assert member.phone == PHONE and order.points_redeemed == 0 and order.redeem_posting_id is None
    _deliver(order)
    # Till sale at a store with the same phone in another format.
    store = chain["near"]
    put_stock(store, chain["hat"], 2)
    till = store_client(store)
    out = sync(till, [receipt([("NON-LA", 1, 150_000)], phone="0901 234 567")]).json()["results"][0]
    assert out["status"] == "applied", out
    assert Member.objects.count() == 1
    earns = Posting.objects.filter(member=member, kind=PostingKind.EARN).order_by("id")
    assert [(p.channel, p.amount_vnd) for p in earns] == [("website", SHIRT), ("pos", 150_000)]
    history = api.get(f"/api/v1/loyalty/members/{PHONE.replace('+', '%2B')}/history/").json()
    assert {h["channel"] for h in history["results"]} == {"website", "pos"}
    member.refresh_from_db()
    assert member.pending == SHIRT // 10_000 and member.available == 15
    _audits_clean()


def test_failed_delivery_gives_the_points_back(api, chain):
    member = _member(points=1_000)
    order = Order.objects.get(number=_place(api, _order_body({"hold_id": _hold(api, 250)})).json()["number"])
    f = order.fulfillments.get()
    for step in ("picking", "packed", "handed_to_courier", "delivery_failed"):
        services.transition_fulfillment(fulfillment=f, to=step, actor="staff")
    order.refresh_from_db()
    assert order.status == OrderStatus.FAILED and order.earn_posting_id is None
    assert Member.objects.get(pk=member.pk).available == 1_000
    _audits_clean()
