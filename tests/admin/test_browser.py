"""The admin in a real browser: Debian's Chromium, headless, driven by Playwright against the live test server.

A store manager logs in, sees only their store, moves a pickup order from assigned to ready for pickup in the store
queue, and cannot open another store's fulfillment by its URL; head office sees every store and the network board,
and re-routes an order on its routing page; store staff import a delivery note with the admin in Vietnamese.
Screenshots of the key screens go to tests/artifacts/ (ignored by git). Nothing is downloaded: the browser is the system's."""

import os
from pathlib import Path

import pytest

from inventory.models import Stock
from inventory.staff.roles import HEAD_OFFICE, STORE_STAFF, make_staff
from orders.models import Fulfillment
from tests.admin.conftest import NEAR_A, PASSWORD, _order
from tests.conftest import put_stock
from tests.factories import StoreFactory

# Playwright's sync API runs an event loop in this thread; Django's async-safety check would then refuse the ORM.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path(os.environ.get("O2O_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's `chromium` package (add it to .ci/run) to run the "
                    "browser tests; they never download a browser.", pytrace=False)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


def _log_in(browser, live_server, username: str, *, locale: str = "en-GB"):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale=locale)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert "/admin/login/" not in page.url, f"{username} could not log in"
    return page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_store_manager_runs_their_queue_and_head_office_sees_all(browser, live_server, two_stores):
    a, b = two_stores["a"], two_stores["b"]
    make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[a])
    make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    mine, theirs = two_stores["day_a"]["pickup_f"], two_stores["day_b"]["pickup_f"]

    page = _log_in(browser, live_server, "lan.q1")
    page.goto(f"{live_server.url}/admin/orders/fulfillment/")
    listing = page.inner_text("#result_list")
    assert mine.order.number in listing and a.code in listing
    assert theirs.order.number not in listing and b.code not in listing
    _shot(page, "01-store-manager-fulfillments")

    page.goto(f"{live_server.url}/admin/orders/fulfillment/queue/")
    row = f"#store-queue tr[data-fulfillment='{mine.pk}']"
    assert page.locator(f"#store-queue tr[data-fulfillment='{theirs.pk}']").count() == 0
    assert page.locator("#queue-store option").all_inner_texts() == [f"{a.code} {a.name}"]
    _shot(page, "02-store-queue-assigned")
    for button, status in (("Start picking", "Picking"), ("Packed", "Packed"), ("Ready for pickup", "Ready for pickup")):
        page.locator(row).get_by_role("button", name=button, exact=True).click()
        page.wait_for_load_state("load")
        assert page.locator(row).locator("td.status").inner_text() == status
    assert "Ready for pickup" in page.inner_text("ul.messagelist")
    _shot(page, "03-store-queue-ready-for-pickup")
    assert Fulfillment.objects.get(pk=mine.pk).status == "ready_for_pickup"

    response = page.goto(f"{live_server.url}/admin/orders/fulfillment/{theirs.pk}/change/")
    assert response.status == 404
    _shot(page, "04-other-store-fulfillment-404")
    assert Fulfillment.objects.get(pk=theirs.pk).status == "assigned"
    page.context.close()

    hq = _log_in(browser, live_server, "hoa.hq")
    hq.goto(f"{live_server.url}/admin/orders/fulfillment/")
    listing = hq.inner_text("#result_list")
    assert a.code in listing and b.code in listing and theirs.order.number in listing
    _shot(hq, "05-head-office-fulfillments")
    assert hq.goto(f"{live_server.url}/admin/orders/fulfillment/{theirs.pk}/change/").status == 200
    hq.goto(f"{live_server.url}/admin/orders/order/board/")
    assert hq.locator("#network-map circle.store").count() >= 2
    assert hq.locator("#network-map circle.order").count() == 4
    assert hq.locator("#tile-on-time").is_visible() and hq.locator("#orders-per-hour rect.bar").count() == 24
    _shot(hq, "06-head-office-network-board")
    hq.context.close()


def test_head_office_reroutes_and_a_store_imports_a_delivery_note_in_vietnamese(
    browser, live_server, two_stores, channel, tmp_path
):
    """Head office re-routes a delivery order away from its store with a reason on the order's routing page; the
    store's staff import a delivery note from a CSV (preview, then confirm) with the admin in Vietnamese."""
    a, shirt = two_stores["a"], two_stores["shirt"]
    other = StoreFactory(code="HCM-Q3-001", name="Q3 Võ Văn Tần", city="Ho Chi Minh City", lat=10.7790, lon=106.6900)
    put_stock(other, shirt, 4)
    order = _order(channel, "delivery", near=NEAR_A)
    assert order.fulfillments.get().store_id == a.pk
    make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)
    make_staff(username="lan.q1", password=PASSWORD, role=STORE_STAFF, stores=[a])

    hq = _log_in(browser, live_server, "hoa.hq")
    hq.goto(f"{live_server.url}/admin/orders/order/{order.pk}/routing/")
    assert "★" in hq.inner_text("#content-main")
    hq.fill("textarea[name=reason]", "Q1 is short of pickers this morning")
    hq.check("input[name=avoid_current]")
    _shot(hq, "07-routing-page-before-reroute")
    hq.get_by_role("button", name="Re-route this order").or_(hq.locator("input[value='Re-route this order']")).click()
    hq.wait_for_load_state("load")
    assert f"now served by {other.code}" in hq.inner_text("ul.messagelist")
    _shot(hq, "08-routing-page-after-reroute")
    live = [f for f in order.fulfillments.all() if f.status != "cancelled"]
    assert [f.store_id for f in live] == [other.pk]
    hq.context.close()

    note = tmp_path / "delivery-note.csv"
    note.write_text(f"store,receipt_id,sku,qty,source\n{a.code},DN-BROWSER-1,{shirt.sku},12,DC Bình Dương\n",
                    encoding="utf-8")
    before = Stock.objects.get(store=a, product=shirt).on_hand
    staff = _log_in(browser, live_server, "lan.q1", locale="vi-VN")
    staff.goto(f"{live_server.url}/admin/inventory/stock/")
    staff.get_by_role("link", name="Nhập phiếu nhập hàng").or_(staff.locator("a[href*='goods_receipts']")).first.click()
    staff.set_input_files("input[name=import_file]", str(note))
    staff.locator("input[type=submit]").last.click()
    staff.wait_for_load_state("load")
    assert "DN-BROWSER-1" in staff.inner_text("#content-main")
    _shot(staff, "09-import-preview-vi")
    staff.locator("input[name=confirm]").click()
    staff.wait_for_load_state("load")
    _shot(staff, "10-import-done-vi")
    assert Stock.objects.get(store=a, product=shirt).on_hand == before + 12
    staff.goto(f"{live_server.url}/admin/orders/fulfillment/queue/")
    assert "Hàng đợi cửa hàng" in staff.inner_text("h1")
    _shot(staff, "11-store-queue-vi")
    staff.context.close()
