from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty import services
from loyalty.models import Member, Posting, RedemptionHold
from o2o.models import SalesChannel, SalesChannelKey
from tests.loyalty.conftest import POS, WEB, fresh, give, key

pytestmark = pytest.mark.django_db
BASE = "/api/v1/loyalty"


def hold(api, phone="0901234567", points=10, idem=None, **extra):
    return api.post(f"{BASE}/redemptions/", {"phone": phone, "points": points, **extra}, format="json",
                    HTTP_IDEMPOTENCY_KEY=idem or key("http"))


def test_requires_a_channel_key(anon_api, member):
    response = anon_api.get(f"{BASE}/members/0901234567/")
    assert response.status_code in (401, 403)
    assert "code" in response.json()


def test_sign_up_and_lookup_in_any_format(api):
    response = api.post(f"{BASE}/members/", {"phone": "+84 90 123 4567", "name": "Lan"}, format="json")
    assert response.status_code == 201
    assert response.json()["phone"] == "+84901234567"
    again = api.post(f"{BASE}/members/", {"phone": "0901234567"}, format="json")
    assert again.status_code == 200 and again.json()["name"] == "Lan"
    for phone in ("0901234567", "84901234567", "%2B84901234567"):
        assert api.get(f"{BASE}/members/{phone}/").json()["phone"] == "+84901234567"
    found = api.get(f"{BASE}/members/", {"phone": "090 123 4567"})
    assert found.status_code == 200
    body = found.json()
    assert body["tier"]["code"] == "member" and body["tier"]["next_tier"] == "silver"
    assert body["balance"]["available"] == 0
    assert Member.objects.get().created_channel == "website"


def test_bad_input(api, member):
    give(member, 10)
    response = api.get(f"{BASE}/members/", {"phone": "12ab"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_phone")
    response = api.get(f"{BASE}/members/0987654321/")
    assert (response.status_code, response.json()["code"]) == (404, "unknown_member")
    response = api.post(f"{BASE}/members/", {"phone": "0901234567", "email": "not-an-email"}, format="json")
    assert response.status_code == 400
    response = hold(api, points=11)
    assert (response.status_code, response.json()["code"]) == (409, "insufficient_points")
    assert response.json()["details"] == {"available": 10, "requested": 11}
    response = hold(api, points=-5)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_amount")
    response = hold(api, points="many")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    response = hold(api, phone="0987654321")
    assert (response.status_code, response.json()["code"]) == (404, "unknown_member")
    response = hold(api, phone="1")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_phone")
    response = api.post(f"{BASE}/redemptions/", {"phone": "0901234567", "points": 1}, format="json")
    assert response.status_code == 400  # no Idempotency-Key
    assert fresh(member).available == 10


def test_balance_shows_available_pending_and_expiring(api, member):
    earned = timezone.now() - timedelta(days=380)
    give(member, 10, now=earned)
    services.earn_points(member=member, amount_paid_vnd=200_000, source=WEB, idempotency_key=key(),
                         vest_at=timezone.now() + timedelta(days=14))
    body = api.get(f"{BASE}/members/0901234567/balance/").json()
    assert body["available"] == 10 and body["pending"] == 20 and body["available_value_vnd"] == 1_000
    assert body["point_value_vnd"] == 100
    # A lot earned 380 days ago expires at the start of this month or the next: usually within 30 days.
    expected = 10 if services.lot_expiry(earned) <= timezone.now() + timedelta(days=30) else 0
    assert body["expiring_soon"] == expected
    assert body["expiring_soon_until"]


def test_history_is_one_list_across_channels_and_paginated(api, member):
    services.earn_points(member=member, amount_paid_vnd=500_000, source=WEB, idempotency_key=key())
    services.earn_points(member=member, amount_paid_vnd=300_000, source=POS, idempotency_key=key())
    services.redeem_points(member=member, points=5, source=POS, idempotency_key=key())
    page = api.get(f"{BASE}/members/0901234567/history/", {"limit": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    first = page["results"][0]
    assert (first["kind"], first["change_available"], first["channel"], first["store"]) == ("redeem", -5, "pos", "HCM-Q1-001")
    rest = api.get(f"{BASE}/members/0901234567/history/", {"limit": 2, "offset": 2}).json()
    assert rest["results"][0]["channel"] == "website" and rest["results"][0]["change_available"] == 50


def test_hold_capture_over_http(api, member):
    give(member, 100)
    idem = key("http")
    response = hold(api, points=40, idem=idem, reference="CART-9")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["points"], body["value_vnd"], body["reference"]) == ("held", 40, 4_000, "CART-9")
    replay = hold(api, points=40, idem=idem, reference="CART-9")
    assert replay.status_code == 201 and replay.json()["id"] == body["id"]
    assert RedemptionHold.objects.count() == 1
    other_body = hold(api, points=41, idem=idem)
    assert (other_body.status_code, other_body.json()["code"]) == (422, "idempotency_key_reused")
    assert fresh(member).available == 60
    assert api.get(f"{BASE}/redemptions/{body['id']}/").json()["status"] == "held"
    captured = api.post(f"{BASE}/redemptions/{body['id']}/capture/", {"reference": "WEB-1001"}, format="json")
    assert captured.status_code == 200 and captured.json()["status"] == "captured"
    again = api.post(f"{BASE}/redemptions/{body['id']}/capture/", {"reference": "WEB-1001"}, format="json")
    assert again.status_code == 200
    assert Posting.objects.filter(kind="capture").count() == 1
    void = api.post(f"{BASE}/redemptions/{body['id']}/void/", {}, format="json")
    assert (void.status_code, void.json()["code"]) == (409, "redemption_not_held")
    m = fresh(member)
    assert (m.available, m.held) == (60, 0)


def test_void_over_http_and_expired_capture(api, member):
    give(member, 100)
    body = hold(api, points=30).json()
    voided = api.post(f"{BASE}/redemptions/{body['id']}/void/", {}, format="json")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert api.post(f"{BASE}/redemptions/{body['id']}/void/", {}, format="json").status_code == 200
    assert fresh(member).available == 100
    short = hold(api, points=30, ttl_seconds=1).json()
    RedemptionHold.objects.filter(pk=short["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api.post(f"{BASE}/redemptions/{short['id']}/capture/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "redemption_not_held")


def test_a_channel_cannot_touch_another_channels_hold(api, member):
    give(member, 100)
    body = hold(api, points=30).json()
    app = SalesChannel.objects.create(code="app", name="App")
    _, raw = SalesChannelKey.objects.create_key(name="app", channel=app)
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.post(f"{BASE}/redemptions/{body['id']}/capture/", {}, format="json").status_code == 404
    assert client.get(f"{BASE}/redemptions/{body['id']}/").json()["code"] == "redemption_not_found"
    assert api.get(f"{BASE}/redemptions/999999/").status_code == 404
