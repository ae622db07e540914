"""The pricing admin in a real browser: Debian's Chromium, headless, driven by Playwright against the live test server
(the pattern of tests/admin/test_browser.py; nothing is downloaded, the browser is the system's).

Head office opens a promotion, is refused a percent over 100 on its field, previews a cart on the promotion's page,
prices a cart with a code and a delivery fee on the standalone preview, and looks at the calendar and the results;
the charts are inline SVG. Screenshots go to /tmp/pricing-admin-*.png."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from inventory.staff.roles import HEAD_OFFICE, make_staff
from orders.pricing import selectors, services
from orders.pricing.models import Code, DeliveryFeeRule, Promotion, PromotionApplication
from tests.factories import ProductFactory, SalesChannelFactory, StoreFactory

# Playwright's sync API runs an event loop in this thread; Django's async-safety check would then refuse the ORM.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path(os.environ.get("O2O_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("O2O_PRICING_SHOTS", "/tmp"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PASSWORD = "a-long-test-passphrase-42"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's `chromium` package (add it to .ci/run) to run the "
                    "browser tests; they never download a browser.", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def priced_shop(transactional_db):
    selectors.forget_cached_policy()
    SalesChannelFactory()
    StoreFactory(code="HCM-Q1-001", name="Q1 Lê Lợi", city="Ho Chi Minh City")
    ProductFactory(sku="AO-THUN-M", name="Áo thun M", price_vnd=199_000, category="ao-thun")
    ProductFactory(sku="NON-LA", name="Nón lá", price_vnd=150_000, category="non")
    now = timezone.now()
    shirts = Promotion.objects.create(
        code="SHIRT10", name="10% off shirts", kind="percent_off", target="sku", skus=["AO-THUN-M"], percent=10,
        channels=["website", "store"], starts_at=now - timedelta(days=2), ends_at=now + timedelta(days=10),
        weekdays=[0, 1, 2, 3, 4, 5, 6], campaign="summer",
    )
    welcome = Promotion.objects.create(code="WELCOME", name="Welcome 20,000", kind="amount_off", target="cart",
                                       amount_vnd=20_000, requires_code=True)
    Code.objects.create(code="HELLO", promotion=welcome)
    DeliveryFeeRule.objects.create(code="hcm-10km", city="Ho Chi Minh City", max_km=10, fee_vnd=25_000)
    for i, (channel, store, discount) in enumerate((("website", "", 19_900), ("website", "", 39_800),
                                                    ("store", "HCM-Q1-001", 19_900))):
        PromotionApplication.objects.create(promotion=shirts, reference=f"ref-{i}", channel=channel, store=store,
                                            discount_vnd=discount, revenue_vnd=discount * 9, at=now - timedelta(days=i))
    services.policy_changed()
    make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    yield shirts
    selectors.forget_cached_policy()


def _log_in(browser, live_server, username: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert "/admin/login/" not in page.url, f"{username} could not log in"
    return page


def _shot(page, name: str) -> Path:
    path = SHOTS / f"pricing-admin-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_head_office_edits_previews_and_reads_a_promotion(browser, live_server, priced_shop):
    promo = priced_shop
    page = _log_in(browser, live_server, "hoa.hq")

    page.goto(f"{live_server.url}/admin/pricing/promotion/{promo.pk}/change/")
    assert page.locator("input[name=weekdays][value='5']").is_checked()
    assert page.locator("input[name=channels][value='store']").is_checked()
    assert page.input_value("input[name=skus]") == "AO-THUN-M"
    assert page.locator("#price-preview").is_visible()
    _shot(page, "01-promotion")

    page.fill("input[name=percent]", "150")
    page.locator("input[name=_continue]").click()
    page.wait_for_load_state("load")
    assert "100" in page.locator(".field-percent .errorlist").inner_text()
    _shot(page, "02-promotion-refused")
    assert Promotion.objects.get(pk=promo.pk).percent == 10

    page.goto(f"{live_server.url}/admin/pricing/promotion/{promo.pk}/change/")
    page.fill("textarea[name=preview-cart]", "AO-THUN-M 2")
    page.locator("#preview-form input[type=submit]").click()
    page.wait_for_selector("#preview-lines")
    assert page.locator("#preview-promotions tr[data-promotion='SHIRT10']").count() == 1
    assert page.inner_text("#preview-total") == "358,200 ₫"
    _shot(page, "03-promotion-preview")

    page.goto(f"{live_server.url}/admin/pricing/")
    page.get_by_role("link", name="Price preview").first.click()
    page.fill("textarea[name=preview-cart]", "AO-THUN-M 2\nNON-LA 1")
    page.select_option("select[name=preview-store]", "HCM-Q1-001")
    page.fill("input[name=preview-codes]", "hello, nope")
    page.fill("input[name=preview-distance_km]", "3")
    page.locator("#preview-form input[type=submit]").click()
    page.wait_for_selector("#preview-lines")
    assert page.inner_text("#preview-fee") == "25,000 ₫"
    assert page.inner_text("#preview-grand-total") == f"{548_000 - 39_800 - 20_000 + 25_000:,} ₫"
    assert "code_unknown" in page.inner_text("#preview-codes tr[data-code='NOPE']")
    _shot(page, "04-price-preview")

    page.goto(f"{live_server.url}/admin/pricing/promotion/calendar/")
    row = page.locator("#calendar tr[data-code='SHIRT10']")
    assert row.locator("td.day.on").count() + row.locator("td.day.part").count() >= 10
    _shot(page, "05-calendar")

    page.goto(f"{live_server.url}/admin/pricing/promotion/{promo.pk}/change/")
    page.locator("#results-link").click()
    page.wait_for_selector("#chart-channels")
    assert page.inner_text("#tile-redemptions .n") == "3"
    assert page.locator("#chart-channels rect.bar").count() == 2
    assert page.locator("#chart-days rect.bar").count() == 3
    _shot(page, "06-results")
    page.context.close()


def test_a_store_sees_its_price_exceptions_and_its_regional_manager_follows_one_up(browser, live_server, priced_shop):
    from inventory.models import Store
    from inventory.staff.roles import REGIONAL_MANAGER, STORE_STAFF
    from orders.pricing.models import PriceException

    mine = Store.objects.get(code="HCM-Q1-001")
    theirs = StoreFactory(code="HN-HK-001", name="Hoàn Kiếm", city="Hà Nội", lat=21.0245, lon=105.855)
    for store, receipt in ((mine, "R-0042"), (theirs, "R-0007")):
        PriceException.objects.create(store=store, receipt_id=receipt, sold_at=timezone.now(), kind="override",
                                      sku="AO-THUN-M", qty=1, expected_vnd=179_100, charged_vnd=150_000,
                                      difference_vnd=-29_100, override_reason="customer complaint",
                                      override_staff="NV-12")
    make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[mine])
    make_staff(username="minh.south", password=PASSWORD, role=REGIONAL_MANAGER, stores=[mine])

    page = _log_in(browser, live_server, "lan.q1")
    page.goto(f"{live_server.url}/admin/pricing/priceexception/")
    listing = page.inner_text("#result_list")
    assert "R-0042" in listing and "R-0007" not in listing and "-29,100 ₫" in listing
    assert page.locator("select[name=action] option[value=accept]").count() == 0  # store staff look only
    _shot(page, "07-exceptions-store")
    page.context.close()

    page = _log_in(browser, live_server, "minh.south")
    page.goto(f"{live_server.url}/admin/pricing/priceexception/")
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "followed_up")
    page.locator("button[name=index]").click()
    page.wait_for_load_state("load")
    assert "1 exception marked “Followed up with the store”" in page.inner_text("ul.messagelist")
    _shot(page, "08-exceptions-followed-up")
    done = PriceException.objects.get(receipt_id="R-0042")
    assert (done.status, done.reviewed_by) == ("followed_up", "minh.south")
    assert PriceException.objects.get(receipt_id="R-0007").status == "open"
    page.context.close()
