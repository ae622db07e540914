"""The admin in a real browser: Debian's Chromium, headless, driven by Playwright against the live test server.

A store manager logs in, sees only their store, moves a pickup order from assigned to ready for pickup in the store
queue, and cannot open another store's fulfillment by its URL; head office sees every store. Screenshots of the key
screens go to tests/artifacts/ (ignored by git). Nothing is downloaded: the browser is the system's."""

import os
from pathlib import Path

import pytest

from o2o.staff.roles import HEAD_OFFICE, STORE_STAFF, make_staff
from orders.models import Fulfillment
from tests.admin.conftest import PASSWORD

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
