"""Vouchers bought with points on the website (POST/GET /api/v1/pricing/vouchers/, PostgreSQL): the points leave the
member's balance in one loyalty posting of kind voucher (a double entry: the audit stays clean), the code is the
member's, single-use, and it pays at checkout like money."""

import pytest
from django.core.management import call_command

from loyalty.models import Entry, Member, Posting, PostingKind
from orders.models import Order
from orders.pricing.models import Code, CodeUse
from tests.pricing.conftest import PHONE, member_with

pytestmark = pytest.mark.django_db

URL = "/api/v1/pricing/vouchers/"


def buy(api, body, key, status=201) -> dict:
    r = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert r.status_code == status, r.content
    return r.json()


def test_a_voucher_bought_with_points_leaves_the_balance_in_one_double_entry(api, pricing_chain):
    member = member_with(PHONE, points=1_000)
    voucher = buy(api, {"phone": "0901 234 567", "points": 500}, key="v-1")
    assert voucher["points"] == 500 and voucher["value_vnd"] == 50_000  # 100 ₫ a point
    assert voucher["balance"]["available"] == 500 and voucher["code"].startswith("V")
    code = Code.objects.get(code=voucher["code"])
    assert (code.member_phone, code.max_uses, code.uses, code.promotion.code) == (PHONE, 1, 0, "points-voucher")
    posting = Posting.objects.get(pk=code.voucher_posting_id)
    assert posting.kind == PostingKind.VOUCHER and posting.points == 500 and posting.reference == f"voucher:{code.code}"
    entries = sorted(Entry.objects.filter(posting=posting).values_list("account", "amount"))
    assert entries == [("available", -500), ("redeemed", 500)]
    assert Member.objects.get(pk=member.pk).available == 500
    call_command("loyalty_audit")  # raises CommandError on any difference
    # Listed until used.
    listed = api.get(URL, {"phone": PHONE}).json()
    assert [v["code"] for v in listed] == [voucher["code"]] and listed[0]["value_vnd"] == 50_000


def test_a_replayed_purchase_is_the_same_voucher_and_spends_nothing_more(api, pricing_chain):
    member_with(PHONE, points=1_000)
    first = buy(api, {"phone": PHONE, "points": 300}, key="v-1")
    assert buy(api, {"phone": PHONE, "points": 300}, key="v-1") == first
    assert Code.objects.filter(voucher_posting_id__isnull=False).count() == 1
    assert Posting.objects.filter(kind=PostingKind.VOUCHER).count() == 1
    assert buy(api, {"phone": PHONE, "points": 200}, key="v-1", status=422)["code"] == "idempotency_key_reused"


def test_refusals(api, anon_api, pricing_chain):
    member_with(PHONE, points=100)
    short = buy(api, {"phone": PHONE, "points": 101}, key="v-1", status=409)
    assert short["code"] == "insufficient_points" and short["details"] == {"available": 100, "requested": 101}
    assert buy(api, {"phone": "0912345678", "points": 10}, key="v-2", status=404)["code"] == "unknown_member"
    assert buy(api, {"phone": PHONE, "points": 0}, key="v-3", status=400)["code"] == "invalid"
    r = api.post(URL, {"phone": PHONE, "points": 10}, format="json")  # no Idempotency-Key
    assert r.status_code == 400 and r.json()["details"] == {"header": "Idempotency-Key"}
    assert anon_api.get(URL, {"phone": PHONE}).status_code == 401
    assert api.get(URL).status_code == 400
    assert not Code.objects.filter(voucher_posting_id__isnull=False).exists()
    assert Member.objects.get(phone=PHONE).available == 100


def test_a_voucher_pays_at_checkout_once_and_only_for_its_member(api, pricing_chain):
    member_with(PHONE, points=1_000)
    member_with("+84912345678")
    voucher = buy(api, {"phone": PHONE, "points": 500}, key="v-1")["code"]
    body = {"lines": [{"sku": "TUI-VAI", "qty": 1}], "method": "pickup", "pickup_store": "HCM-Q3-001",
            "codes": [voucher.lower()]}
    # Another member's: refused at the quote and the order.
    other = {"name": "Trần Thị B", "phone": "0912345678"}
    r = api.post("/api/v1/orders/", {**body, "customer": other}, format="json", HTTP_IDEMPOTENCY_KEY="k-0")
    assert r.status_code == 422 and r.json()["code"] == "code_not_yours"
    quoted = api.post("/api/v1/pricing/quote/", {"lines": body["lines"], "codes": [voucher], "member_phone": PHONE},
                      format="json").json()
    assert quoted["discount_vnd"] == 50_000 and quoted["codes"][0]["applied"] is True
    r = api.post("/api/v1/orders/", {**body, "customer": {"name": "Nguyễn Văn A", "phone": PHONE}}, format="json",
                 HTTP_IDEMPOTENCY_KEY="k-1")
    assert r.status_code == 201, r.content
    order = r.json()
    assert (order["subtotal_vnd"], order["discount_vnd"], order["total_vnd"]) == (99_000, 50_000, 49_000)
    (applied,) = order["pricing"]["promotions"]
    assert (applied["promotion"], applied["code"], applied["discount_vnd"]) == ("points-voucher", voucher, 50_000)
    assert CodeUse.objects.get(code__code=voucher).reference == f"order:{order['number']}"
    assert api.get(URL, {"phone": PHONE}).json() == []  # used: no longer listed
    r = api.post("/api/v1/orders/", {**body, "customer": {"name": "Nguyễn Văn A", "phone": PHONE}}, format="json",
                 HTTP_IDEMPOTENCY_KEY="k-2")
    assert r.status_code == 422 and r.json()["code"] == "code_used_up"
    assert Order.objects.count() == 1
    call_command("loyalty_audit")
