from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from loyalty import selectors, services
from loyalty.exceptions import (
    IdempotencyKeyConflict,
    InsufficientPoints,
    InvalidAmount,
    InvalidMerge,
    InvalidPhone,
    NothingToReverse,
    RedemptionNotHeld,
    UnknownMember,
)
from loyalty.models import Entry, Lot, Member, Posting, PostingKind, RedemptionHold
from loyalty.phones import normalize_phone
from tests.loyalty.conftest import HCM, POS, T0, WEB, assert_ledger_ok, fresh, give, key

pytestmark = pytest.mark.django_db


# --- members ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["0901234567", "+84 90 123 4567", "84901234567", "090-123-4567", "(090) 123 4567"])
def test_phone_formats_are_one_member(raw):
    assert normalize_phone(raw) == "+84901234567"


@pytest.mark.parametrize("raw", ["", "12345", "090123456a", "0901234567890123", "+84 12", None, "abc"])
def test_invalid_phones_are_refused(raw):
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


def test_same_person_from_every_channel_is_one_member():
    a, created_a = services.get_or_create_member(phone="0901234567", channel="website")
    b, created_b = services.get_or_create_member(phone="+84 90 123 4567", name="Lan", email="lan@example.vn", channel="pos")
    c, _ = services.get_or_create_member(phone="84901234567", name="Other name")
    assert created_a and not created_b
    assert a.pk == b.pk == c.pk
    assert Member.objects.count() == 1
    m = fresh(a)
    assert (m.phone, m.name, m.email, m.created_channel) == ("+84901234567", "Lan", "lan@example.vn", "website")


def test_unknown_member_lookup():
    with pytest.raises(UnknownMember):
        selectors.member_by_phone("0987654321")


# --- earning ---------------------------------------------------------------------------------------------------------


def test_earn_one_point_per_10000_vnd_paid_rounded_down(member):
    posting = services.earn_points(member=member, amount_paid_vnd=259_000, source=POS, idempotency_key=key())
    assert posting.points == 25
    assert fresh(member).available == 25
    assert posting.entries.count() == 2
    assert sum(e.amount for e in posting.entries.all()) == 0
    assert (posting.channel, posting.store, posting.reference) == ("pos", "HCM-Q1-001", "R-1")
    assert_ledger_ok()


def test_tier_multiplier_applies(member):
    Member.objects.filter(pk=member.pk).update(tier="gold")
    posting = services.earn_points(member=member, amount_paid_vnd=1_000_000, source=POS, idempotency_key=key())
    assert posting.points == 150  # 100 × 1.5


def test_tiny_amount_records_spend_without_entries(member):
    posting = services.earn_points(member=member, amount_paid_vnd=9_999, source=POS, idempotency_key=key())
    assert posting.points == 0 and posting.entries.count() == 0 and posting.amount_vnd == 9_999
    assert_ledger_ok()


def test_earn_rejects_negative_amount(member):
    with pytest.raises(InvalidAmount):
        services.earn_points(member=member, amount_paid_vnd=-1, source=POS, idempotency_key=key())
    with pytest.raises(InvalidAmount):
        services.earn_points(member=member, amount_paid_vnd=1.5, source=POS, idempotency_key=key())


def test_replay_returns_first_posting_and_posts_nothing(member):
    k = key()
    first = services.earn_points(member=member, amount_paid_vnd=100_000, source=POS, idempotency_key=k)
    again = services.earn_points(member=member, amount_paid_vnd=100_000, source=POS, idempotency_key=k)
    assert again.pk == first.pk
    assert Posting.objects.count() == 1 and fresh(member).available == 10
    with pytest.raises(IdempotencyKeyConflict):
        services.redeem_points(member=member, points=1, source=POS, idempotency_key=k)


