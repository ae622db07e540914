"""The pricing admin on PostgreSQL: the promotion form refuses what check_promotion refuses, on the field at fault;
every save and delete of a policy table raises the policy's version; the price preview prices a cart with the
policy (and a promotion or price list as saved); the calendar, the results and the exception queue; codes generated
by the admin action and the command, and their CSV."""

import csv
import io
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF, make_staff
from orders.pricing import selectors, services
from orders.pricing.forms import PromotionForm, parse_cart
from orders.pricing.models import (
    Code,
    DeliveryFeeRule,
    PriceException,
    PriceList,
    PriceListRow,
    Promotion,
    PromotionApplication,
    StoreGroup,
)
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-passphrase-42"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture(autouse=True)
def _fresh_policy_cache():
    """Each test's rolled-back database reuses policy version numbers: the process's cached policy must not carry
    over from one test to the next."""
    selectors.forget_cached_policy()
    yield
    selectors.forget_cached_policy()


@pytest.fixture
def shop(channel):
    """Three products, two stores in two cities, the website channel."""
    a = StoreFactory(code="HCM-Q1-001", name="Q1 Lê Lợi", city="Ho Chi Minh City")
    b = StoreFactory(code="HN-HK-001", name="Hoàn Kiếm", city="Hà Nội", lat=21.0245, lon=105.855)
    shirt = ProductFactory(sku="AO-THUN-M", price_vnd=199_000, category="ao-thun")
    hat = ProductFactory(sku="NON-LA", price_vnd=150_000, category="non")
    bag = ProductFactory(sku="TUI-VAI", price_vnd=99_000, category="tui")
    return {"a": a, "b": b, "shirt": shirt, "hat": hat, "bag": bag, "channel": channel}


def _promotion(**fields) -> Promotion:
    values = {"code": "SHIRT10", "name": "10% off shirts", "kind": "percent_off", "target": "sku",
              "skus": ["AO-THUN-M"], "percent": 10}
    values.update(fields)
    return Promotion.objects.create(**values)


def _form_data(**fields) -> dict:
    """The promotion form as a browser posts it: every field, lists as the widgets send them."""
    data = {"code": "NEW", "name": "New", "campaign": "", "is_active": "on", "kind": "percent_off", "target": "sku",
            "skus": "AO-THUN-M", "categories": "", "percent": "10", "amount_vnd": "0", "buy_qty": "0", "get_qty": "0",
            "bundle": "", "bundle_price_vnd": "0", "min_spend_vnd": "0", "store_group": "", "starts_at_0": "",
            "starts_at_1": "", "ends_at_0": "", "ends_at_1": "", "from_time": "", "until_time": "", "priority": "0",
            "max_uses": "", "max_uses_per_member": "", "max_discount_vnd": ""}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


# --- the promotion form --------------------------------------------------------------------------------------------


REFUSALS = [
    # (what is wrong, the fields posted, the field that must carry the refusal)
    ("dates reversed", {"starts_at": "2025-03-02 10:00", "ends_at": "2025-03-01 10:00"}, "ends_at"),
    ("a discount larger than the SKU's price", {"kind": "amount_off", "percent": "0", "amount_vnd": "250000"},
     "amount_vnd"),
    ("a percent over 100", {"percent": "150"}, "percent"),
    ("a percent-off of 0", {"percent": "0"}, "percent"),
    ("a bundle at or above its parts' price",
     {"kind": "bundle", "target": "cart", "skus": "", "percent": "0", "bundle": "AO-THUN-M 1\nNON-LA 1",
      "bundle_price_vnd": "349000"}, "bundle_price_vnd"),
    ("a bundle of unknown SKUs",
     {"kind": "bundle", "target": "cart", "skus": "", "percent": "0", "bundle": "NOPE 1", "bundle_price_vnd": "1"},
     "bundle"),
    ("a bundle line that cannot be read", {"kind": "bundle", "target": "cart", "bundle": "AO-THUN-M 0"}, "bundle"),
    ("buy X get Y without Y", {"kind": "buy_x_get_y", "buy_qty": "2", "get_qty": "0", "percent": "100"}, "get_qty"),
    ("buy X get Y without the percent off Y",
     {"kind": "buy_x_get_y", "buy_qty": "2", "get_qty": "1", "percent": "0"}, "percent"),
    ("a spend threshold that gives more than the spend",
     {"kind": "spend_threshold", "target": "cart", "skus": "", "percent": "0", "amount_vnd": "600000",
      "min_spend_vnd": "500000"}, "amount_vnd"),
    ("a spend threshold without the spend",
     {"kind": "spend_threshold", "target": "cart", "skus": "", "percent": "0", "amount_vnd": "50000"},
     "min_spend_vnd"),
    ("an unknown SKU", {"skus": "AO-THUN-M, NOPE"}, "skus"),
    ("a SKU promotion without SKUs", {"skus": ""}, "skus"),
    ("a category promotion without categories", {"target": "category", "skus": ""}, "categories"),
    ("an amount-off of 0", {"kind": "amount_off", "percent": "0", "amount_vnd": "0"}, "amount_vnd"),
]


