"""The tills under the one price policy (PostgreSQL): an online till's price call is the website's quote for the
same cart and context; synced receipts are checked against the policy at their time of sale — a sale below it, a
manager's override and a code used twice are queued as price exceptions, never refused; a single-use code is
consumed once across receipts and channels; a replay queues and consumes nothing again; the chunked sync and its
receipt-by-receipt fallback give the same answers and rows."""

import json
from datetime import timedelta

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone

from orders.pos.models import TillReceipt
from orders.pos.services import sales as sales_service
from orders.pricing import services as pricing
from orders.pricing.models import Code, CodeUse, PriceException, PromotionApplication
from tests.conftest import put_stock
from tests.pos.conftest import receipt, store_client, sync
from tests.pricing.conftest import PHONE, make_code, make_promotion, member_with

pytestmark = pytest.mark.django_db

CART = [("AO-THUN-M", 2), ("NON-LA", 1), ("TUI-VAI", 1)]


def _exceptions(store, receipt_id=None):
    rows = PriceException.objects.filter(store=store).order_by("receipt_id", "kind", "sku")
    if receipt_id:
        rows = rows.filter(receipt_id=receipt_id)
    return [(e.receipt_id, e.kind, e.sku, e.expected_vnd, e.charged_vnd, e.difference_vnd) for e in rows]


def _lines(priced: dict) -> list[tuple]:
    return [(x["sku"], x["qty"], x["unit_price_vnd"], x["discount_vnd"], x["net_vnd"]) for x in priced["lines"]]


def _till_lines(priced: dict) -> list[tuple]:
    """A receipt's lines charging exactly what `priced` says (unit price, line discount)."""
    return [(x["sku"], x["qty"], x["unit_price_vnd"], x["discount_vnd"]) for x in priced["lines"]]


def _receipt(lines, **kw) -> dict:
    """A receipt body with (sku, qty, unit price, discount) lines, paid in cash."""
    body = receipt([(sku, qty, unit) for sku, qty, unit, _ in lines], **kw)
    for line, (_, _, _, discount) in zip(body["lines"], lines, strict=True):
        line["discount_vnd"] = discount
    total = sum(x["qty"] * x["unit_price_vnd"] - x["discount_vnd"] for x in body["lines"])
    if "tenders" not in kw:
        body["tenders"] = [{"type": "cash", "amount_vnd": total}]
    return body


@pytest.fixture
def both_channels(pricing_chain):
    """pricing_chain plus a promotion scoped to the website and the tills by name: 20,000 ₫ off each bag."""
    bag_deal = make_promotion(code="bag-20k", kind="amount_off", target="sku", skus=["TUI-VAI"], amount_vnd=20_000,
                              channels=["website", "store"])
    return {**pricing_chain, "bag_deal": bag_deal}


# --- the price call -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anyone", "gold member with a code"])
def test_the_tills_price_call_is_the_websites_quote_for_the_same_cart(both_channels, api, who):
    near = both_channels["near"]
    member_phone, codes = None, []
    if who != "anyone":
        member_with(PHONE, tier="gold")
        member_phone, codes = "0901 234 567", ["TET2025"]
    at = timezone.now().replace(microsecond=0)
    body = {"lines": [{"sku": s, "qty": q} for s, q in CART], "codes": codes, "at": at.isoformat()}
    if member_phone:
        body["member_phone"] = member_phone
    till = store_client(near).post("/api/v1/pos/prices/", body, format="json")
    assert till.status_code == 200, till.content
    # The website's quote through the pricing door, the website channel, the same store, member, codes and time.
    website = pricing.priced_json(pricing.price(channel="website", lines=dict(CART), store=near,
                                                member_phone=PHONE if member_phone else None, codes=codes, at=at))
    assert till.json() == website
    got = till.json()
    assert {p["promotion"] for p in got["promotions"]} >= {"bag-20k", "hats-10"}
    assert got["lines"][0]["price_source"] == "q1-prices"  # the store group's price list reached the till
    if who != "anyone":
        assert {p["promotion"] for p in got["promotions"]} >= {"gold-5", "tet-coupon"}
    # And over HTTP: the website's own quote endpoint answers the same breakdown.
    quote = api.post("/api/v1/pricing/quote/", {**body, "store": near.code}, format="json")
    assert quote.status_code == 200, quote.content
    assert quote.json() == got
    # Asking prices consumes nothing.
    assert not CodeUse.objects.exists() and Code.objects.get(code="TET2025").uses == 0