def test_online_points_are_pending_until_the_return_window_closes(member):
    services.earn_points(member=member, amount_paid_vnd=500_000, source=WEB, idempotency_key=key(), now=T0,
                         vest_at=T0 + timedelta(days=14))
    m = fresh(member)
    assert (m.available, m.pending) == (0, 50)
    assert services.vest_pending(now=T0 + timedelta(days=13)) == 0
    assert services.vest_pending(now=T0 + timedelta(days=14)) == 1
    m = fresh(member)
    assert (m.available, m.pending) == (50, 0)
    assert_ledger_ok()


# --- redeeming --------------------------------------------------------------------------------------------------------


def test_hold_capture(member):
    give(member, 100)
    hold = services.hold_redemption(member=member, points=30, source=WEB, idempotency_key=key())
    m = fresh(member)
    assert (m.available, m.held) == (70, 30)
    capture = services.capture_redemption(hold=hold, reference="WEB-1001")
    assert capture.kind == PostingKind.CAPTURE and capture.reference == "WEB-1001" and capture.amount_vnd == 3_000
    m = fresh(member)
    assert (m.available, m.held) == (70, 0)
    assert services.capture_redemption(hold=hold, reference="WEB-1001").pk == capture.pk  # retry: same answer
    with pytest.raises(RedemptionNotHeld):
        services.void_redemption(hold=hold)
    assert_ledger_ok()


def test_hold_void_puts_points_back_in_the_same_lots(member):
    give(member, 10, now=T0 - timedelta(days=60))
    give(member, 10, now=T0)
    old, new = Lot.objects.order_by("expires_at")
    hold = services.hold_redemption(member=member, points=15, source=WEB, idempotency_key=key(), now=T0)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.remaining, new.remaining) == (0, 5)  # oldest first
    services.void_redemption(hold=hold)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.remaining, new.remaining) == (10, 10)
    assert services.void_redemption(hold=hold).status == RedemptionHold.Status.VOIDED  # idempotent
    assert fresh(member).available == 20
    assert_ledger_ok()


def test_expired_hold_cannot_be_captured_and_is_voided_by_the_task(member):
    give(member, 50)
    hold = services.hold_redemption(member=member, points=50, source=WEB, idempotency_key=key(), now=T0,
                                    expires_at=T0 + timedelta(minutes=15))
    with pytest.raises(RedemptionNotHeld):
        services.capture_redemption(hold=hold, now=T0 + timedelta(minutes=16))
    assert services.void_expired_holds(now=T0 + timedelta(minutes=16)) == 1
    hold.refresh_from_db()
    assert hold.status == RedemptionHold.Status.VOIDED and hold.void_reason == "expired"
    assert fresh(member).available == 50
    assert_ledger_ok()


def test_redemption_above_balance_is_refused(member):
    give(member, 10)
    with pytest.raises(InsufficientPoints):
        services.hold_redemption(member=member, points=11, source=WEB, idempotency_key=key())
    with pytest.raises(InsufficientPoints):
        services.redeem_points(member=member, points=11, source=POS, idempotency_key=key())
    for bad in (0, -5):
        with pytest.raises(InvalidAmount):
            services.redeem_points(member=member, points=bad, source=POS, idempotency_key=key())
    assert fresh(member).available == 10


def test_till_redemption_is_captured_at_once(member):
    give(member, 40)
    posting = services.redeem_points(member=member, points=25, source=POS, idempotency_key=key())
    assert posting.kind == PostingKind.REDEEM and posting.amount_vnd == 2_500
    assert fresh(member).available == 15


def test_points_work_inside_the_callers_transaction(member):
    """A POS receipt applies stock and points in one transaction: if the sale fails, no points move."""
    give(member, 40)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.redeem_points(member=member, points=25, source=POS, idempotency_key=key())
        services.earn_points(member=member, amount_paid_vnd=100_000, source=POS, idempotency_key=key())
        raise RuntimeError("stock failed")
    assert fresh(member).available == 40
    assert Posting.objects.filter(kind=PostingKind.REDEEM).count() == 0


# --- expiry ---------------------------------------------------------------------------------------------------------