def _form(**fields) -> PromotionForm:
    data = _form_data()
    for name in ("starts_at", "ends_at"):
        data.pop(f"{name}_0"), data.pop(f"{name}_1")
    data.update(fields)
    return PromotionForm(data)


@pytest.mark.parametrize(("case", "fields", "field"), REFUSALS, ids=[c[0] for c in REFUSALS])
def test_the_promotion_form_refuses_on_the_field_at_fault(shop, case, fields, field):
    form = _form(**fields)
    assert not form.is_valid()
    assert field in form.errors, (case, form.errors)
    assert len(form.errors[field]) == len(set(form.errors[field])), "the same refusal twice"


def test_the_promotion_form_accepts_a_good_promotion_and_saves_lists(shop):
    form = _form(channels=["website", "store"], tiers=["silver", "gold"], weekdays=["5", "6"],
                 skus="AO-THUN-M, NON-LA, AO-THUN-M", from_time="17:00", until_time="19:00")
    assert form.is_valid(), form.errors
    promo = form.save()
    promo.refresh_from_db()
    assert promo.channels == ["website", "store"]
    assert promo.tiers == ["silver", "gold"]
    assert promo.weekdays == [5, 6]
    assert promo.skus == ["AO-THUN-M", "NON-LA"]  # a SKU given twice once


def test_a_bundle_is_written_as_lines_and_saved_as_pairs(shop):
    form = _form(kind="bundle", target="cart", skus="", percent="0", bundle="AO-THUN-M 1\nNON-LA x2",
                 bundle_price_vnd="400000")
    assert form.is_valid(), form.errors
    promo = form.save()
    assert Promotion.objects.get(pk=promo.pk).bundle == [["AO-THUN-M", 1], ["NON-LA", 2]]
    assert PromotionForm(instance=promo)["bundle"].value() == "AO-THUN-M 1\nNON-LA 2"


def test_the_channel_choices_are_the_sales_channels_the_tills_and_what_is_saved(shop):
    promo = _promotion(channels=["old-marketplace"])
    choices = dict(PromotionForm(instance=promo).fields["channels"].choices)
    assert set(choices) == {"website", "store", "old-marketplace"}


def test_parse_cart_reads_lines_and_refuses_what_it_cannot():
    assert parse_cart("AO-THUN-M 2\nNON-LA\n AO-THUN-M x1 , TUI-VAI × 3") == {"AO-THUN-M": 3, "NON-LA": 1, "TUI-VAI": 3}
    for bad in ("AO-THUN-M 0", "AO-THUN-M -2", "AO THUN 2 3"):
        with pytest.raises(Exception, match="Cannot read"):
            parse_cart(bad)


def test_the_admin_refuses_a_reversed_promotion_and_saves_nothing(admin_client, shop):
    version = selectors.policy_version()
    page = admin_client.post(reverse("admin:pricing_promotion_add"), _form_data(
        starts_at_0="2025-03-02", starts_at_1="10:00", ends_at_0="2025-03-01", ends_at_1="10:00"))
    assert page.status_code == 200
    assert "ends_at" in page.context["adminform"].form.errors
    assert "The end must be after the start." in page.content.decode()
    assert not Promotion.objects.filter(code="NEW").exists()
    assert selectors.policy_version() == version


# --- every change to the policy raises its version -----------------------------------------------------------------


def _moved(before: int) -> bool:
    return selectors.policy_version() > before


def test_saving_and_deleting_a_promotion_raises_the_policy_version(admin_client, shop):
    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_promotion_add"), _form_data(channels="website", weekdays="5"))
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    promo = Promotion.objects.get(code="NEW")
    assert promo.channels == ["website"] and promo.weekdays == [5]
    assert _moved(before)
    # the cached policy reloads with it
    assert "NEW" in {p.code for p in selectors.active_policy().promotions}
    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_promotion_change", args=[promo.pk]), _form_data(percent="20"))
    assert r.status_code == 302 and Promotion.objects.get(pk=promo.pk).percent == 20 and _moved(before)
    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_promotion_delete", args=[promo.pk]), {"post": "yes"})
    assert r.status_code == 302 and not Promotion.objects.filter(pk=promo.pk).exists() and _moved(before)