def test_the_price_call_refuses_a_used_code_and_an_unknown_sku_with_their_codes(pricing_chain):
    till = store_client(pricing_chain["near"])
    Code.objects.filter(code="TET2025").update(uses=1)
    res = till.post("/api/v1/pos/prices/", {"lines": [{"sku": "AO-THUN-M", "qty": 2}], "codes": ["tet2025"]},
                    format="json")
    assert (res.status_code, res.json()["code"]) == (422, "code_used_up")
    res = till.post("/api/v1/pos/prices/", {"lines": [{"sku": "NOPE", "qty": 1}]}, format="json")
    assert res.status_code == 422 and res.json()["code"] == "unknown_sku"
    res = till.post("/api/v1/pos/prices/", {"lines": []}, format="json")
    assert res.status_code == 400
    res = till.post("/api/v1/pos/prices/", {"lines": [{"sku": "AO-THUN-M", "qty": 1}], "member_phone": "12"},
                    format="json")
    assert (res.status_code, res.json()["code"]) == (400, "invalid_phone")  # as everywhere a phone is given


def test_a_sales_channel_key_cannot_ask_the_tills_prices(pricing_chain, api):
    res = api.post("/api/v1/pos/prices/", {"lines": [{"sku": "AO-THUN-M", "qty": 1}]}, format="json")
    assert res.status_code in (401, 403)


# --- receipts checked against the policy ----------------------------------------------------------------------------


def _policy(store, cart, **kw) -> dict:
    return pricing.priced_json(pricing.price(channel="store", lines=dict(cart), store=store, **kw))


def test_a_sale_below_the_policy_price_is_applied_and_queued(pricing_chain):
    near = pricing_chain["near"]
    body = _receipt([("AO-THUN-M", 2, 1_000, 0)], rid="LOW-1")  # 179,000 ₫ at this store's list
    res = sync(store_client(near), [body])
    out = res.json()["results"][0]
    assert out["status"] == "applied"
    assert out["result"]["total_vnd"] == 2_000
    assert out["result"]["policy_total_vnd"] == 358_000
    assert out["result"]["price_exceptions"] == 1
    assert _exceptions(near) == [("LOW-1", "below_policy", "AO-THUN-M", 358_000, 2_000, -356_000)]
    e = PriceException.objects.get()
    assert e.status == "open" and e.policy_version == pricing.selectors.policy_version() and not e.override_reason
    assert TillReceipt.objects.get(receipt_id="LOW-1").total_vnd == 2_000


