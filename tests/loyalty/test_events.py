"""Every posting that changes a member's balance writes one "points.changed" outbox event in its own transaction,
with the new balance; postings that change nothing (a replay, an earning too small for a point) write none."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import services
from loyalty.models import Member
from o2o.models import OutboxEvent
from tests.factories import SalesChannelFactory
from tests.loyalty.conftest import POS, T0, WEB, assert_ledger_ok, give, key

pytestmark = pytest.mark.django_db


def _events(member: Member) -> list[dict]:
    return list(OutboxEvent.objects.filter(topic="points.changed", aggregate=f"member:{member.pk}")
                .order_by("id").values_list("payload", flat=True))


def _balance(member: Member) -> dict:
    m = Member.objects.get(pk=member.pk)
    return {"available": m.available, "held": m.held, "pending": m.pending, "shortfall": m.shortfall,
            "total": m.balance}


def test_every_balance_change_emits_the_new_balance(member, other):
    website = SalesChannelFactory()  # LOYALTY_EVENTS_CHANNEL: the website's webhook receives them
    steps = [
        lambda: services.earn_points(member=member, amount_paid_vnd=1_000_000, source=POS, idempotency_key=key(),
                                     now=T0),
        lambda: services.earn_points(member=member, amount_paid_vnd=500_000, source=WEB, idempotency_key=key(),
                                     vest_at=T0 + timedelta(days=14), now=T0),
        lambda: services.vest_pending(now=T0 + timedelta(days=15)),
        lambda: services.redeem_points(member=member, points=10, source=POS, idempotency_key=key(), now=T0),
        lambda: services.capture_redemption(
            hold=services.hold_redemption(member=member, points=20, source=WEB, idempotency_key=key(), now=T0),
            reference="WEB-9", now=T0),
        lambda: services.void_redemption(
            hold=services.hold_redemption(member=member, points=5, source=WEB, idempotency_key=key(), now=T0), now=T0),
        lambda: services.adjust_points(member=member, points=-3, reason="typo", staff="lan", now=T0),
        lambda: services.refund_redemption(
            redemption=services.redeem_points(member=member, points=7, source=POS, idempotency_key=key(), now=T0),
            fraction=1, source=POS, idempotency_key=key(), now=T0),
        lambda: services.reverse_earning(
            earning=services.earn_points(member=member, amount_paid_vnd=300_000, source=POS,
                                         idempotency_key=key(), now=T0),
            fraction=1, source=POS, idempotency_key=key(), now=T0),
        lambda: services.expire_lots(now=T0 + timedelta(days=800)),
    ]
    for step in steps:
        before = len(_events(member))
        step()
        after = _events(member)
        assert len(after) > before
        assert after[-1]["balance"] == _balance(member)
        assert after[-1]["member"] == member.phone
    kinds = [e["kind"] for e in _events(member)]
    assert kinds == ["earn", "earn", "vest", "redeem", "hold", "capture", "hold", "void", "adjust", "redeem", "refund",
                     "earn", "reverse", "expire"]
    assert set(OutboxEvent.objects.filter(topic="points.changed").values_list("channel", flat=True)) == {website.pk}
    assert_ledger_ok()


def test_merge_emits_for_both_members_and_replays_emit_nothing(member, other):
    give(member, 30)
    give(other, 12)
    earn_key = key()
    services.earn_points(member=member, amount_paid_vnd=100_000, source=POS, idempotency_key=earn_key)
    count = OutboxEvent.objects.count()
    services.earn_points(member=member, amount_paid_vnd=100_000, source=POS, idempotency_key=earn_key)  # replay
    services.earn_points(member=member, amount_paid_vnd=5_000, source=POS, idempotency_key=key())  # 0 points
    assert OutboxEvent.objects.count() == count
    services.merge_members(keep=member, merge=other, actor="staff")
    assert _events(other)[-1]["balance"]["total"] == 0 and _events(other)[-1]["kind"] == "merge"
    assert _events(member)[-1]["balance"] == _balance(member) and _balance(member)["available"] == 52
    assert_ledger_ok()


def test_the_event_costs_no_extra_statement(member, settings):
    settings.LOYALTY_PREPARED_STATEMENTS = False  # Django's cursor, so that every statement is counted here
    give(member, 100)
    with CaptureQueriesContext(connection) as earn:
        services.earn_points(member=member, amount_paid_vnd=200_000, source=POS, idempotency_key=key())
    with CaptureQueriesContext(connection) as redeem:
        services.redeem_points(member=member, points=5, source=POS, idempotency_key=key())
    # Inside the test's transaction (a savepoint each): lock, posting + entries + counters + lot + event, release.
    assert [q["sql"].split()[0] for q in earn.captured_queries] == ["SAVEPOINT", "SELECT", "WITH", "RELEASE"]
    # Redeem reads which lots to spend (oldest first) in the lock's statement.
    assert [q["sql"].split()[0] for q in redeem.captured_queries] == ["SAVEPOINT", "SELECT", "WITH", "RELEASE"]
    assert "points.changed" in earn.captured_queries[2]["sql"] and len(_events(member)) == 3