def test_a_price_list_with_rows_saves_and_raises_the_version(admin_client, shop):
    before = selectors.policy_version()
    data = {"code": "summer", "name": "Summer", "is_active": "on", "priority": "0", "channels": ["website"],
            "store_group": "", "starts_at_0": "", "starts_at_1": "", "ends_at_0": "", "ends_at_1": "",
            "rows-TOTAL_FORMS": "2", "rows-INITIAL_FORMS": "0", "rows-MIN_NUM_FORMS": "0", "rows-MAX_NUM_FORMS": "1000",
            "rows-0-product": str(shop["shirt"].pk), "rows-0-price_vnd": "179000",
            "rows-1-product": str(shop["hat"].pk), "rows-1-price_vnd": "-1"}
    r = admin_client.post(reverse("admin:pricing_pricelist_add"), data)
    assert r.status_code == 200, "a negative price is refused"
    assert not PriceList.objects.exists() and selectors.policy_version() == before
    data["rows-1-price_vnd"] = "140000"
    r = admin_client.post(reverse("admin:pricing_pricelist_add"), data)
    assert r.status_code == 302
    pl = PriceList.objects.get(code="summer")
    assert dict(pl.rows.values_list("product__sku", "price_vnd")) == {"AO-THUN-M": 179_000, "NON-LA": 140_000}
    assert _moved(before)
    assert selectors.active_policy().price_lists[0].prices == {"AO-THUN-M": 179_000, "NON-LA": 140_000}


def test_the_same_product_twice_in_a_price_list_is_refused(admin_client, shop):
    data = {"code": "dup", "name": "Dup", "is_active": "on", "priority": "0", "store_group": "",
            "starts_at_0": "", "starts_at_1": "", "ends_at_0": "", "ends_at_1": "",
            "rows-TOTAL_FORMS": "2", "rows-INITIAL_FORMS": "0", "rows-MIN_NUM_FORMS": "0", "rows-MAX_NUM_FORMS": "1000",
            "rows-0-product": str(shop["shirt"].pk), "rows-0-price_vnd": "1",
            "rows-1-product": str(shop["shirt"].pk), "rows-1-price_vnd": "2"}
    r = admin_client.post(reverse("admin:pricing_pricelist_add"), data)
    assert r.status_code == 200 and not PriceList.objects.exists()


def test_store_groups_codes_fees_and_bulk_deletes_raise_the_version(admin_client, shop):
    StoreFactory(code="HCM-Q3-001", city="Ho Chi Minh City")
    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_storegroup_add"), {
        "code": "hcm", "name": "Hồ Chí Minh", "basis": "city", "stores": [shop["b"].pk],
        "fill_city": "Ho Chi Minh City"})
    assert r.status_code == 302
    group = StoreGroup.objects.get(code="hcm")
    assert set(group.stores.values_list("code", flat=True)) == {"HCM-Q1-001", "HCM-Q3-001", "HN-HK-001"}
    assert _moved(before)

    promo = _promotion(requires_code=True)
    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_code_add"), {
        "code": " welcome5 ", "promotion": promo.pk, "campaign": "", "member_phone": "0901 234 567",
        "max_uses": "1", "value_vnd": "", "expires_at_0": "", "expires_at_1": ""})
    assert r.status_code == 302
    code = Code.objects.get()
    assert (code.code, code.member_phone) == ("WELCOME5", "+84901234567") and _moved(before)
    Code.objects.filter(pk=code.pk).update(uses=1)
    r = admin_client.post(reverse("admin:pricing_code_change", args=[code.pk]), {
        "code": "WELCOME5", "promotion": promo.pk, "campaign": "", "member_phone": "", "max_uses": "0",
        "value_vnd": "0", "expires_at_0": "", "expires_at_1": ""})
    assert r.status_code == 200  # fewer uses allowed than used, and a voucher worth 0: refused, not a 500
    errors = r.context["adminform"].form.errors
    assert "max_uses" in errors and "value_vnd" in errors

    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_deliveryfeerule_add"), {
        "code": "hcm-5km", "city": "Ho Chi Minh City", "max_km": "5", "fee_vnd": "15000", "free_over_vnd": "500000",
        "free_tiers": ["gold"], "channels": ["website"], "is_active": "on"})
    assert r.status_code == 302
    fee = DeliveryFeeRule.objects.get()
    assert (fee.free_tiers, fee.channels) == (["gold"], ["website"]) and _moved(before)

    before = selectors.policy_version()
    r = admin_client.post(reverse("admin:pricing_deliveryfeerule_changelist"),
                          {"action": "delete_selected", "_selected_action": [fee.pk], "post": "yes"})
    assert r.status_code == 302 and not DeliveryFeeRule.objects.exists() and _moved(before)

    before = selectors.policy_version()
    other = _promotion(code="OTHER", is_active=True)
    r = admin_client.post(reverse("admin:pricing_promotion_changelist"),
                          {"action": "switch_off", "_selected_action": [other.pk]})
    assert r.status_code == 302 and not Promotion.objects.get(pk=other.pk).is_active and _moved(before)


