"""POST /api/v1/pricing/quote/: the website's price of a cart, here and now (PostgreSQL, through the API).

The policy is tests.pricing.conftest's `pricing_chain`: q1-prices (AO-THUN-M 179,000 ₫ at HCM-Q1-001), hats-10
(10 % off NON-LA), gold-5 (5 % off the cart, gold members only), tet-coupon (50,000 ₫ off 300,000 ₫, code TET2025)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.pricing import engine
from orders.pricing.api import serializers as io
from orders.pricing.models import Promotion
from tests.pricing.conftest import make_code, make_promotion, member_with

pytestmark = pytest.mark.django_db

URL = "/api/v1/pricing/quote/"


def quote(api, body, status=200) -> dict:
    r = api.post(URL, body, format="json")
    assert r.status_code == status, r.content
    return r.json()


def test_a_percent_off_promotion_on_a_sku(api, pricing_chain):
    q = quote(api, {"lines": [{"sku": "NON-LA", "qty": 2}, {"sku": "TUI-VAI", "qty": 1}]})
    hats = next(line for line in q["lines"] if line["sku"] == "NON-LA")
    assert hats == {
        "sku": "NON-LA", "qty": 2, "base_price_vnd": 150_000, "unit_price_vnd": 150_000, "price_source": "base",
        "gross_vnd": 300_000, "discount_vnd": 30_000, "net_vnd": 270_000,
        "discounts": [{"promotion": "hats-10", "amount_vnd": 30_000}],
    }
    assert q["promotions"] == [{
        "promotion": "hats-10", "name": "Hats 10% off", "kind": "percent_off", "code": None, "discount_vnd": 30_000,
        "rule": "10% off", "lines": [{"sku": "NON-LA", "discount_vnd": 30_000}],
    }]
    assert (q["subtotal_vnd"], q["discount_vnd"], q["total_vnd"]) == (399_000, 30_000, 369_000)
    assert q["delivery_fee_vnd"] == 0 and q["grand_total_vnd"] == 369_000 and q["codes"] == []


def test_a_tier_only_promotion_applies_to_that_tiers_members_only(api, pricing_chain):
    body = {"lines": [{"sku": "TUI-VAI", "qty": 2}]}
    assert quote(api, body)["discount_vnd"] == 0  # nobody
    member_with("0912345678", tier="silver")
    assert quote(api, {**body, "member_phone": "0912 345 678"})["discount_vnd"] == 0  # another tier
    member_with("0901234567", tier="gold")
    gold = quote(api, {**body, "member_phone": "+84 90 123 4567"})  # any common format
    assert gold["discount_vnd"] == 9_900  # 5 % of 198,000
    assert [p["promotion"] for p in gold["promotions"]] == ["gold-5"]
    assert gold["promotions"][0]["rule"] == "5% off the cart"


def test_a_coupon_code_applies_when_the_cart_reaches_its_spend(api, pricing_chain):
    small = quote(api, {"lines": [{"sku": "TUI-VAI", "qty": 1}], "codes": ["TET2025"]})
    assert small["codes"] == [{"code": "TET2025", "promotion": "tet-coupon", "applied": False,
                               "reason": "conditions_not_met"}]
    assert small["discount_vnd"] == 0
    big = quote(api, {"lines": [{"sku": "TUI-VAI", "qty": 4}], "codes": [" tet2025 "]})  # case and spaces
    assert big["codes"] == [{"code": "TET2025", "promotion": "tet-coupon", "applied": True, "reason": ""}]
    assert big["discount_vnd"] == 50_000 and big["total_vnd"] == 346_000
    (applied,) = big["promotions"]
    assert applied["code"] == "TET2025" and applied["rule"] == "50000 VND off the cart on a cart of 300000 VND or more"
    assert big["lines"][0]["discounts"] == [{"promotion": "tet-coupon#TET2025", "amount_vnd": 50_000}]


def test_a_price_list_by_store_group_wins_at_its_stores_only(api, pricing_chain):
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 2}]}
    at_q1 = quote(api, {**body, "store": "HCM-Q1-001"})["lines"][0]
    assert (at_q1["unit_price_vnd"], at_q1["price_source"], at_q1["base_price_vnd"]) == (179_000, "q1-prices", 199_000)
    assert at_q1["gross_vnd"] == 358_000
    at_q3 = quote(api, {**body, "store": "HCM-Q3-001"})["lines"][0]
    chain_wide = quote(api, body)["lines"][0]
    assert at_q3["unit_price_vnd"] == chain_wide["unit_price_vnd"] == 199_000
    assert at_q3["price_source"] == chain_wide["price_source"] == "base"


def test_bad_codes_are_422s_with_their_own_codes(api, pricing_chain):
    body = {"lines": [{"sku": "TUI-VAI", "qty": 4}]}
    assert quote(api, {**body, "codes": ["NOPE"]}, status=422)["code"] == "code_unknown"
    make_code(pricing_chain["tet"], "OLD2024", expires_at=timezone.now() - timedelta(days=1))
    assert quote(api, {**body, "codes": ["OLD2024"]}, status=422)["code"] == "code_expired"
    make_code(pricing_chain["tet"], "USED", uses=1)
    assert quote(api, {**body, "codes": ["USED"]}, status=422)["code"] == "code_used_up"
    make_code(pricing_chain["tet"], "HERS", member_phone="+84912345678")
    assert quote(api, {**body, "codes": ["HERS"], "member_phone": "0901234567"}, status=422)["code"] == "code_not_yours"
    q1_only = make_promotion(code="q1-app", amount_vnd=10_000, kind=engine.Kind.AMOUNT_OFF, requires_code=True,
                             store_group=pricing_chain["q1"])
    make_code(q1_only, "Q1APP")
    refused = quote(api, {**body, "codes": ["Q1APP"], "store": "HCM-Q3-001"}, status=422)
    assert refused["code"] == "code_out_of_scope" and refused["details"] == {"code": "Q1APP"}
    assert quote(api, {**body, "codes": ["Q1APP"], "store": "HCM-Q1-001"})["discount_vnd"] == 10_000


def test_at_previews_another_time(api, pricing_chain):
    tomorrow = timezone.now() + timedelta(days=1)
    make_promotion(code="tomorrow-20", percent=20, starts_at=tomorrow, ends_at=tomorrow + timedelta(days=1))
    body = {"lines": [{"sku": "TUI-VAI", "qty": 1}]}
    assert quote(api, body)["discount_vnd"] == 0
    later = quote(api, {**body, "at": (tomorrow + timedelta(hours=1)).isoformat()})
    assert later["discount_vnd"] == 19_800 and later["promotions"][0]["promotion"] == "tomorrow-20"


def test_input_errors(api, anon_api, pricing_chain):
    assert anon_api.post(URL, {"lines": [{"sku": "TUI-VAI", "qty": 1}]}, format="json").status_code == 401
    assert quote(api, {"lines": []}, status=400)["code"] == "invalid"
    assert quote(api, {"lines": [{"sku": "NOPE", "qty": 1}]}, status=422)["code"] == "unknown_sku"
    assert quote(api, {"lines": [{"sku": "TUI-VAI", "qty": 1}], "store": "NOPE"}, status=404)["code"] == "unknown_store"
    bad_phone = quote(api, {"lines": [{"sku": "TUI-VAI", "qty": 1}], "member_phone": "abc"}, status=400)
    assert bad_phone["code"] == "invalid_phone"
    too_many = quote(api, {"lines": [{"sku": "TUI-VAI", "qty": 1}], "codes": ["A"] * (io.MAX_CODES + 1)}, status=400)
    assert "codes" in too_many["details"]


def test_the_documented_example_is_what_the_quote_answers(api, pricing_chain):
    """The OpenAPI example (io.QUOTE_REQUEST -> io.QUOTE_RESPONSE) is a real answer: a 3-for-2 on shirts at the
    District 1 price, with the Tết coupon."""
    Promotion.objects.filter(code="hats-10").update(is_active=False)
    make_promotion(code="shirts-3-for-2", name="Shirts: 3 for 2", kind=engine.Kind.BUY_X_GET_Y,
                   target=engine.Target.SKU, skus=["AO-THUN-M"], buy_qty=2, get_qty=1, percent=100)
    answer = quote(api, io.QUOTE_REQUEST)
    assert answer["policy_version"] > 0
    assert {**answer, "policy_version": io.QUOTE_RESPONSE["policy_version"]} == io.QUOTE_RESPONSE
