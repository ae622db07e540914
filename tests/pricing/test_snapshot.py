"""The offline tills' policy snapshot (GET /api/v1/pos/pricing/snapshot/, PostgreSQL): versioned (`since`, ETag,
304), served to store keys only, this store's part of the policy only, signed with the till's own key — and a till
evaluating it with the engine's rules gets the server's prices, line for line."""

import hashlib
import hmac
import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from orders.pos.api import examples as ex
from orders.pos.selectors import canonical_json, snapshot_signature
from orders.pricing import engine
from orders.pricing import services as pricing
from orders.pricing.models import PriceList, PriceListRow, StoreGroup
from orders.pricing.selectors import policy_version
from tests.pos.conftest import store_client
from tests.pricing.conftest import PHONE, make_promotion, member_with

pytestmark = pytest.mark.django_db

URL = "/api/v1/pos/pricing/snapshot/"


def _client_and_key(store):
    from rest_framework.test import APIClient

    from orders.pos.models import StoreApiKey

    _, key = StoreApiKey.objects.create_key(name="till-snap", store=store)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client, key


def test_a_till_gets_the_whole_snapshot_then_nothing_until_the_policy_changes(pricing_chain):
    till = store_client(pricing_chain["near"])
    first = till.get(URL)
    assert first.status_code == 200
    body = first.json()
    version = policy_version()
    assert body["version"] == body["policy"]["version"] == version and body["changed"] is True
    assert first["ETag"] == f'"{version}"'
    assert "private" in first["Cache-Control"] and "Authorization" in first["Vary"]
    assert (body["store"], body["channel"], body["timezone"]) == ("HCM-Q1-001", "store", "Asia/Ho_Chi_Minh")
    # Nothing changed: a small answer, or a 304 for the ETag.
    same = till.get(URL, {"since": version})
    assert same.status_code == 200 and same.json() == {"version": version, "changed": False}
    assert same["ETag"] == f'"{version}"'
    not_modified = till.get(URL, HTTP_IF_NONE_MATCH=f'"{version}"')
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert till.get(URL, HTTP_IF_NONE_MATCH=f'W/"{version}", "0"').status_code == 304
    # An older version gets the whole snapshot again.
    assert till.get(URL, {"since": version - 1}).json()["changed"] is True
    # A change to the policy moves the version: the till's since and ETag are stale.
    make_promotion(code="weekend-3", percent=3, channels=["store"])
    newer = till.get(URL, {"since": version}, HTTP_IF_NONE_MATCH=f'"{version}"')
    assert newer.status_code == 200 and newer.json()["version"] == version + 1
    assert "weekend-3" in {p["code"] for p in newer.json()["policy"]["promotions"]}
    assert newer["ETag"] == f'"{version + 1}"'


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "9" * 40])
def test_a_since_that_is_not_a_version_is_400(pricing_chain, since):
    res = store_client(pricing_chain["near"]).get(URL, {"since": since})
    assert res.status_code == 400


def test_only_store_keys_get_the_snapshot(pricing_chain, api, anon_api):
    assert api.get(URL).status_code in (401, 403)  # a sales channel's key
    assert anon_api.get(URL).status_code in (401, 403)


def test_a_store_gets_only_what_can_apply_there(pricing_chain):
    near, mid, far = pricing_chain["near"], pricing_chain["mid"], pricing_chain["far"]
    pricing_chain["q1"].stores.add(far)  # the group holds two stores; a till needs only to know it is in it
    q3 = StoreGroup.objects.create(code="q3", name="District 3")
    q3.stores.add(mid)
    q3_prices = PriceList.objects.create(code="q3-prices", name="District 3", store_group=q3)
    PriceListRow.objects.create(price_list=q3_prices, product=pricing_chain["bag"], price_vnd=89_000)
    make_promotion(code="q3-only", percent=5, store_group=q3)
    make_promotion(code="web-only", percent=5, channels=["website"])
    make_promotion(code="tills-only", percent=5, channels=["store"])
    make_promotion(code="ended", percent=5, starts_at=timezone.now() - timedelta(days=9),
                   ends_at=timezone.now() - timedelta(days=1))
    make_promotion(code="next-week", percent=5, starts_at=timezone.now() + timedelta(days=7))

    def policy(store) -> dict:
        return store_client(store).get(URL).json()["policy"]

    near_policy, mid_policy = policy(near), policy(mid)
    assert [pl["code"] for pl in near_policy["price_lists"]] == ["q1-prices"]
    assert near_policy["price_lists"][0]["stores"] == ["HCM-Q1-001"]  # not the group's other store
    assert [pl["code"] for pl in mid_policy["price_lists"]] == ["q3-prices"]
    assert {p["code"] for p in near_policy["promotions"]} == {"gold-5", "hats-10", "tet-coupon", "tills-only",
                                                              "next-week"}
    assert {p["code"] for p in mid_policy["promotions"]} == {"gold-5", "hats-10", "tet-coupon", "tills-only",
                                                             "next-week", "q3-only"}
    assert near_policy["fee_rules"] == []  # tills deliver nothing
    text = json.dumps(near_policy)
    assert "HCM-Q3-001" not in text and "HCM-Q7-001" not in text and "TET2025" not in text  # no codes either