# --- the price preview ---------------------------------------------------------------------------------------------


def _preview(client, url, **fields):
    params = {"preview-cart": "AO-THUN-M 2\nNON-LA 1", "preview-channel": "website", "preview-store": "",
              "preview-member_phone": "", "preview-codes": "", "preview-at": "", "preview-distance_km": ""}
    params.update({f"preview-{k}": v for k, v in fields.items()})
    page = client.get(url, params)
    assert page.status_code == 200
    return page


def test_the_preview_prices_a_cart_with_a_promotion_codes_and_a_fee(admin_client, shop):
    _promotion()
    code_promo = _promotion(code="WELCOME", name="Welcome", kind="amount_off", target="cart", skus=[],
                            percent=0, amount_vnd=20_000, requires_code=True)
    Code.objects.create(code="HELLO", promotion=code_promo)
    Code.objects.create(code="OLD", promotion=code_promo, expires_at=timezone.now() - timedelta(days=1))
    DeliveryFeeRule.objects.create(code="hcm", city="Ho Chi Minh City", max_km=10, fee_vnd=25_000)
    services.policy_changed()
    page = _preview(admin_client, reverse("admin:pricing_promotion_preview"),
                    codes="hello, old, nope", store="HCM-Q1-001", distance_km="3")
    result = page.context["preview"]
    priced = result.priced
    assert priced is not None, result.form.errors
    shirt = priced.line("AO-THUN-M")
    assert (shirt.unit_price_vnd, shirt.price_source) == (199_000, "base")
    assert {d.promotion: d.amount_vnd for d in shirt.discounts}["SHIRT10"] == 39_800
    assert priced.subtotal_vnd == 548_000
    assert priced.discount_vnd == 39_800 + 20_000
    assert priced.delivery_fee_vnd == 25_000 and priced.fee_rule == "hcm"
    assert priced.grand_total_vnd == 548_000 - 59_800 + 25_000
    codes = {c["code"]: c for c in result.codes}
    assert codes["HELLO"]["applied"] is True
    assert codes["OLD"]["applied"] is False and codes["OLD"]["reason"].startswith("code_expired")
    assert codes["NOPE"]["reason"].startswith("code_unknown")
    html = page.content.decode()
    assert 'id="preview-lines"' in html and "SHIRT10" in html and "488,200 ₫" in html  # total before the fee
    assert "513,200 ₫" in html  # to pay


def test_the_preview_refuses_a_bad_cart_without_failing(admin_client, shop):
    page = _preview(admin_client, reverse("admin:pricing_promotion_preview"), cart="NOPE 1")
    assert page.context["preview"].priced is None and "cart" in page.context["preview"].form.errors
    page = _preview(admin_client, reverse("admin:pricing_promotion_preview"), cart="AO-THUN-M 0",
                    member_phone="not a phone")
    errors = page.context["preview"].form.errors
    assert "cart" in errors and "member_phone" in errors


def test_a_promotion_page_previews_it_as_saved_even_switched_off(admin_client, shop):
    promo = _promotion(is_active=False)
    assert "SHIRT10" not in {p.code for p in selectors.active_policy().promotions}
    url = reverse("admin:pricing_promotion_change", args=[promo.pk])
    unbound = admin_client.get(url)
    assert unbound.context["preview"].form.initial["cart"] == "AO-THUN-M 1"
    page = _preview(admin_client, url, cart="AO-THUN-M 1")
    priced = page.context["preview"].priced
    assert [a.promotion for a in priced.applied] == ["SHIRT10"] and priced.total_vnd == 179_100
    # out of its channel: the page says why it does not apply
    Promotion.objects.filter(pk=promo.pk).update(channels=["store"])
    page = _preview(admin_client, url, cart="AO-THUN-M 1")
    assert page.context["preview"].priced.discount_vnd == 0
    assert "not for this channel" in page.context["preview"].highlight_reason
    assert 'id="preview-not-applied"' in page.content.decode()


