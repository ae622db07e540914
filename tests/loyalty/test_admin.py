import pytest
from django.urls import reverse

from loyalty import services
from loyalty.models import Member, Posting, PostingKind
from tests.loyalty.conftest import POS, assert_ledger_ok, fresh, give, key

pytestmark = pytest.mark.django_db


def test_member_page_shows_balance_tier_lots_and_ledger(admin_client, member):
    give(member, 120)
    services.hold_redemption(member=member, points=20, source=POS, idempotency_key=key())
    listing = admin_client.get(reverse("admin:loyalty_member_changelist"), {"q": "+84 90 123 4567"})
    assert listing.status_code == 200 and "+84901234567" in listing.text
    page = admin_client.get(reverse("admin:loyalty_member_change", args=[member.pk]))
    assert page.status_code == 200
    text = page.text.lower()
    assert "available 100" in text and "held 20" in text and "member (×1)" in text
    assert "ledger entries" in text and "lots with points left" in text and "adjust points" in text
    posting = Posting.objects.first()
    assert admin_client.get(reverse("admin:loyalty_posting_change", args=[posting.pk])).status_code == 200
    assert admin_client.get(reverse("admin:loyalty_posting_changelist")).status_code == 200


def test_adjustment_form_posts_with_reason_and_staff_name(admin_client, admin_user, member):
    url = reverse("admin:loyalty_member_adjust", args=[member.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"points": 50, "reason": "Goodwill: late delivery"})
    assert response.status_code == 302
    posting = Posting.objects.get(kind=PostingKind.ADJUST)
    assert (posting.points, posting.reason, posting.actor) == (50, "Goodwill: late delivery", admin_user.username)
    refused = admin_client.post(url, {"points": -51, "reason": "too much"})
    assert refused.status_code == 200 and "enough points" in refused.text
    assert fresh(member).available == 50
    assert_ledger_ok()


def test_saving_contact_fields_never_touches_the_counters(admin_client, member):
    give(member, 10)
    url = reverse("admin:loyalty_member_change", args=[member.pk])
    stale = Member.objects.get(pk=member.pk)
    give(member, 5)  # moves the counter after the form was read
    response = admin_client.post(url, {"name": "Lan", "email": stale.email, **_empty_inlines()})
    assert response.status_code == 302, response.content[:2000]
    m = fresh(member)
    assert (m.name, m.available) == ("Lan", 15)


def _empty_inlines() -> dict:
    data = {}
    for prefix in ("lots", "holds", "entries"):
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 0})
    return data


def test_merge_action(admin_client, member, other):
    give(other, 7)
    response = admin_client.post(
        reverse("admin:loyalty_member_changelist"),
        {"action": "merge_into_oldest", "_selected_action": [member.pk, other.pk]},
    )
    assert response.status_code == 302
    assert fresh(other).merged_into_id == member.pk and fresh(member).available == 7
