"""Head office's pricing-policy API (/api/v1/pricing/policy/) on PostgreSQL, through HTTP as an ERP calls it.

Who may call it (Django users with the admin's model permissions, by HTTP Basic or a session; API keys refused);
promotions and price lists created, changed, deleted, each write moving the policy's version (and a write that
changes nothing leaving it); the admin's refusals, each with its code and field, and nothing written; a price list's
rows upserted and replaced in bulk with a fixed number of statements whatever their number; codes generated as JSON
and CSV, and an idempotent retry that makes no second batch; the list filters. The policy is tests.pricing.conftest's
`pricing_chain` (AO-THUN-M 199,000 ₫, TUI-VAI 99,000 ₫, NON-LA 150,000 ₫; promotions hats-10, gold-5, tet-coupon;
price list q1-prices; store group q1)."""

import base64
import csv
import io
from contextlib import nullcontext
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import Product
from inventory.staff.roles import HEAD_OFFICE, STORE_STAFF, make_staff
from orders.pos.models import StoreApiKey
from orders.pricing import selectors
from orders.pricing.models import Code, PriceList, PriceListRow, Promotion, PromotionApplication
from tests.pricing.conftest import make_code

pytestmark = pytest.mark.django_db

BASE = "/api/v1/pricing/policy"
PASSWORD = "a-long-test-passphrase-42"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """HTTP Basic checks the password on every request: the production hasher's rounds would make these tests slow,
    not more right."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def basic(username: str, password: str = PASSWORD) -> APIClient:
    client = APIClient()
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


@pytest.fixture
def head_office(pricing_chain, channel):
    """The ERP's technical user in the Head office group, by HTTP Basic (the website channel exists)."""
    make_staff(username="erp", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    return basic("erp")


def version() -> int:
    return selectors.policy_version()


def promotion_body(**fields) -> dict:
    body = {"code": "shirts-20", "name": "Shirts 20% off", "kind": "percent_off", "target": "sku",
            "skus": ["AO-THUN-M"], "percent": 20}
    body.update(fields)
    return body


def check(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json() if response.content else {}


# --- who may call it ------------------------------------------------------------------------------------------------


def test_anonymous_callers_and_wrong_passwords_are_401_with_a_basic_challenge(pricing_chain):
    r = APIClient().get(f"{BASE}/promotions/")
    assert check(r, 401)["code"] == "not_authenticated"
    assert r["WWW-Authenticate"].startswith("Basic")
    make_staff(username="erp", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    assert check(basic("erp", "wrong").get(f"{BASE}/promotions/"), 401)["code"] == "invalid_credentials"
    assert check(APIClient().post(f"{BASE}/promotions/", promotion_body(), format="json"), 401)
    assert not Promotion.objects.filter(code="shirts-20").exists()


def test_a_user_without_the_model_permission_is_403(pricing_chain):
    get_user_model().objects.create_user(username="nobody", password=PASSWORD, is_staff=True)
    nobody = basic("nobody")
    assert check(nobody.get(f"{BASE}/promotions/"), 403)["code"] == "forbidden"
    assert check(nobody.get(f"{BASE}/version/"), 403)["code"] == "forbidden"
    # Store staff read what runs (view_promotion) but set nothing, and do not see the price lists.
    make_staff(username="shop", password=PASSWORD, role=STORE_STAFF, stores=[pricing_chain["near"]])
    shop = basic("shop")
    assert {p["code"] for p in check(shop.get(f"{BASE}/promotions/"), 200)["results"]} == {
        "gold-5", "hats-10", "tet-coupon"}
    assert check(shop.get(f"{BASE}/version/"), 200)["version"] == version()
    assert check(shop.post(f"{BASE}/promotions/", promotion_body(), format="json"), 403)["code"] == "forbidden"
    assert check(shop.patch(f"{BASE}/promotions/hats-10/", {"percent": 50}, format="json"), 403)
    assert check(shop.delete(f"{BASE}/promotions/hats-10/"), 403)
    assert check(shop.get(f"{BASE}/price-lists/"), 403)
    assert check(shop.post(f"{BASE}/promotions/hats-10/codes/", {"count": 1}, format="json"), 403)
    assert Promotion.objects.get(code="hats-10").percent == 10 and not Code.objects.filter(promotion__code="hats-10")


def test_one_permission_opens_its_own_operation_only(pricing_chain):
    user = get_user_model().objects.create_user(username="rows", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="pricing", codename__in=["view_pricelist", "change_pricelist"]))
    rows_put = {"rows": [{"sku": "NON-LA", "price_vnd": 140_000}]}
    client = basic("rows")
    assert check(client.get(f"{BASE}/price-lists/q1-prices/rows/"), 200)["count"] == 1
    assert check(client.put(f"{BASE}/price-lists/q1-prices/rows/", rows_put, format="json"), 403)  # no row perms
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="pricing",
        codename__in=["add_pricelistrow", "change_pricelistrow", "delete_pricelistrow"]))
    assert check(client.put(f"{BASE}/price-lists/q1-prices/rows/", rows_put, format="json"), 200)["created"] == 1
    assert check(client.delete(f"{BASE}/price-lists/q1-prices/"), 403)  # no delete_pricelist
    assert check(client.get(f"{BASE}/promotions/"), 403)  # no view_promotion