def test_a_price_list_page_previews_its_prices(admin_client, shop):
    group = StoreGroup.objects.create(code="hn", name="Hà Nội")
    group.stores.set([shop["b"]])
    pl = PriceList.objects.create(code="hn-prices", name="Hà Nội prices", store_group=group, is_active=False)
    PriceListRow.objects.create(price_list=pl, product=shop["hat"], price_vnd=120_000)
    url = reverse("admin:pricing_pricelist_change", args=[pl.pk])
    page = _preview(admin_client, url, cart="NON-LA 1", store="HN-HK-001")
    line = page.context["preview"].priced.line("NON-LA")
    assert (line.base_price_vnd, line.unit_price_vnd, line.price_source) == (150_000, 120_000, "hn-prices")
    elsewhere = _preview(admin_client, url, cart="NON-LA 1", store="HCM-Q1-001").context["preview"].priced
    assert elsewhere.line("NON-LA").price_source == "base"


# --- the calendar and the results -----------------------------------------------------------------------------------


def test_the_calendar_shows_what_runs_day_by_day(admin_client, shop):
    monday = timezone.localdate() - timedelta(days=timezone.localdate().weekday())
    start = datetime.combine(monday, time(0), tzinfo=timezone.get_current_timezone())
    _promotion(code="WEEKEND", starts_at=start, ends_at=start + timedelta(days=14), weekdays=[5, 6],
               from_time=time(17), until_time=time(21), channels=["website"])
    _promotion(code="HALFDAY", starts_at=start + timedelta(days=1, hours=12), ends_at=start + timedelta(days=3))
    _promotion(code="LATER", starts_at=start + timedelta(weeks=5))
    PriceList.objects.create(code="always", name="Always")
    page = admin_client.get(reverse("admin:pricing_promotion_calendar"), {"start": monday.isoformat(), "weeks": "2"})
    assert page.status_code == 200
    cal = page.context["cal"]
    assert len(cal.days) == 14 and cal.days[0] == monday
    rows = {row.obj.code: row for row in cal.rows}
    assert set(rows) == {"WEEKEND", "HALFDAY", "always"}
    runs = lambda code: [i for i, c in enumerate(rows[code].cells) if "on" in c.split() or "part" in c.split()]  # noqa: E731
    assert runs("WEEKEND") == [5, 6, 12, 13]
    assert runs("HALFDAY") == [1, 2] and "part" in rows["HALFDAY"].cells[1]
    assert runs("always") == list(range(14))
    assert "17:00–21:00" in rows["WEEKEND"].hours and "website" in rows["WEEKEND"].scope
    html = page.content.decode()
    assert 'id="calendar"' in html and "WEEKEND" in html and "<script" not in html.split('id="calendar"')[1]
    later = admin_client.get(page.context["next_url"])
    assert later.status_code == 200 and later.context["cal"].days[0] == monday + timedelta(weeks=2)


def _applications(promo, shop):
    now = timezone.now()
    rows = [("order:1", "website", "", 19_900, 179_100, False), ("order:2", "website", "", 39_800, 358_200, False),
            ("pos:HCM-Q1-001:R1", "store", "HCM-Q1-001", 19_900, 179_100, False),
            ("order:3", "website", "", 19_900, 179_100, True)]
    PromotionApplication.objects.bulk_create([
        PromotionApplication(promotion=promo, reference=ref, channel=ch, store=st, discount_vnd=d, revenue_vnd=r,
                             cancelled=c, at=now)
        for ref, ch, st, d, r, c in rows
    ])