def test_a_managers_override_is_queued_as_an_override_with_reason_and_staff(pricing_chain):
    near = pricing_chain["near"]
    body = _receipt([("NON-LA", 1, 150_000, 90_000)], rid="OVR-1",
                    price_override={"reason": "damaged brim", "staff_id": "QL-0042"})
    out = sync(store_client(near), [body]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["price_exceptions"] == 1
    e = PriceException.objects.get()
    assert (e.kind, e.sku, e.expected_vnd, e.charged_vnd) == ("override", "NON-LA", 135_000, 60_000)
    assert (e.override_reason, e.override_staff) == ("damaged brim", "QL-0042")
    assert TillReceipt.objects.get(receipt_id="OVR-1").pricing == {
        "codes": [], "promotions": [], "override": {"reason": "damaged brim", "staff_id": "QL-0042"}}


@pytest.mark.parametrize("bad", [{"reason": "damaged"}, {"staff_id": "QL-1"}, {"reason": "", "staff_id": "QL-1"}])
def test_an_override_needs_both_its_reason_and_its_staff_id(pricing_chain, bad):
    body = _receipt([("NON-LA", 1, 150_000, 90_000)], price_override=bad)
    out = sync(store_client(pricing_chain["near"]), [body]).json()["results"][0]
    assert out["status"] == "rejected" and out["reason"] == "invalid" and "price_override" in out["details"]
    assert not PriceException.objects.exists() and not TillReceipt.objects.exists()


def test_a_sale_at_the_policy_price_with_promotions_queues_nothing(both_channels):
    near = both_channels["near"]
    cart = [("AO-THUN-M", 1), ("NON-LA", 2), ("TUI-VAI", 1)]
    policy = _policy(near, cart)
    assert {p["promotion"] for p in policy["promotions"]} == {"bag-20k", "hats-10"}
    reported = [{"promotion": p["promotion"], "discount_vnd": p["discount_vnd"]} for p in policy["promotions"]]
    body = _receipt(_till_lines(policy), rid="OK-1", promotions=reported)
    out = sync(store_client(near), [body]).json()["results"][0]
    assert out["status"] == "applied"
    assert out["result"]["price_exceptions"] == 0
    assert out["result"]["policy_total_vnd"] == out["result"]["total_vnd"] == policy["total_vnd"]
    assert not PriceException.objects.exists()
    # The promotions' results count the till's sale, in the tills' channel and at this store.
    assert sorted(PromotionApplication.objects.values_list("promotion__code", "channel", "store", "reference")) == [
        ("bag-20k", "store", near.code, f"pos:{near.code}:OK-1"),
        ("hats-10", "store", near.code, f"pos:{near.code}:OK-1"),
    ]
    assert TillReceipt.objects.get(receipt_id="OK-1").pricing["promotions"] == reported


def test_a_cart_discount_shared_otherwise_over_the_lines_is_not_an_exception(pricing_chain):
    """The till charges the policy's total but puts the whole coupon on one line: the goods total is right."""
    near = pricing_chain["near"]
    cart = [("AO-THUN-M", 2)]
    policy = _policy(near, [*cart, ("TUI-VAI", 1)], codes=["TET2025"])
    assert policy["codes"][0]["applied"]
    lines = [(x["sku"], x["qty"], x["unit_price_vnd"], 0) for x in policy["lines"]]
    sku, qty, unit, _ = lines[0]
    lines[0] = (sku, qty, unit, policy["discount_vnd"])  # every discount on the first line
    out = sync(store_client(near), [_receipt(lines, rid="SHARE-1", codes=["TET2025"])]).json()["results"][0]
    assert out["result"]["total_vnd"] == out["result"]["policy_total_vnd"] == policy["total_vnd"]
    assert out["result"]["price_exceptions"] == 0 and not PriceException.objects.exists()


@pytest.mark.parametrize("batches", ["one batch", "two batches"])
def test_a_single_use_code_is_consumed_once_across_receipts(pricing_chain, batches):
    near = pricing_chain["near"]
    cart = [("AO-THUN-M", 2)]
    policy = _policy(near, cart, codes=["TET2025"])
    assert policy["codes"][0]["applied"]
    first = _receipt(_till_lines(policy), rid="CODE-1", codes=["TET2025"],
                     promotions=[{"promotion": "tet-coupon", "code": "TET2025", "discount_vnd": 50_000}])
    second = _receipt(_till_lines(policy), rid="CODE-2", codes=["tet2025 "])
    till = store_client(near)
    if batches == "one batch":
        outs = sync(till, [first, second]).json()["results"]
    else:
        outs = [sync(till, [first]).json()["results"][0], sync(till, [second]).json()["results"][0]]
    assert [o["status"] for o in outs] == ["applied", "applied"]
    assert outs[0]["result"]["price_exceptions"] == 0
    # The second receipt: the code refused, and the 50,000 ₫ it took off is below the policy.
    kinds = [e[1] for e in _exceptions(near, "CODE-2")]
    assert kinds == ["below_policy", "code_refused"]
    assert outs[1]["result"]["price_exceptions"] == 2
    assert outs[1]["result"]["policy_total_vnd"] == 358_000
    code = Code.objects.get(code="TET2025")
    assert code.uses == 1
    assert list(CodeUse.objects.values_list("reference", "status", "channel", "store")) == [
        (f"pos:{near.code}:CODE-1", "consumed", "store", near.code)]


def test_a_code_reserved_by_a_website_order_is_refused_at_the_till(pricing_chain):
    near = pricing_chain["near"]
    priced = pricing.price(channel="website", lines={"AO-THUN-M": 2}, codes=["TET2025"])
    with transaction.atomic():
        pricing.commit(priced=priced, reference="order:W-1", channel="website")
    policy = _policy(near, [("AO-THUN-M", 2)])
    body = _receipt(_till_lines(policy), rid="WEB-CODE-1", codes=["TET2025"])
    out = sync(store_client(near), [body]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["price_exceptions"] == 1
    assert [e[1] for e in _exceptions(near)] == ["code_refused"]
    assert Code.objects.get(code="TET2025").uses == 1 and CodeUse.objects.count() == 1


def test_a_replay_queues_and_consumes_nothing_again_and_other_codes_are_a_reused_id(pricing_chain):
    near = pricing_chain["near"]
    policy = _policy(near, [("AO-THUN-M", 2)], codes=["TET2025"])
    low = _receipt([("NON-LA", 1, 1_000, 0)], rid="RP-1")
    coded = _receipt(_till_lines(policy), rid="RP-2", codes=["TET2025"])
    till = store_client(near)
    first = sync(till, [low, coded]).json()
    counts = (PriceException.objects.count(), CodeUse.objects.count(), PromotionApplication.objects.count())
    assert counts == (1, 1, 2)  # the hat below the policy; the code; hats-10 and tet-coupon as the policy applied
    for _ in range(2):
        again = sync(till, [low, coded]).json()
        assert [o["status"] for o in again["results"]] == ["duplicate", "duplicate"]
        assert [o["result"] for o in again["results"]] == [o["result"] for o in first["results"]]
    other = dict(coded, codes=["OTHER-CODE"])
    out = sync(till, [other]).json()["results"][0]
    assert (out["status"], out["reason"]) == ("rejected", "receipt_id_reused")
    assert (PriceException.objects.count(), CodeUse.objects.count(), PromotionApplication.objects.count()) == counts
    assert Code.objects.get(code="TET2025").uses == 1


def test_a_receipt_of_a_product_added_after_the_policy_was_cached_is_priced(pricing_chain):
    from tests.factories import ProductFactory

    near = pricing_chain["near"]
    pricing.selectors.active_policy()  # cached without the new product
    ProductFactory(sku="MOI-1", price_vnd=40_000)
    out = sync(store_client(near), [_receipt([("MOI-1", 1, 30_000, 0)], rid="NEW-1")]).json()["results"][0]
    assert out["status"] == "applied" and out["result"]["policy_total_vnd"] == 40_000
    assert _exceptions(near) == [("NEW-1", "below_policy", "MOI-1", 40_000, 30_000, -10_000)]


# --- the chunked sync and its fallback -----------------------------------------------------------------------------


OTHER_PHONE = "+84901234568"


def _batch(code: str, policy: dict, phone: str, sold_at) -> list[dict]:
    return [
        _receipt(_till_lines(policy), rid="P-1", codes=[code], phone=phone, sold_at=sold_at),
        _receipt([("AO-THUN-M", 1, 100_000, 0)], rid="P-2", sold_at=sold_at),
        _receipt([("NON-LA", 1, 150_000, 100_000)], rid="P-3", sold_at=sold_at,
                 price_override={"reason": "display unit", "staff_id": "QL-7"}),
        _receipt(_till_lines(policy), rid="P-4", codes=[code], sold_at=sold_at),  # the single-use code again
        # Points the member does not have: rejected after its stock was planned; it queues and consumes nothing.
        _receipt([("AO-THUN-M", 1, 1_000_000, 0)], rid="P-5", phone=phone, codes=[code], sold_at=sold_at,
                 tenders=[{"type": "points", "points": 10_000}]),
    ]


def test_the_chunk_and_the_receipt_by_receipt_fallback_price_alike(pricing_chain, monkeypatch):
    """The same batch at two stores of the same prices: once in chunks, once with every chunk refused by the
    database (as a concurrent resend would) and applied receipt by receipt. Same answers, same exceptions, same
    code uses."""
    near, mid = pricing_chain["near"], pricing_chain["mid"]
    pricing_chain["q1"].stores.add(mid)  # both stores under the same price list
    put_stock(near, pricing_chain["shirt"], 5)  # and the same stock as mid's
    pricing.policy_changed()
    make_code(pricing_chain["tet"], "TET-MID")
    member_with(PHONE, points=10)
    member_with(OTHER_PHONE, points=10)
    cart = [("AO-THUN-M", 2)]
    sold_at = timezone.now() - timedelta(minutes=5)
    chunked = sync(store_client(near), _batch("TET2025", _policy(near, cart, codes=["TET2025"]), PHONE,
                                              sold_at)).json()

    def refused(**kwargs):
        raise DatabaseError("as if a concurrent resend clashed")

    monkeypatch.setattr(sales_service, "_apply_chunk", refused)
    single = sync(store_client(mid), _batch("TET-MID", _policy(mid, cart, codes=["TET-MID"]), OTHER_PHONE,
                                            sold_at)).json()

    def plain(answer) -> str:
        return json.dumps(answer, sort_keys=True).replace(OTHER_PHONE, PHONE).replace("TET-MID", "TET2025")

    assert plain(chunked) == plain(single)
    assert [o["status"] for o in chunked["results"]] == ["applied"] * 4 + ["rejected"]
    assert chunked["results"][4]["reason"] == "insufficient_points"
    assert [o["result"]["price_exceptions"] for o in chunked["results"][:4]] == [0, 1, 1, 2]

    def rows(store) -> list[tuple]:
        return [(e.receipt_id, e.kind, e.sku, e.expected_vnd, e.charged_vnd, e.override_reason, e.override_staff)
                for e in PriceException.objects.filter(store=store).order_by("receipt_id", "kind")]

    assert rows(near) == rows(mid) and len(rows(near)) == 4
    uses = {s.code: sorted((u.reference.split(":")[-1], u.status) for u in CodeUse.objects.filter(store=s.code))
            for s in (near, mid)}
    assert uses[near.code] == uses[mid.code] == [("P-1", "consumed")]
    assert Code.objects.get(code="TET2025").uses == Code.objects.get(code="TET-MID").uses == 1
    kept = {s.code: plain(list(TillReceipt.objects.filter(store=s).order_by("receipt_id").values_list(
        "receipt_id", "pricing", "result"))) for s in (near, mid)}
    assert kept[near.code] == kept[mid.code]


def test_receipts_synced_before_prices_were_checked_answer_as_they_did(pricing_chain):
    """A receipt recorded before this release has no pricing in its result: its replay is still that answer."""
    near = pricing_chain["near"]
    body = _receipt([("AO-THUN-M", 1, 179_000, 0)], rid="OLD-1", sold_at=timezone.now() - timedelta(days=1))
    till = store_client(near)
    first = sync(till, [body]).json()["results"][0]["result"]
    old = {k: v for k, v in first.items() if k not in ("policy_total_vnd", "price_exceptions")}
    TillReceipt.objects.filter(receipt_id="OLD-1").update(result=old, pricing={})
    again = sync(till, [body]).json()["results"][0]
    assert again["status"] == "duplicate" and again["result"] == old


def test_a_store_key_of_another_store_prices_at_its_own_store(pricing_chain):
    """The q1 price list holds at the store in its group only: the same call with the other store's key gets the
    base price."""
    body = {"lines": [{"sku": "AO-THUN-M", "qty": 1}]}
    near = store_client(pricing_chain["near"]).post("/api/v1/pos/prices/", body, format="json").json()
    far = store_client(pricing_chain["far"]).post("/api/v1/pos/prices/", body, format="json").json()
    assert (near["lines"][0]["unit_price_vnd"], far["lines"][0]["unit_price_vnd"]) == (179_000, 199_000)


def test_a_void_takes_the_receipts_promotions_out_of_their_results(pricing_chain):
    """A receipt entered in error: its promotions leave the results per promotion and give their budget back; the
    code it consumed stays used (it was given at the till); its price exceptions stay in the queue for review."""
    near = pricing_chain["near"]
    capped = make_promotion(code="bags-capped", kind="amount_off", target="sku", skus=["TUI-VAI"],
                            amount_vnd=9_000, max_uses=5)
    policy = _policy(near, [("TUI-VAI", 1), ("AO-THUN-M", 2)], codes=["TET2025"])
    till = store_client(near)
    body = _receipt(_till_lines(policy), rid="VOID-1", codes=["TET2025"])
    assert sync(till, [body]).json()["results"][0]["result"]["price_exceptions"] == 0
    capped.refresh_from_db()
    assert capped.uses == 1
    assert till.post("/api/v1/pos/sales/VOID-1/void/").status_code == 200
    assert not PromotionApplication.objects.filter(cancelled=False).exists()
    assert PromotionApplication.objects.filter(reference=f"pos:{near.code}:VOID-1").count() == 2
    capped.refresh_from_db()
    assert capped.uses == 0
    assert Code.objects.get(code="TET2025").uses == 1
    assert CodeUse.objects.get().status == "consumed"
