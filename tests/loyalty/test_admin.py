import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF, make_staff
from loyalty import services
from loyalty.models import Member, Posting, PostingKind
from tests.factories import StoreFactory
from tests.loyalty.conftest import POS, assert_ledger_ok, fresh, give, key

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-passphrase-42"


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
    form_key = _form_key(admin_client, url)
    response = admin_client.post(url, {"points": 50, "reason": "Goodwill: late delivery", "idempotency_key": form_key})
    assert response.status_code == 302
    posting = Posting.objects.get(kind=PostingKind.ADJUST)
    assert (posting.points, posting.reason, posting.actor) == (50, "Goodwill: late delivery", admin_user.username)
    refused = admin_client.post(url, {"points": -51, "reason": "too much", "idempotency_key": _form_key(admin_client, url)})
    assert refused.status_code == 200 and "enough points" in refused.text
    assert fresh(member).available == 50
    assert_ledger_ok()


def _form_key(client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    return page.context["form"]["idempotency_key"].value()


def test_a_resubmitted_adjustment_posts_once(admin_client, member):
    url = reverse("admin:loyalty_member_adjust", args=[member.pk])
    data = {"points": 30, "reason": "Goodwill", "idempotency_key": _form_key(admin_client, url)}
    assert admin_client.post(url, data).status_code == 302
    assert admin_client.post(url, data).status_code == 302  # the browser's resubmit
    assert Posting.objects.filter(kind=PostingKind.ADJUST).count() == 1 and fresh(member).available == 30
    assert _form_key(admin_client, url) != data["idempotency_key"]  # a new form is a new adjustment
    assert_ledger_ok()


def test_head_office_finds_a_member_by_phone_and_adjusts_with_the_permission(client, member, other):
    hq = make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    assert hq.has_perm("loyalty.adjust_points")
    client.force_login(hq)
    for typed in ("0901 234 567", "+84-90-123-4567", "84901234567"):
        found = client.get(reverse("admin:loyalty_member_changelist"), {"q": typed}).context["cl"].result_list
        assert [m.pk for m in found] == [member.pk], typed
    page = client.get(reverse("admin:loyalty_member_change", args=[member.pk])).text
    assert "Adjust points" in page
    url = reverse("admin:loyalty_member_adjust", args=[member.pk])
    response = client.post(url, {"points": 12, "reason": "Lost receipt", "idempotency_key": _form_key(client, url)})
    assert response.status_code == 302
    posting = Posting.objects.get(kind=PostingKind.ADJUST)
    assert (posting.member_id, posting.points, posting.actor, posting.reason) == (member.pk, 12, "hoa.hq", "Lost receipt")
    assert_ledger_ok()


def test_changing_contact_fields_does_not_grant_adjusting_points(client, member, other):
    clerk = get_user_model().objects.create_user(username="care.desk", password=PASSWORD, is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(
        content_type__app_label="loyalty", codename__in=["view_member", "change_member"]))
    client.force_login(clerk)
    give(member, 5)
    assert client.get(reverse("admin:loyalty_member_change", args=[member.pk])).status_code == 200
    assert "Adjust points" not in client.get(reverse("admin:loyalty_member_change", args=[member.pk])).text
    url = reverse("admin:loyalty_member_adjust", args=[member.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"points": 100, "reason": "x", "idempotency_key": "k-1"}).status_code == 403
    listing = client.get(reverse("admin:loyalty_member_changelist"))
    assert "merge_into_oldest" not in listing.text
    client.post(reverse("admin:loyalty_member_changelist"),
                {"action": "merge_into_oldest", "_selected_action": [member.pk, other.pk]})
    assert fresh(other).merged_into_id is None
    assert not Posting.objects.filter(kind=PostingKind.ADJUST).exists() and fresh(member).available == 5


def test_store_staff_cannot_open_loyalty_members(client, member):
    store = StoreFactory()
    for role in (STORE_STAFF, REGIONAL_MANAGER):
        user = make_staff(username=f"u-{role}".replace(" ", "-"), password=PASSWORD, role=role, stores=[store])
        client.force_login(user)
        assert client.get(reverse("admin:loyalty_member_changelist")).status_code == 403
        assert client.get(reverse("admin:loyalty_member_adjust", args=[member.pk])).status_code == 403


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