def test_results_per_promotion_with_charts_and_csv(admin_client, shop):
    promo = _promotion()
    _applications(promo, shop)
    listing = admin_client.get(reverse("admin:pricing_promotion_changelist"))
    assert "3 redemptions" in listing.content.decode()
    page = admin_client.get(reverse("admin:pricing_promotion_results", args=[promo.pk]))
    assert page.status_code == 200
    res = page.context["res"]
    assert (res.total.redemptions, res.total.discount, res.total.revenue, res.cancelled) == (3, 79_600, 716_400, 1)
    assert [(r.key, r.redemptions, r.discount) for r in res.by_channel] == [("website", 2, 59_700), ("store", 1, 19_900)]
    assert [(r.key, r.redemptions) for r in res.by_store] == [("online (no store)", 2), ("HCM-Q1-001", 1)]
    html = page.content.decode()
    assert html.count('<svg id="chart-') == 3 and 'id="chart-channels"' in html and "<script" not in html.split('id="results"')[1]
    assert admin_client.get(reverse("admin:pricing_promotion_change", args=[promo.pk])).context["results_url"]
    export = admin_client.get(reverse("admin:pricing_promotion_results_csv", args=[promo.pk]))
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0] == ["promotion", "by", "key", "redemptions", "discount_vnd", "revenue_vnd"]
    assert ["SHIRT10", "total", "", "3", "79600", "716400"] in rows
    assert ["SHIRT10", "channel", "store", "1", "19900", "179100"] in rows
    action = admin_client.post(reverse("admin:pricing_promotion_changelist"),
                               {"action": "export_results", "_selected_action": [promo.pk]})
    assert action["Content-Type"].startswith("text/csv") and "SHIRT10,total" in action.content.decode()


def test_pages_render_for_a_superuser(admin_client, shop):
    promo = _promotion()
    pl = PriceList.objects.create(code="pl", name="PL")
    for url in (reverse("admin:app_list", args=["pricing"]), reverse("admin:pricing_promotion_preview"),
                reverse("admin:pricing_promotion_calendar"), reverse("admin:pricing_promotion_changelist"),
                reverse("admin:pricing_promotion_add"), reverse("admin:pricing_promotion_change", args=[promo.pk]),
                reverse("admin:pricing_promotion_results", args=[promo.pk]), reverse("admin:pricing_pricelist_add"),
                reverse("admin:pricing_pricelist_change", args=[pl.pk]), reverse("admin:pricing_pricelistrow_changelist"),
                reverse("admin:pricing_storegroup_add"), reverse("admin:pricing_code_changelist"),
                reverse("admin:pricing_code_add"), reverse("admin:pricing_deliveryfeerule_add"),
                reverse("admin:pricing_priceexception_changelist"),
                reverse("admin:pricing_promotionapplication_changelist"), reverse("admin:pricing_codeuse_changelist")):
        assert admin_client.get(url).status_code == 200, url
    index = admin_client.get(reverse("admin:app_list", args=["pricing"])).content.decode()
    assert reverse("admin:pricing_promotion_preview") in index and reverse("admin:pricing_promotion_calendar") in index


# --- the price-exception queue --------------------------------------------------------------------------------------


def _exception(store, receipt, **fields) -> PriceException:
    values = {"store": store, "receipt_id": receipt, "sold_at": timezone.now(), "kind": "below_policy",
              "sku": "AO-THUN-M", "qty": 1, "expected_vnd": 199_000, "charged_vnd": 1_000, "difference_vnd": -198_000}
    values.update(fields)
    return PriceException.objects.create(**values)


def test_the_exception_queue_is_scoped_and_reviewed(client, shop):
    a, b = shop["a"], shop["b"]
    mine = _exception(a, "R-A1")
    _exception(a, "R-A0", status="accepted", reviewed_by="someone")
    theirs = _exception(b, "R-B1", kind="override", override_reason="damaged box", override_staff="S-7")
    url = reverse("admin:pricing_priceexception_changelist")

    hq = make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    client.force_login(hq)
    page = client.get(url)
    assert page.status_code == 200
    assert {e.receipt_id for e in page.context["cl"].result_list} == {"R-A1", "R-B1"}  # open ones by default
    assert {e.receipt_id for e in client.get(url, {"status": "all"}).context["cl"].result_list} == {
        "R-A1", "R-A0", "R-B1"}
    assert "damaged box" in page.content.decode() and "-198,000 ₫" in page.content.decode()

    staff = make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[a])
    client.force_login(staff)
    page = client.get(url)
    assert page.status_code == 200 and [e.receipt_id for e in page.context["cl"].result_list] == ["R-A1"]
    assert client.get(reverse("admin:pricing_priceexception_change", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("admin:pricing_priceexception_change", args=[mine.pk])).status_code == 200
    # store staff look, they do not review
    r = client.post(url, {"action": "accept", "_selected_action": [mine.pk]})
    assert PriceException.objects.get(pk=mine.pk).status == "open"
    assert r.status_code in (200, 302)

    regional = make_staff(username="minh.south", password=PASSWORD, role=REGIONAL_MANAGER, stores=[a])
    client.force_login(regional)
    r = client.post(url, {"action": "followed_up", "_selected_action": [mine.pk, theirs.pk]})
    assert r.status_code == 302
    mine.refresh_from_db(), theirs.refresh_from_db()
    assert (mine.status, mine.reviewed_by) == ("followed_up", "minh.south") and mine.reviewed_at is not None
    assert theirs.status == "open", "another store's exception is out of the regional manager's scope"

    client.force_login(hq)
    r = client.post(f"{url}?status=all", {"action": "accept", "_selected_action": [mine.pk, theirs.pk]}, follow=True)
    mine.refresh_from_db(), theirs.refresh_from_db()
    assert mine.status == "followed_up", "a reviewed exception is left as it was"
    assert (theirs.status, theirs.reviewed_by) == ("accepted", "hoa.hq")
    assert "1 was already reviewed" in r.content.decode()


def test_store_staff_see_promotions_read_only_and_no_results(client, shop):
    promo = _promotion()
    staff = make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[shop["a"]])
    client.force_login(staff)
    page = client.get(reverse("admin:pricing_promotion_change", args=[promo.pk]))
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert "results_url" not in page.context
    r = client.post(reverse("admin:pricing_promotion_change", args=[promo.pk]), _form_data(code="SHIRT10", percent="90"))
    assert r.status_code == 403 and Promotion.objects.get(pk=promo.pk).percent == 10
    assert client.get(reverse("admin:pricing_promotion_results", args=[promo.pk])).status_code == 403
    assert client.get(reverse("admin:pricing_promotion_calendar")).status_code == 200
    preview = _preview(client, reverse("admin:pricing_promotion_preview"), store="HN-HK-001")
    assert "store" in preview.context["preview"].form.errors, "only their stores are offered"
    assert _preview(client, reverse("admin:pricing_promotion_preview"), store="HCM-Q1-001").context["preview"].priced
    assert client.get(reverse("admin:pricing_pricelist_changelist")).status_code == 403