def test_lots_expire_by_month(member):
    assert services.lot_expiry(datetime(2025, 1, 15, 12, tzinfo=HCM)) == datetime(2026, 2, 1, tzinfo=HCM)
    assert services.lot_expiry(datetime(2025, 12, 31, 23, tzinfo=HCM)) == datetime(2027, 1, 1, tzinfo=HCM)
    give(member, 10, now=datetime(2025, 1, 15, tzinfo=HCM))
    give(member, 7, now=datetime(2025, 2, 15, tzinfo=HCM))
    assert services.expire_lots(now=datetime(2026, 1, 31, 23, tzinfo=HCM)) == 0
    assert services.expire_lots(now=datetime(2026, 2, 1, tzinfo=HCM)) == 1
    assert fresh(member).available == 7
    assert services.expire_lots(now=datetime(2026, 2, 2, tzinfo=HCM)) == 0  # nothing twice
    assert selectors.system_totals()["expired"] == 10
    assert_ledger_ok()


def test_expiring_soon_in_balance(member):
    give(member, 10, now=datetime(2025, 1, 15, tzinfo=HCM))
    give(member, 5, now=datetime(2025, 6, 15, tzinfo=HCM))
    b = selectors.balance(member=member, now=datetime(2026, 1, 10, tzinfo=HCM))
    assert (b.available, b.expiring_soon, b.available_value_vnd) == (15, 10, 1_500)


# --- reversals and refunds ------------------------------------------------------------------------------------------


def test_return_reverses_earning_in_proportion(member):
    earning = services.earn_points(member=member, amount_paid_vnd=1_000_000, source=POS, idempotency_key=key())
    reversal = services.reverse_earning(earning=earning, fraction="0.25", source=POS, idempotency_key=key())
    assert (reversal.points, reversal.amount_vnd) == (25, 250_000)
    assert fresh(member).available == 75
    services.reverse_earning(earning=earning, fraction=1, source=POS, idempotency_key=key())
    assert fresh(member).available == 0  # never more than was earned
    with pytest.raises(NothingToReverse):
        services.reverse_earning(earning=earning, points=1, source=POS, idempotency_key=key())
    assert_ledger_ok()


def test_reversal_of_pending_points_takes_them_from_pending(member):
    earning = services.earn_points(member=member, amount_paid_vnd=200_000, source=WEB, idempotency_key=key(), now=T0,
                                   vest_at=T0 + timedelta(days=14))
    services.reverse_earning(earning=earning, fraction="0.5", source=WEB, idempotency_key=key(), now=T0)
    m = fresh(member)
    assert (m.pending, m.available, m.shortfall) == (10, 0, 0)
    services.vest_pending(now=T0 + timedelta(days=15))
    assert fresh(member).available == 10
    assert_ledger_ok()


def test_reversal_of_spent_points_becomes_a_shortfall_settled_from_future_earnings(member):
    earning = services.earn_points(member=member, amount_paid_vnd=1_000_000, source=POS, idempotency_key=key())
    services.redeem_points(member=member, points=80, source=POS, idempotency_key=key())
    services.reverse_earning(earning=earning, fraction=1, source=POS, idempotency_key=key())
    m = fresh(member)
    assert (m.available, m.shortfall, m.balance) == (0, 80, -80)
    services.earn_points(member=member, amount_paid_vnd=500_000, source=POS, idempotency_key=key())
    m = fresh(member)
    assert (m.available, m.shortfall) == (0, 30)
    services.earn_points(member=member, amount_paid_vnd=500_000, source=POS, idempotency_key=key())
    m = fresh(member)
    assert (m.available, m.shortfall) == (20, 0)
    assert_ledger_ok()


def test_refund_gives_redeemed_points_back_as_a_new_lot(member):
    give(member, 100, now=T0 - timedelta(days=300))
    hold = services.hold_redemption(member=member, points=60, source=WEB, idempotency_key=key(), now=T0)
    services.capture_redemption(hold=hold, now=T0)
    refund = services.refund_redemption(redemption=hold, fraction="0.5", source=WEB, idempotency_key=key(), now=T0)
    assert refund.points == 30
    lot = Lot.objects.get(posting=refund)
    assert lot.expires_at == services.lot_expiry(T0)
    services.refund_redemption(redemption=hold, points=100, source=WEB, idempotency_key=key(), now=T0)
    assert fresh(member).available == 100  # at most what was redeemed
    with pytest.raises(NothingToReverse):
        services.refund_redemption(redemption=hold, points=1, source=WEB, idempotency_key=key())
    assert_ledger_ok()


