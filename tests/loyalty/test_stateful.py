"""A Hypothesis state machine drives random histories of earn, hold, capture, void, redeem, expire (time passes),
reverse, refund, adjust and merge through the services, and checks after every step that every posting sums to
zero, no counter is negative, and every balance equals its entries and its lots."""

import itertools
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from loyalty import selectors, services
from loyalty.exceptions import InsufficientPoints, InvalidMerge, NothingToReverse, RedemptionNotHeld
from loyalty.models import Member, RedemptionHold
from o2o.models import OutboxEvent
from tests.loyalty.conftest import POS, T0, WEB

pytestmark = pytest.mark.django_db
_ids = itertools.count()

members = st.integers(min_value=0, max_value=2)


class LoyaltyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        run = next(_ids)
        self.members = [
            services.get_or_create_member(phone=f"090{run % 1000:03d}{i:04d}")[0] for i in range(3)
        ]
        self.now = T0
        self.earnings: list[int] = []
        self.calls: list[tuple] = []  # (key, member index, amount, online, posting id) of earlier earnings
        self.holds: list[int] = []
        self.redemptions: list[int] = []
        self.n = 0

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def key(self) -> str:
        self.n += 1
        return f"sm:{id(self)}:{self.n}"

    def live(self, index: int) -> Member:
        m = Member.objects.get(pk=self.members[index].pk)
        return Member.objects.get(pk=m.merged_into_id) if m.merged_into_id else m

    @rule(who=members, amount=st.integers(min_value=0, max_value=2_000_000), online=st.booleans())
    def earn(self, who, amount, online):
        vest_at = self.now + timedelta(days=14) if online else None
        key = self.key()
        posting = services.earn_points(member=self.members[who], amount_paid_vnd=amount, source=WEB if online else POS,
                                       idempotency_key=key, vest_at=vest_at, now=self.now)
        self.earnings.append(posting.pk)
        self.calls.append((key, who, amount, vest_at, posting.pk))

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def replay_earn(self, data):
        """A retried earning (the till or the website did not get the answer) returns the first and posts nothing."""
        key, who, amount, vest_at, first = data.draw(st.sampled_from(self.calls))
        events = OutboxEvent.objects.count()
        posting = services.earn_points(member=self.members[who], amount_paid_vnd=amount, source=POS,
                                       idempotency_key=key, vest_at=vest_at, now=self.now)
        assert posting.pk == first and OutboxEvent.objects.count() == events

    @rule(who=members, points=st.integers(min_value=1, max_value=150))
    def hold(self, who, points):
        available = self.live(who).available
        try:
            h = services.hold_redemption(member=self.members[who], points=points, source=WEB,
                                         idempotency_key=self.key(), now=self.now)
        except InsufficientPoints:
            assert points > available
        else:
            assert points <= available
            self.holds.append(h.pk)

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def capture(self, data):
        hold_id = data.draw(st.sampled_from(self.holds))
        try:
            posting = services.capture_redemption(hold=hold_id, reference="WEB-1", now=self.now)
        except RedemptionNotHeld:
            h = RedemptionHold.objects.get(pk=hold_id)
            assert h.status == RedemptionHold.Status.VOIDED or h.expires_at <= self.now
        else:
            self.redemptions.append(posting.pk)

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def void(self, data):
        hold_id = data.draw(st.sampled_from(self.holds))
        try:
            services.void_redemption(hold=hold_id, now=self.now)
        except RedemptionNotHeld:
            assert RedemptionHold.objects.get(pk=hold_id).status == RedemptionHold.Status.CAPTURED

    @rule(who=members, points=st.integers(min_value=1, max_value=150))
    def redeem(self, who, points):
        available = self.live(who).available
        try:
            posting = services.redeem_points(member=self.members[who], points=points, source=POS,
                                             idempotency_key=self.key(), now=self.now)
        except InsufficientPoints:
            assert points > available
        else:
            assert points <= available
            self.redemptions.append(posting.pk)

    @rule(days=st.sampled_from([0, 1, 15, 40, 200, 400]))
    def time_passes(self, days):
        self.now += timedelta(days=days)
        services.void_expired_holds(now=self.now)
        services.vest_pending(now=self.now)
        services.expire_lots(now=self.now)

    @precondition(lambda self: self.earnings)
    @rule(data=st.data(), fraction=st.sampled_from(["0.1", "0.5", "1"]))
    def reverse(self, data, fraction):
        earning = data.draw(st.sampled_from(self.earnings))
        try:
            services.reverse_earning(earning=earning, fraction=fraction, source=POS, idempotency_key=self.key(),
                                     now=self.now)
        except NothingToReverse:
            pass

    @precondition(lambda self: self.redemptions)
    @rule(data=st.data(), fraction=st.sampled_from(["0.3", "1"]))
    def refund(self, data, fraction):
        redemption = data.draw(st.sampled_from(self.redemptions))
        try:
            services.refund_redemption(redemption=redemption, fraction=fraction, source=POS, idempotency_key=self.key(),
                                       now=self.now)
        except NothingToReverse:
            pass

    @rule(who=members, points=st.integers(min_value=-50, max_value=50).filter(bool))
    def adjust(self, who, points):
        try:
            services.adjust_points(member=self.members[who], points=points, reason="stateful", staff="hypothesis",
                                   now=self.now)
        except InsufficientPoints:
            assert -points > self.live(who).available

    @rule(keep=members, merge=members)
    def merge(self, keep, merge):
        a, b = self.live(keep), self.live(merge)
        try:
            services.merge_members(keep=a, merge=b, actor="hypothesis", now=self.now)
        except InvalidMerge:
            assert a.pk == b.pk

    @invariant()
    def ledger_balances(self):
        assert selectors.unbalanced_postings() == []
        assert selectors.negative_counters() == 0
        assert selectors.ledger_differences() == []
        for m in Member.objects.filter(pk__in=[x.pk for x in self.members]):
            total = sum(e.amount for e in m.entries.all())
            assert m.balance == total

    @invariant()
    def last_points_changed_event_shows_the_balance(self):
        for m in Member.objects.filter(pk__in=[x.pk for x in self.members]):
            last = OutboxEvent.objects.filter(topic="points.changed", aggregate=f"member:{m.pk}").order_by("-id").first()
            if last is not None:
                assert last.payload["balance"] == {"available": m.available, "held": m.held, "pending": m.pending,
                                                   "shortfall": m.shortfall, "total": m.balance}


def test_random_histories_keep_the_ledger_balanced():
    run_state_machine_as_test(
        LoyaltyMachine,
        settings=settings(max_examples=30, stateful_step_count=20, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
