import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from loyalty import services
from loyalty.models import Member
from loyalty.services import PostingSource

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2025, 3, 10, 10, 0, tzinfo=HCM)  # a fixed "now" for time-driven tests
WEB = PostingSource(channel="website", reference="WEB-1", actor="channel:website")
POS = PostingSource(channel="pos", store="HCM-Q1-001", reference="R-1", actor="pos:HCM-Q1-001")

_keys = itertools.count(1)


def key(prefix: str = "k") -> str:
    return f"test:{prefix}:{next(_keys)}"


def fresh(member: Member) -> Member:
    return Member.objects.get(pk=member.pk)


def give(member: Member, points: int, *, now=None) -> None:
    """Credit exactly `points` available points by an earning at the base rate (10,000 ₫ a point)."""
    services.earn_points(member=member, amount_paid_vnd=points * 10_000, source=POS, idempotency_key=key("give"), now=now)


@pytest.fixture
def member(db):
    m, _ = services.get_or_create_member(phone="0901234567", name="Nguyễn Văn A", channel="website")
    return m


@pytest.fixture
def other(db):
    m, _ = services.get_or_create_member(phone="0912345678", name="Trần Thị B", channel="pos")
    return m


def assert_ledger_ok() -> None:
    from loyalty import selectors

    assert selectors.unbalanced_postings() == []
    assert selectors.ledger_differences() == []
    assert selectors.negative_counters() == 0