# --- merge, adjustments, tiers ----------------------------------------------------------------------------------------


def test_merge_keeps_every_entry_and_moves_balances(member, other):
    give(member, 10)
    give(other, 25)
    services.hold_redemption(member=other, points=5, source=WEB, idempotency_key=key())
    entries_before = Entry.objects.count()
    services.merge_members(keep=member, merge=other, actor="staff")
    m, o = fresh(member), fresh(other)
    assert (m.available, m.held) == (30, 5)
    assert (o.available, o.held, o.merged_into_id) == (0, 0, m.pk)
    assert Entry.objects.count() > entries_before
    assert Entry.objects.filter(member=other).count() >= 3  # the merged member's history stays
    assert selectors.member_by_phone("0912345678").pk == member.pk
    assert services.get_or_create_member(phone="0912345678")[0].pk == member.pk
    assert {p.kind for p in selectors.history(member=member)} >= {"earn", "hold", "merge"}
    give(other, 1)  # a posting for the old member lands on the kept one
    assert fresh(member).available == 31
    with pytest.raises(InvalidMerge):
        services.merge_members(keep=member, merge=other, actor="staff")
    assert_ledger_ok()


def test_adjustment_needs_reason_and_never_goes_negative(member):
    posting = services.adjust_points(member=member, points=50, reason="Goodwill", staff="lan.nguyen")
    assert (posting.actor, posting.reason) == ("lan.nguyen", "Goodwill")
    services.adjust_points(member=member, points=-20, reason="Correction", staff="lan.nguyen")
    assert fresh(member).available == 30
    with pytest.raises(InsufficientPoints):
        services.adjust_points(member=member, points=-31, reason="Too much", staff="lan.nguyen")
    with pytest.raises(InvalidAmount):
        services.adjust_points(member=member, points=0, reason="x", staff="s")
    assert selectors.system_totals()["adjustments"] == -30
    assert_ledger_ok()


def test_tiers_from_rolling_spend(member, settings):
    services.earn_points(member=member, amount_paid_vnd=6_000_000, source=POS, idempotency_key=key(),
                         now=T0 - timedelta(days=100))
    services.recompute_tiers(now=T0)
    m = fresh(member)
    assert (m.tier, m.spend_12m_vnd) == ("silver", 6_000_000)
    progress = selectors.tier_progress(member=m)
    assert (progress["next_tier"], progress["spend_to_next_tier_vnd"]) == ("gold", 14_000_000)
    services.recompute_tiers(now=T0 + timedelta(days=300))  # the spend left the window
    assert fresh(member).tier == "member"
    settings.LOYALTY_TIERS = [{"code": "member", "name": "Member", "min_spend_vnd": 0, "multiplier": "1"},
                              {"code": "vip", "name": "VIP", "min_spend_vnd": 1_000_000, "multiplier": "2"}]
    services.recompute_tiers(now=T0)
    assert fresh(member).tier == "vip"


# --- audit ----------------------------------------------------------------------------------------------------------


def test_audit_command_passes_and_catches_a_tampered_balance(member):
    give(member, 10)
    out = StringIO()
    call_command("loyalty_audit", stdout=out)
    assert "OK" in out.getvalue()
    Member.objects.filter(pk=member.pk).update(available=11)
    with pytest.raises(CommandError):
        call_command("loyalty_audit", stdout=StringIO())


def test_ledger_rows_cannot_be_updated_or_deleted(member):
    give(member, 10)
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's")
    for statement in ("UPDATE loyalty_entry SET amount = amount + 1", "DELETE FROM loyalty_posting"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