# --- codes ------------------------------------------------------------------------------------------------------------


def test_generate_codes_action_and_csv_export(admin_client, shop):
    promo = _promotion(requires_code=True, campaign="tet-2025")
    url = reverse("admin:pricing_promotion_changelist")
    form = admin_client.post(url, {"action": "generate_codes", "_selected_action": [promo.pk]})
    assert form.status_code == 200 and form.context["form"].initial["campaign"] == "tet-2025"
    bad = admin_client.post(url, {"action": "generate_codes", "_selected_action": [promo.pk], "apply": "1",
                                  "count": "0", "prefix": "tet 25"})
    assert bad.status_code == 200 and {"count", "prefix"} <= set(bad.context["form"].errors)
    assert not Code.objects.exists()
    before = selectors.policy_version()
    r = admin_client.post(url, {"action": "generate_codes", "_selected_action": [promo.pk], "apply": "1",
                                "count": "25", "prefix": "tet-", "max_uses": "2", "expires_at": "2030-02-15T23:59",
                                "campaign": ""})
    assert r.status_code == 302
    codes = list(Code.objects.filter(promotion=promo))
    assert len(codes) == 25 and _moved(before)
    assert all(c.code.startswith("TET-") and c.max_uses == 2 and c.campaign == "tet-2025" for c in codes)
    assert all(c.expires_at == datetime(2030, 2, 15, 23, 59, tzinfo=timezone.get_current_timezone()) for c in codes)
    Code.objects.create(code="OTHER1", promotion=promo, campaign="other")

    export = admin_client.get(reverse("admin:pricing_code_export"), {"campaign": "tet-2025"})
    assert export["Content-Disposition"] == 'attachment; filename="codes-tet-2025.csv"'
    rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert len(rows) == 25 and set(rows[0]) == {"code", "promotion", "campaign", "max_uses", "uses", "expires_at",
                                                "member"}
    assert {r["code"] for r in rows} == {c.code for c in codes}
    assert rows[0]["promotion"] == "SHIRT10" and rows[0]["max_uses"] == "2" and rows[0]["uses"] == "0"
    assert rows[0]["expires_at"].startswith("2030-02-15T23:59")
    assert admin_client.get(reverse("admin:pricing_code_export")).status_code == 403  # name a campaign

    some = [c.pk for c in codes[:3]]
    action = admin_client.post(reverse("admin:pricing_code_changelist"),
                               {"action": "export_csv", "_selected_action": some})
    assert len(list(csv.DictReader(io.StringIO(action.content.decode("utf-8-sig"))))) == 3
    listing = admin_client.get(reverse("admin:pricing_code_changelist"), {"campaign": "other"})
    assert [c.code for c in listing.context["cl"].result_list] == ["OTHER1"]
    assert admin_client.get(reverse("admin:pricing_code_changelist"), {"used": "up"}).status_code == 200