def test_sales_channel_and_store_api_keys_are_refused_with_403(pricing_chain, api):
    r = api.get(f"{BASE}/promotions/")
    assert check(r, 403)["code"] == "forbidden" and "API key" in r.json()["message"]
    assert check(api.post(f"{BASE}/promotions/", promotion_body(), format="json"), 403)
    _, raw = StoreApiKey.objects.create_key(name="till-1", store=pricing_chain["near"])
    till = APIClient()
    till.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert check(till.get(f"{BASE}/version/"), 403)["code"] == "forbidden"
    assert check(till.put(f"{BASE}/price-lists/q1-prices/rows/", {"rows": []}, format="json"), 403)
    assert not Promotion.objects.filter(code="shirts-20").exists()


def test_an_admin_session_works_and_its_writes_need_the_csrf_token(pricing_chain):
    user = make_staff(username="desk", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert check(client.get(f"{BASE}/promotions/hats-10/"), 200)["percent"] == 10
    r = client.post(f"{BASE}/promotions/", promotion_body(), format="json")
    assert check(r, 403)["code"] == "forbidden" and "CSRF" in r.json()["message"]
    token = "k" * 32  # the cookie's secret, as the admin's pages set it, sent back in the header
    client.cookies["csrftoken"] = token
    check(client.post(f"{BASE}/promotions/", promotion_body(), format="json", HTTP_X_CSRFTOKEN=token), 201)


# --- promotions -----------------------------------------------------------------------------------------------------


def test_a_promotion_created_through_the_api_is_priced_by_the_website_at_once(head_office, api):
    before = version()
    body = promotion_body(channels=["website"], store_group="q1", tiers=["gold", "member"], weekdays=[5, 6, 5],
                          from_time="09:00", until_time="21:30:15", campaign="summer", max_uses=100,
                          max_uses_per_member=2, max_discount_vnd=5_000_000, priority=5,
                          starts_at="2025-06-01T00:00:00+07:00")
    made = check(head_office.post(f"{BASE}/promotions/", body, format="json"), 201)
    assert made == {
        "code": "shirts-20", "name": "Shirts 20% off", "campaign": "summer", "is_active": True, "kind": "percent_off",
        "target": "sku", "skus": ["AO-THUN-M"], "categories": [], "percent": 20, "amount_vnd": 0, "buy_qty": 0,
        "get_qty": 0, "bundle": [], "bundle_price_vnd": 0, "min_spend_vnd": 0, "channels": ["website"],
        "store_group": "q1", "tiers": ["gold", "member"], "starts_at": made["starts_at"], "ends_at": None,
        "weekdays": [5, 6], "from_time": "09:00:00", "until_time": "21:30:15", "priority": 5, "exclusive": False,
        "requires_code": False, "max_uses": 100, "max_uses_per_member": 2, "max_discount_vnd": 5_000_000, "uses": 0,
        "discount_given_vnd": 0, "updated_at": made["updated_at"],
    }
    assert version() == before + 1
    assert check(head_office.get(f"{BASE}/promotions/shirts-20/"), 200) == made
    # A chain-wide 20 % off shirts for everyone and every day, seen by the website's quote without a restart.
    check(head_office.post(f"{BASE}/promotions/", promotion_body(code="all-shirts"), format="json"), 201)
    quote = check(api.post("/api/v1/pricing/quote/", {"lines": [{"sku": "AO-THUN-M", "qty": 1}]}, format="json"), 200)
    assert quote["discount_vnd"] == 39_800 and quote["promotions"][0]["promotion"] == "all-shirts"


def test_the_counters_are_read_only(head_office):
    body = promotion_body(uses=50, discount_given_vnd=10**6)
    made = check(head_office.post(f"{BASE}/promotions/", body, format="json"), 201)
    assert (made["uses"], made["discount_given_vnd"]) == (0, 0)
    check(head_office.patch(f"{BASE}/promotions/shirts-20/", {"uses": 7}, format="json"), 200)
    assert Promotion.objects.get(code="shirts-20").uses == 0


REFUSALS = [
    # (what is wrong, the body's fields, the field at fault)
    ("dates reversed", {"starts_at": "2025-03-02T10:00:00+07:00", "ends_at": "2025-03-01T10:00:00+07:00"}, "ends_at"),
    ("discount above the SKU's price", {"kind": "amount_off", "percent": 0, "amount_vnd": 200_000}, "amount_vnd"),
    ("percent over 100", {"percent": 101}, "percent"),
    ("bundle at its parts' price", {"kind": "bundle", "target": "cart", "skus": [], "percent": 0,
                                    "bundle": [["AO-THUN-M", 1], ["NON-LA", 1]], "bundle_price_vnd": 349_000},
     "bundle_price_vnd"),
    ("bundle listing a SKU twice", {"kind": "bundle", "target": "cart", "skus": [], "percent": 0,
                                    "bundle": [["NON-LA", 1], ["NON-LA", 2]], "bundle_price_vnd": 100_000}, "bundle"),
    ("unknown SKU", {"skus": ["AO-THUN-M", "NO-SUCH"]}, "skus"),
    ("buy X get Y without Y", {"kind": "buy_x_get_y", "percent": 100, "buy_qty": 2, "get_qty": 0}, "get_qty"),
    ("a minimum spend on a line promotion", {"min_spend_vnd": 100_000}, "min_spend_vnd"),
    ("weekday 7", {"weekdays": [1, 7]}, "weekdays"),
    ("unknown channel", {"channels": ["website", "marketplace"]}, "channels"),
    ("unknown tier", {"tiers": ["platinum"]}, "tiers"),
]


@pytest.mark.parametrize(("wrong", "fields", "field"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_promotion_the_admin_refuses_is_a_422_on_its_field_and_nothing_is_written(head_office, wrong, fields, field):
    before = version()
    error = check(head_office.post(f"{BASE}/promotions/", promotion_body(**fields), format="json"), 422)
    assert error["code"] == "invalid_promotion" and field in error["details"], error
    assert not Promotion.objects.filter(code="shirts-20").exists() and version() == before
    # A change that makes an existing promotion wrong is refused the same way, and leaves it as it was.
    error = check(head_office.patch(f"{BASE}/promotions/hats-10/", fields, format="json"), 422)
    assert error["code"] == "invalid_promotion" and field in error["details"]
    assert Promotion.objects.get(code="hats-10").percent == 10 and version() == before


@pytest.mark.parametrize(("fields", "field"), [
    ({"amount_vnd": -1}, "amount_vnd"), ({"min_spend_vnd": -500}, "min_spend_vnd"),
    ({"bundle_price_vnd": -1}, "bundle_price_vnd"), ({"max_discount_vnd": -1}, "max_discount_vnd"),
    ({"max_uses": -1}, "max_uses"), ({"percent": -5}, "percent"), ({"buy_qty": 40_000}, "buy_qty"),
    ({"kind": "half_price"}, "kind"), ({"bundle": [["NON-LA"]]}, "bundle"), ({"skus": "AO-THUN-M"}, "skus"),
    ({"from_time": "25:00"}, "from_time"), ({"store_group": "nowhere"}, "store_group"), ({"code": "a b"}, "code"),
])
def test_what_a_column_cannot_hold_is_a_400_on_its_field(head_office, fields, field):
    error = check(head_office.post(f"{BASE}/promotions/", promotion_body(**fields), format="json"), 400)
    assert error["code"] == "invalid" and field in error["details"], error
    assert not Promotion.objects.filter(code="shirts-20").exists()


def test_a_code_taken_is_409_and_a_code_is_needed(head_office):
    error = check(head_office.post(f"{BASE}/promotions/", promotion_body(code="hats-10"), format="json"), 409)
    assert error["code"] == "already_exists" and error["details"] == {"code": "hats-10"}
    body = promotion_body()
    del body["code"]
    assert "code" in check(head_office.post(f"{BASE}/promotions/", body, format="json"), 400)["details"]


def test_patch_put_and_the_version_moving_only_when_something_changed(head_office, pricing_chain):
    v0 = version()
    changed = check(head_office.patch(f"{BASE}/promotions/hats-10/", {"percent": 15, "channels": ["store"]},
                                      format="json"), 200)
    assert (changed["percent"], changed["channels"], changed["skus"]) == (15, ["store"], ["NON-LA"])
    assert version() == v0 + 1
    check(head_office.patch(f"{BASE}/promotions/hats-10/", {"percent": 15}, format="json"), 200)
    assert version() == v0 + 1  # the same again: the tills need not reload
    # PUT replaces: what it leaves out goes back to its default (every channel here).
    replaced = check(head_office.put(f"{BASE}/promotions/hats-10/", {
        "name": "Hats 12%", "kind": "percent_off", "target": "sku", "skus": ["NON-LA"], "percent": 12}, format="json"),
        200)
    assert (replaced["name"], replaced["percent"], replaced["channels"], replaced["code"]) == (
        "Hats 12%", 12, [], "hats-10")
    assert version() == v0 + 2
    assert check(head_office.put(f"{BASE}/promotions/hats-10/", {"percent": 12}, format="json"), 400)["details"].keys() \
        >= {"name", "kind"}
    renamed = check(head_office.patch(f"{BASE}/promotions/hats-10/", {"code": "hats-99"}, format="json"), 400)
    assert "code" in renamed["details"] and Promotion.objects.filter(code="hats-10").exists()
    assert check(head_office.patch(f"{BASE}/promotions/nope/", {"percent": 1}, format="json"), 404)["code"] == \
        "not_found"
    assert version() == v0 + 2


def test_a_budget_cannot_go_below_what_it_already_gave(head_office, pricing_chain):
    Promotion.objects.filter(code="hats-10").update(uses=30, discount_given_vnd=450_000)
    error = check(head_office.patch(f"{BASE}/promotions/hats-10/", {"max_uses": 29, "max_discount_vnd": 400_000},
                                    format="json"), 422)
    assert error["code"] == "invalid_promotion" and set(error["details"]) == {"max_uses", "max_discount_vnd"}
    ok = check(head_office.patch(f"{BASE}/promotions/hats-10/", {"max_uses": 30, "max_discount_vnd": 450_000},
                                 format="json"), 200)
    assert (ok["max_uses"], ok["uses"], ok["discount_given_vnd"]) == (30, 30, 450_000)


def test_delete_a_promotion_never_used_and_keep_one_with_codes_or_results(head_office, pricing_chain):
    v0 = version()
    check(head_office.delete(f"{BASE}/promotions/hats-10/"), 204)
    assert not Promotion.objects.filter(code="hats-10").exists() and version() == v0 + 1
    error = check(head_office.delete(f"{BASE}/promotions/tet-coupon/"), 409)  # its code TET2025
    assert error["code"] == "in_use" and Promotion.objects.filter(code="tet-coupon").exists()
    PromotionApplication.objects.create(promotion=pricing_chain["gold"], reference="order:1", channel="website",
                                        discount_vnd=1_000, revenue_vnd=20_000)
    assert check(head_office.delete(f"{BASE}/promotions/gold-5/"), 409)["code"] == "in_use"
    assert check(head_office.delete(f"{BASE}/promotions/hats-10/"), 404)["code"] == "not_found"
    assert version() == v0 + 1


def test_the_filters(head_office, pricing_chain):
    now = timezone.now()
    Promotion.objects.filter(code="gold-5").update(campaign="vip", starts_at=now + timedelta(days=3))
    Promotion.objects.filter(code="tet-coupon").update(campaign="tet", ends_at=now - timedelta(days=1),
                                                       starts_at=now - timedelta(days=10))
    Promotion.objects.filter(code="hats-10").update(is_active=False)

    def codes(query: str) -> set[str]:
        return {p["code"] for p in check(head_office.get(f"{BASE}/promotions/?{query}"), 200)["results"]}

    assert codes("") == {"gold-5", "hats-10", "tet-coupon"}
    assert codes("active=false") == {"hats-10"} and codes("active=true") == {"gold-5", "tet-coupon"}
    assert codes("kind=amount_off") == {"tet-coupon"} and codes("campaign=vip") == {"gold-5"}
    at = lambda moment: "running_at=" + moment.isoformat().replace("+", "%2B")  # noqa: E731
    assert codes(at(now)) == set()
    assert codes(at(now + timedelta(days=4))) == {"gold-5"}
    assert codes(at(now - timedelta(days=2))) == {"tet-coupon"}
    assert codes(at(now - timedelta(days=1))) == set()  # the end is exclusive
    assert codes("store_group=q1") == set()
    assert check(head_office.get(f"{BASE}/promotions/?running_at=yesterday"), 400)["code"] == "invalid"
    assert check(head_office.get(f"{BASE}/promotions/?kind=half_price"), 400)["code"] == "invalid"
    lists = check(head_office.get(f"{BASE}/price-lists/?store_group=q1&active=true"), 200)
    assert [(p["code"], p["rows"]) for p in lists["results"]] == [("q1-prices", 1)]


# --- price lists ----------------------------------------------------------------------------------------------------


def test_price_lists_created_changed_and_deleted_move_the_version(head_office, pricing_chain):
    v0 = version()
    made = check(head_office.post(f"{BASE}/price-lists/", {
        "code": "web-prices", "name": "Website prices", "channels": ["website"], "priority": 3,
        "starts_at": "2025-01-01T00:00:00+07:00"}, format="json"), 201)
    assert (made["channels"], made["store_group"], made["rows"], made["is_active"]) == (["website"], None, 0, True)
    assert version() == v0 + 1
    changed = check(head_office.patch(f"{BASE}/price-lists/web-prices/", {"store_group": "q1"}, format="json"), 200)
    assert changed["store_group"] == "q1" and changed["priority"] == 3 and version() == v0 + 2
    error = check(head_office.patch(f"{BASE}/price-lists/web-prices/", {"ends_at": "2024-12-31T00:00:00+07:00"},
                                    format="json"), 422)
    assert error["code"] == "invalid_price_list" and "ends_at" in error["details"]
    error = check(head_office.post(f"{BASE}/price-lists/", {"code": "x", "name": "X", "channels": ["nowhere"]},
                                   format="json"), 422)
    assert error["code"] == "invalid_price_list" and "channels" in error["details"]
    assert check(head_office.post(f"{BASE}/price-lists/", {"code": "q1-prices", "name": "Again"}, format="json"),
                 409)["code"] == "already_exists"
    assert version() == v0 + 2
    check(head_office.delete(f"{BASE}/price-lists/q1-prices/"), 204)  # with its row
    assert not PriceList.objects.filter(code="q1-prices").exists() and not PriceListRow.objects.exists()
    assert version() == v0 + 3


def test_rows_upserted_then_replaced_with_their_counts(head_office, pricing_chain):
    url = f"{BASE}/price-lists/q1-prices/rows/"  # holds AO-THUN-M at 179,000
    v0 = version()
    done = check(head_office.put(url, {"rows": [{"sku": "AO-THUN-M", "price_vnd": 175_000},
                                                {"sku": "NON-LA", "price_vnd": 140_000}]}, format="json"), 200)
    assert done == {"price_list": "q1-prices", "created": 1, "updated": 1, "unchanged": 0, "deleted": 0, "rows": 2,
                    "version": v0 + 1}
    again = check(head_office.put(url, {"rows": [{"sku": "NON-LA", "price_vnd": 140_000}]}, format="json"), 200)
    assert (again["unchanged"], again["created"], again["updated"], again["version"]) == (1, 0, 0, v0 + 1)
    replaced = check(head_office.put(url, {"rows": [{"sku": "TUI-VAI", "price_vnd": 0}, {"sku": "NON-LA",
                                                                                          "price_vnd": 140_000}],
                                           "replace": True}, format="json"), 200)
    assert replaced == {"price_list": "q1-prices", "created": 1, "updated": 0, "unchanged": 1, "deleted": 1, "rows": 2,
                        "version": v0 + 2}
    listed = check(head_office.get(url), 200)
    assert listed["results"] == [{"sku": "NON-LA", "price_vnd": 140_000}, {"sku": "TUI-VAI", "price_vnd": 0}]
    emptied = check(head_office.put(url, {"rows": [], "replace": True}, format="json"), 200)
    assert (emptied["deleted"], emptied["rows"]) == (2, 0) and not PriceListRow.objects.exists()


def test_rows_refused_whole_unknown_skus_422_negative_prices_400(head_office, pricing_chain):
    url = f"{BASE}/price-lists/q1-prices/rows/"
    v0 = version()
    error = check(head_office.put(url, {"rows": [{"sku": "NON-LA", "price_vnd": 1}, {"sku": "NOPE-2", "price_vnd": 1},
                                                 {"sku": "NOPE-1", "price_vnd": 1}]}, format="json"), 422)
    assert error["code"] == "unknown_sku" and error["details"] == {"skus": ["NOPE-1", "NOPE-2"]}
    error = check(head_office.put(url, {"rows": [{"sku": "NON-LA", "price_vnd": 1},
                                                 {"sku": "TUI-VAI", "price_vnd": -5}]}, format="json"), 400)
    assert error["code"] == "invalid" and list(error["details"]["rows"]) == ["1"]
    assert "negative" in error["details"]["rows"]["1"]
    error = check(head_office.put(url, {"rows": [{"sku": "NON-LA", "price_vnd": 1}, {"sku": "NON-LA", "price_vnd": 2}]},
                                  format="json"), 400)
    assert "twice" in error["details"]["rows"]["1"]
    for bad in ([{"sku": "NON-LA"}], [{"sku": "NON-LA", "price_vnd": "12"}], [{"sku": "", "price_vnd": 1}], "x",
                [{"sku": "NON-LA", "price_vnd": 1, "extra": 1}], [{"sku": "NON-LA", "price_vnd": 10**16}]):
        assert check(head_office.put(url, {"rows": bad}, format="json"), 400)["code"] == "invalid"
    too_many = [{"sku": f"S{i}", "price_vnd": 1} for i in range(20_001)]
    assert "rows" in check(head_office.put(url, {"rows": too_many}, format="json"), 400)["details"]
    assert check(head_office.put(f"{BASE}/price-lists/nope/rows/", {"rows": []}, format="json"), 404)
    assert list(PriceListRow.objects.values_list("product__sku", "price_vnd")) == [("AO-THUN-M", 179_000)]
    assert version() == v0


def test_rows_in_bulk_take_the_same_statements_for_ten_rows_as_for_twenty_thousand(
    head_office, pricing_chain, django_assert_max_num_queries
):
    Product.objects.bulk_create([Product(sku=f"BULK-{i:05d}", name=f"Bulk {i}", price_vnd=100_000)
                                 for i in range(20_000)])
    url = f"{BASE}/price-lists/q1-prices/rows/"

    def put(prices: dict[int, int], replace: bool = False) -> tuple[dict, list[str]]:
        rows = [{"sku": f"BULK-{i:05d}", "price_vnd": price} for i, price in prices.items()]
        with CaptureQueriesContext(connection) as ctx:
            done = check(head_office.put(url, {"rows": rows, "replace": replace}, format="json"), 200)
        return done, [q["sql"] for q in ctx.captured_queries]

    # PostgreSQL takes every row in one statement; SQLite (the demo's database) in batches of its 999 parameters.
    postgres = connection.vendor == "postgresql"
    small, small_queries = put(dict.fromkeys(range(10), 90_000))
    big, big_queries = put(dict.fromkeys(range(20_000), 80_000))  # the most one request takes
    assert (small["created"], big["created"], big["updated"], big["rows"]) == (10, 19_990, 10, 20_001)
    if postgres:
        assert len(big_queries) == len(small_queries), "\n".join(q[:120] for q in small_queries)
    assert PriceListRow.objects.filter(price_list__code="q1-prices", price_vnd=80_000).count() == 20_000
    # Replacing with 2,000 rows: 1,000 repriced, 1,000 as they were, the 18,000 others and AO-THUN-M's deleted.
    with django_assert_max_num_queries(len(small_queries) + 1) if postgres else nullcontext():  # and the DELETE
        replaced, statements = put({**dict.fromkeys(range(18_000, 19_000), 70_000),
                                    **dict.fromkeys(range(19_000, 20_000), 80_000)}, replace=True)
    assert (replaced["created"], replaced["updated"], replaced["unchanged"], replaced["deleted"], replaced["rows"]) == (
        0, 1_000, 1_000, 18_001, 2_000)
    assert PriceListRow.objects.filter(price_list__code="q1-prices").count() == 2_000
    # One INSERT ... ON CONFLICT DO UPDATE for every new and changed row, one DELETE for the rows left out.
    writes = [sql.split()[0] for sql in statements
              if "pricing_pricelistrow" in sql.split(" WHERE")[0] and not sql.startswith("SELECT")]
    assert writes[-1] == "DELETE" and set(writes[:-1]) == {"INSERT"}, writes
    assert len(writes) == 2 or not postgres, writes
    assert "ON CONFLICT" in next(sql for sql in statements if sql.startswith("INSERT"))


# --- codes ----------------------------------------------------------------------------------------------------------


def test_codes_generated_as_json_then_csv(head_office, pricing_chain):
    url = f"{BASE}/promotions/tet-coupon/codes/"
    v0 = version()
    made = check(head_office.post(url, {"count": 5, "prefix": "tet25-", "max_uses": 2,
                                        "expires_at": "2025-02-28T00:00:00+07:00"}, format="json"), 201)
    assert made["count"] == 5 and len(set(made["codes"])) == 5 and made["promotion"] == "tet-coupon"
    assert all(c.startswith("TET25-") and len(c) == 14 for c in made["codes"])
    assert set(Code.objects.filter(promotion__code="tet-coupon", max_uses=2).values_list("code", flat=True)) == set(
        made["codes"])
    assert version() == v0 + 1
    r = head_office.post(url, {"count": 3, "campaign": "flyers"}, format="json", HTTP_ACCEPT="text/csv")
    assert r.status_code == 201 and r["Content-Type"].startswith("text/csv"), r.content
    assert "codes-tet-coupon.csv" in r["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode())))
    assert rows[0] == ["code", "promotion", "campaign", "max_uses", "uses", "expires_at", "member"]
    assert len(rows) == 4 and {row[1:5] for row in map(tuple, rows[1:])} == {("tet-coupon", "flyers", "1", "0")}
    assert set(Code.objects.filter(campaign="flyers").values_list("code", flat=True)) == {row[0] for row in rows[1:]}
    # An error asked for as CSV is JSON all the same.
    r = head_office.post(url, {"count": 0}, format="json", HTTP_ACCEPT="text/csv")
    assert r.status_code == 400 and r.json()["code"] == "invalid" and "count" in r.json()["details"]
    assert check(head_office.post(f"{BASE}/promotions/nope/codes/", {"count": 1}, format="json"), 404)
    assert check(head_office.post(url, {"count": 1, "prefix": "TÊT"}, format="json"), 400)["details"].keys() == {
        "prefix"}


def test_a_retried_codes_request_with_its_idempotency_key_makes_no_second_batch(head_office, pricing_chain):
    url = f"{BASE}/promotions/tet-coupon/codes/"
    body = {"count": 4, "campaign": "mailing"}
    first = check(head_office.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="batch-1"), 201)
    v1 = version()
    again = check(head_office.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="batch-1"), 201)
    assert again == first and Code.objects.filter(campaign="mailing").count() == 4 and version() == v1
    as_csv = head_office.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="batch-1", HTTP_ACCEPT="text/csv")
    assert as_csv.status_code == 201
    assert [row[0] for row in csv.reader(io.StringIO(as_csv.content.decode()))][1:] == first["codes"]
    reused = check(head_office.post(url, {**body, "count": 5}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1"), 422)
    assert reused["code"] == "idempotency_key_reused"
    # The same key for another promotion is another request, not a replay of this one.
    assert check(head_office.post(f"{BASE}/promotions/hats-10/codes/", body, format="json",
                                  HTTP_IDEMPOTENCY_KEY="batch-1"), 422)["code"] == "idempotency_key_reused"
    other = check(head_office.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="batch-2"), 201)
    assert not set(other["codes"]) & set(first["codes"]) and Code.objects.filter(campaign="mailing").count() == 8


def test_creates_with_an_idempotency_key_are_answered_once(head_office):
    first = check(head_office.post(f"{BASE}/promotions/", promotion_body(), format="json",
                                   HTTP_IDEMPOTENCY_KEY="promo-1"), 201)
    v1 = version()
    assert check(head_office.post(f"{BASE}/promotions/", promotion_body(), format="json",
                                  HTTP_IDEMPOTENCY_KEY="promo-1"), 201) == first
    assert version() == v1
    assert check(head_office.post(f"{BASE}/promotions/", promotion_body(), format="json"), 409)  # without: taken
    body = {"code": "web", "name": "Web", "channels": ["website"]}
    first = check(head_office.post(f"{BASE}/price-lists/", body, format="json", HTTP_IDEMPOTENCY_KEY="pl-1"), 201)
    assert check(head_office.post(f"{BASE}/price-lists/", body, format="json", HTTP_IDEMPOTENCY_KEY="pl-1"),
                 201) == first


def test_the_policy_version_follows_every_change(head_office, pricing_chain):
    start = check(head_office.get(f"{BASE}/version/"), 200)
    assert start["version"] == version() and start["changed_at"]
    make_code(pricing_chain["tet"], "EXTRA")  # the admin's way, for comparison
    check(head_office.patch(f"{BASE}/promotions/hats-10/", {"is_active": False}, format="json"), 200)
    now = check(head_office.get(f"{BASE}/version/"), 200)
    assert now["version"] == start["version"] + 2 and now["changed_at"] >= start["changed_at"]


def test_the_openapi_schema_documents_every_operation_under_its_tag_and_user_auth():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [(path, method, op) for path, item in schema["paths"].items() if path.startswith(f"{BASE}/")
                  for method, op in item.items() if isinstance(op, dict)]
    assert len(operations) == 16
    for path, method, op in operations:
        assert op["tags"] == ["Pricing policy"], (path, method)
        assert op["security"] == [{"basicAuth": []}, {"cookieAuth": []}], (path, method)
        assert "403" in op["responses"] and "Permission" in op["description"], (path, method)
    codes = schema["paths"][f"{BASE}/promotions/{{code}}/codes/"]["post"]["responses"]["201"]["content"]
    assert set(codes) == {"application/json", "text/csv"}