@pytest.mark.parametrize("who", ["anyone", "gold member", "gold member with a code", "silver member, happy hour"])
def test_a_till_evaluating_its_snapshot_gets_the_price_calls_answer(pricing_chain, who):
    """The offline till's answer is the server's: the snapshot's JSON through policy_from_json and price_cart, in
    the context the snapshot names, equals the store's price call for the same cart, line for line."""
    near = pricing_chain["near"]
    make_promotion(code="bag-bundle", kind="bundle", target="sku", bundle=[["TUI-VAI", 1], ["NON-LA", 1]],
                   bundle_price_vnd=200_000, channels=["website", "store"])
    # Exclusive: it wins alone for anyone; a gold member with the coupon does better with the stackable set.
    make_promotion(code="shirt-3-for-2", kind="buy_x_get_y", target="sku", skus=["AO-THUN-M"], buy_qty=2,
                   get_qty=1, percent=50, exclusive=True, priority=5)
    at = timezone.now().replace(microsecond=0)
    local_hour = at.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).time().replace(minute=0, second=0)
    make_promotion(code="happy-hour", percent=7, tiers=["silver"], from_time=local_hour, channels=["store"])
    tier = {"anyone": None, "gold member": "gold", "gold member with a code": "gold"}.get(who, "silver")
    phone = None
    if tier:
        member_with(PHONE, tier=tier)
        phone = PHONE
    codes = ["TET2025"] if "code" in who else []
    cart = [("AO-THUN-M", 3), ("TUI-VAI", 1), ("NON-LA", 2)]
    till = store_client(near)
    snap = till.get(URL).json()
    body = {"lines": [{"sku": s, "qty": q} for s, q in cart], "codes": codes, "at": at.isoformat()}
    if phone:
        body["member_phone"] = phone
    server = till.post("/api/v1/pos/prices/", body, format="json").json()

    # The till's side: only the snapshot, and what it knows at the counter (the member's tier, the codes' promotions).
    policy = engine.policy_from_json(snap["policy"])
    grants = tuple(engine.CodeGrant(code=c, promotion="tet-coupon") for c in codes)
    ctx = engine.Context(channel=snap["channel"], at=at, timezone=snap["timezone"], store=snap["store"],
                         member=phone, tier=tier, codes=grants)
    offline = pricing.priced_json(engine.price_cart(policy, ctx, [engine.CartLine(s, q) for s, q in cart]))
    assert offline == server
    assert server["promotions"] and server["discount_vnd"] > 0
    assert bool(codes) == any(p["code"] == "TET2025" for p in server["promotions"] + offline["promotions"])


def test_the_signature_is_the_tills_own_key_over_the_canonical_body(pricing_chain):
    client, key = _client_and_key(pricing_chain["near"])
    body = client.get(URL).json()
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    # The rule as the operation's description states it, written out without the server's helper.
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert body["signature"] == "v1=" + hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()
    assert canonical_json(unsigned) == canonical
    # A corrupted copy (a price changed on the till's disk) no longer verifies; another till's key does not either.
    tampered = json.loads(json.dumps(body))
    tampered["policy"]["base_prices"]["AO-THUN-M"] = 1_000
    assert snapshot_signature(tampered, key=key) != body["signature"]
    _, other_key = _client_and_key(pricing_chain["near"])
    assert snapshot_signature(body, key=other_key) != body["signature"]


def test_the_documented_snapshot_example_verifies_with_the_documented_key():
    assert snapshot_signature(ex.SNAPSHOT, key=ex.SNAPSHOT_EXAMPLE_KEY) == ex.SNAPSHOT["signature"]