def test_generate_codes_needs_exactly_one_promotion(admin_client, shop):
    a, b = _promotion(), _promotion(code="B")
    r = admin_client.post(reverse("admin:pricing_promotion_changelist"),
                          {"action": "generate_codes", "_selected_action": [a.pk, b.pk]}, follow=True)
    assert "Select exactly one promotion" in r.content.decode() and not Code.objects.exists()


def test_the_generate_codes_command_writes_the_csv(shop, tmp_path):
    promo = _promotion(requires_code=True, campaign="summer")
    out = tmp_path / "codes.csv"
    before = selectors.policy_version()
    call_command("generate_codes", "--promotion", "SHIRT10", "--count", "40", "--prefix", "sum-", "--max-uses", "0",
                 "--expires", "2030-06-30", "--campaign", "summer-sms", "--csv", str(out), stdout=io.StringIO())
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 40 and len({r["code"] for r in rows}) == 40 and _moved(before)
    assert all(r["code"].startswith("SUM-") and r["campaign"] == "summer-sms" and r["max_uses"] == "" for r in rows)
    code = Code.objects.get(code=rows[0]["code"])
    assert code.promotion == promo and code.max_uses is None
    assert code.expires_at == datetime(2030, 7, 1, tzinfo=HCM)  # the last valid day, in the chain's zone
    with pytest.raises(Exception, match="no promotion"):
        call_command("generate_codes", "--promotion", "NOPE", "--count", "1", "--csv", str(out))
    with pytest.raises(Exception, match="between 1 and"):
        call_command("generate_codes", "--promotion", "SHIRT10", "--count", "0", "--csv", str(out))
    assert Code.objects.count() == 40


# --- roles ----------------------------------------------------------------------------------------------------------


def test_roles_hold_the_pricing_permissions(db):
    from inventory.staff.roles import ROLES

    assert {"pricing.view_promotion", "pricing.view_priceexception"} <= ROLES[STORE_STAFF]
    assert "pricing.change_promotion" not in ROLES[STORE_STAFF] | ROLES[REGIONAL_MANAGER]
    assert "pricing.change_priceexception" in ROLES[REGIONAL_MANAGER]
    for model in ("storegroup", "pricelist", "pricelistrow", "promotion", "code", "deliveryfeerule"):
        assert f"pricing.change_{model}" in ROLES[HEAD_OFFICE]
    existing = {f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")}
    assert {p for role in ROLES.values() for p in role if p.startswith("pricing.")} <= existing


def test_the_days_chart_is_a_time_line(admin_client, shop):
    promo = _promotion()
    now = timezone.now()
    for i, days_ago in enumerate((0, 3)):
        PromotionApplication.objects.create(promotion=promo, reference=f"order:{i}", channel="website",
                                            discount_vnd=19_900, revenue_vnd=179_100, at=now - timedelta(days=days_ago))
    html = admin_client.get(reverse("admin:pricing_promotion_results", args=[promo.pk])).content.decode()
    chart = html.split('id="chart-days"')[1].split("</svg>")[0]
    assert chart.count('class="bar"') == 4, "the days between without redemptions are columns of 0"
    assert len(admin_client.get(reverse("admin:pricing_promotion_results_csv", args=[promo.pk])).content.decode()
               .splitlines()) == 1 + 1 + 1 + 1 + 2  # header, total, a channel, a store, the two days with some


def test_a_category_promotion_page_starts_from_its_products_and_its_channels(admin_client, shop):
    promo = _promotion(code="HATS", target="category", skus=[], categories=["non"], channels=["app"])
    page = admin_client.get(reverse("admin:pricing_promotion_change", args=[promo.pk]))
    form = page.context["preview"].form
    assert form.initial == {"cart": "NON-LA 1", "channel": "app"}
    assert "app" in dict(form.fields["channel"].choices)  # named by the promotion, though no sales channel yet
    priced = _preview(admin_client, reverse("admin:pricing_promotion_change", args=[promo.pk]), cart="NON-LA 1",
                      channel="app").context["preview"].priced
    assert priced.total_vnd == 135_000


def test_the_generate_codes_command_writes_to_standard_output(shop):
    _promotion(requires_code=True)
    out, err = io.StringIO(), io.StringIO()
    call_command("generate_codes", "--promotion", "SHIRT10", "--count", "3", "--csv", "-", stdout=out, stderr=err)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 3 and rows[0]["max_uses"] == "1" and "3 codes for SHIRT10" in err.getvalue()
