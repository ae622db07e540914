#!/usr/bin/env python3
"""CI: walk the running SQLite demo end to end over HTTP, as its users would, then run both audits on its file.

    .venv/bin/python .ci/demo_walkthrough.py --base-url http://127.0.0.1:18765 \
        --credentials .demo/credentials-sqlite.json --database-url sqlite:////tmp/x/demo.sqlite3

On SQLite every hand-written PostgreSQL fast path is replaced by its ORM twin (o2o/fast_paths.py); the test suite
runs on PostgreSQL, so this walk is the twins' end-to-end proof: placement with a points tender, the fulfilment
state machine, a pickup handover, a till sale with points earned and spent, returns of a receipt and of a web order
at another store, an offline till sale that takes the last unit a delivery order held (recorded in full; the order
re-routed at once with the receipt as the cause), and `inventory_audit` / `loyalty_audit` on what all that wrote.

It also proves the one price policy's "done means" (issue #19) as its users meet it:
  - a promotion created in the admin's add form shows the same discounted price in the website's quote
    (POST /api/v1/pricing/quote/) and in the selling store's till price call (POST /api/v1/pos/prices/);
  - the offline tills' snapshot (GET /api/v1/pos/pricing/snapshot/, signed with the till's key) moved to a higher
    version with it, `?since=` that version answers `changed: false`, and switching the promotion off moves it again;
  - a voucher bought with points on the website (the points leave the balance) is spent at another store's till:
    the receipt charges what that till's price call gives with the code, is applied with no price exception, and
    the code is then used up everywhere (the website's quote: 422 code_used_up);
  - a till sale far below the policy's price is applied all the same and waits in the price-exception queue, where
    the store's manager finds it in the admin.

Who does what, as in production (the logins and the website key are the ones `manage.py demo` keeps in the
credentials file):
  the website      its sales-channel key: stores near, promise, points hold, order, price quotes, vouchers
  operations       the superuser `admin` in the Django admin: issues a POS key for each of the two stores' tills
                   (Store (POS) API keys > Add; the key is shown once), over HTTP like everything else; creates a
                   promotion (Promotions > Add) and switches it off (the list's action)
  store staff      `manager.q1` (scoped to HCM-Q1-001) in the admin's store queue: picking, packed, ready for pickup;
                   and in its price-exception queue
  the stores' POS  HCM-Q1-001 hands the pickup over, sells at its till, prices carts, fetches its snapshot;
                   HCM-Q3-001 takes both returns and the voucher; either books a delivery (a goods receipt) first
                   when an earlier walk on the same database sold what this one needs

Each step prints one line with its key figures. The first failure prints the request, the status and the answer's
body and exits 1 (2 for bad arguments or an unreadable credentials file). Every idempotency key and receipt id
carries a run id (so does the promotion's code), so running the walk again on the same database is a new walk,
not a replay.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from html import unescape
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent

SELLING_STORE = "HCM-Q1-001"  # the store `manager.q1` works at (the demo's store-staff login)
RETURNS_STORE = "HCM-Q3-001"  # another store (District 3): what was bought at Q1's till or online comes back here
PHONE = "0901234567"  # the demo's loyalty member (`manage.py loyalty_demo_member`: 2,000 welcome points)
ORDER_SKU, ORDER_QTY, ORDER_PRICE = "AT-COT-TRG-M", 2, 199_000  # picked up at Q1; one unit comes back at Q3
TILL_SKU, TILL_PRICE = "AK-GIO-CAM-L", 499_000  # sold at Q1's till (its price there), returned at Q3's
ORDER_POINTS = 300  # points held at checkout and paid with the order (30,000 ₫)
TILL_POINTS = 100  # points tendered at the till (10,000 ₫)
RESTOCK_QTY = 10  # a delivery when a store has too few of a SKU to sell (an earlier walk sold them)
PROMO_CODE, PROMO_SKU, PROMO_QTY, PROMO_PERCENT = "walk-{run}-15pct", "TUI-TOTE-BE-OS", 2, 15  # made in the admin
PROMO_GROUP = "TP. Hồ Chí Minh"  # the demo's store group of the HCMC stores (load_demo_pricing), the promotion's scope
VOUCHER_POINTS, VOUCHER_SKU = 100, "TL-DA-DEN-105"  # a voucher bought online, spent at the returns store's till
LOW_SKU, LOW_PRICE = "AT-COT-DEN-M", 1_000  # a 199,000 ₫ T-shirt sold for 1,000 ₫ at the selling store's till
TIMEOUT = 30  # seconds per request: the demo is Django's runserver on a busy CI machine


class WalkFailed(Exception):
    """A check failed; the message says what was expected, the request and what the server answered."""


def describe(response: requests.Response) -> str:
    """The request and the answer, for a failure message: JSON as sent, an admin page as its text."""
    request = response.request
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    body = re.sub(r"(password=)[^&]*", r"\1***", body or "")  # the admin login form: no password in CI logs
    if len(body) > 800:
        body = body[:800] + "…"
    text = response.text
    if "html" in response.headers.get("Content-Type", ""):
        text = " ".join(unescape(re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", text, flags=re.S)).split())
    text = text if len(text) <= 3000 else text[:3000] + "…"
    return (f"\n  request:  {request.method} {request.url}" + (f"\n            {body}" if body else "")
            + f"\n  answer:   {response.status_code} {text}")


def check(condition: bool, message: str, response: requests.Response | None = None) -> None:
    if not condition:
        raise WalkFailed(message + (describe(response) if response is not None else ""))


def expect(response: requests.Response, status: int, what: str) -> dict:
    """The answer's JSON body, after checking its status (any other status fails the walk with the body)."""
    check(response.status_code == status, f"{what}: expected HTTP {status}, got {response.status_code}", response)
    try:
        return response.json()
    except ValueError:
        raise WalkFailed(f"{what}: the answer is not JSON" + describe(response)) from None


def points_for(amount_paid_vnd: int, multiplier: str, vnd_per_point: int = 10_000) -> int:
    """The earn rule as the README states it (1 point per 10,000 ₫ paid with money, times the tier's multiplier,
    rounded down), written here independently of loyalty/services/earning.py so the walk can catch a wrong figure."""
    return int((Decimal(amount_paid_vnd) * Decimal(multiplier) / vnd_per_point).to_integral_value(ROUND_FLOOR))


def api_session(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {key}"
    return session


@dataclass
class Walk:
    base: str
    credentials: dict
    database_url: str
    run: str = field(default_factory=lambda: datetime.now(UTC).strftime("%H%M%S") + os.urandom(2).hex())
    web: requests.Session | None = None  # the website (sales-channel key)
    q1: requests.Session | None = None  # the selling store's till
    q3: requests.Session | None = None  # the returning store's till
    state: dict = field(default_factory=dict)  # figures carried from one step to the next

    def url(self, path: str) -> str:
        return self.base + path

    # --- helpers that read what a user of the API would read -----------------------------------------------------

    def stock(self, till: requests.Session, sku: str) -> dict:
        """This store's row for a SKU, as its till sees it (POS stock look-up)."""
        return expect(till.get(self.url(f"/api/v1/pos/stock/{sku}/"), timeout=TIMEOUT), 200, f"stock of {sku}")

    def balance(self) -> dict:
        return expect(self.web.get(self.url(f"/api/v1/loyalty/members/{PHONE}/balance/"), timeout=TIMEOUT), 200,
                      "member balance")

    def multiplier(self) -> str:
        member = expect(self.web.get(self.url(f"/api/v1/loyalty/members/{PHONE}/"), timeout=TIMEOUT), 200, "member")
        return member["tier"]["multiplier"]

    def order(self, number: str) -> dict:
        return expect(self.web.get(self.url(f"/api/v1/orders/{number}/"), timeout=TIMEOUT), 200, f"order {number}")

    def deliver(self, till: requests.Session, store: str, sku: str, tag: str) -> int:
        """The store books a delivery of RESTOCK_QTY units at its till (a goods receipt): what a walk sells again on
        the same demo database (or a store that started with none) is there to sell. Returns the units."""
        r = till.post(self.url("/api/v1/pos/goods-receipts/"), timeout=TIMEOUT, json={
            "receipt_id": f"WALK-{self.run}-{tag}", "source": "DC (CI walk)", "lines": [{"sku": sku, "qty": RESTOCK_QTY}]})
        expect(r, 201, f"a delivery of {RESTOCK_QTY} {sku} at {store}")
        return RESTOCK_QTY

    def admin_login(self, username: str, password_field: str) -> requests.Session:
        """A browser's session in the Django admin: the login form with its CSRF token (a cookie and a field)."""
        admin = requests.Session()
        login = admin.get(self.url("/admin/login/?next=/admin/"), timeout=TIMEOUT)
        check(login.status_code == 200 and "csrftoken" in admin.cookies, "the admin login page", login)
        r = admin.post(self.url("/admin/login/?next=/admin/"), timeout=TIMEOUT, allow_redirects=False,
                       headers={"Referer": login.url},
                       data={"username": username, "password": self.credentials[password_field],
                             "csrfmiddlewaretoken": admin.cookies["csrftoken"], "next": "/admin/"})
        check(r.status_code == 302, f"log in as {username} (a 200 is the login form again: wrong password?)", r)
        return admin

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        """A management command on the demo's own database file, as an operator would run it."""
        env = {**os.environ, "DATABASE_URL": self.database_url}
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    # --- the steps ---------------------------------------------------------------------------------------------------

    def server_and_schema(self) -> str:
        """The server answers and its OpenAPI schema still has every operation this walk uses: a renamed endpoint
        fails here with its name rather than as a 404 halfway through."""
        schema = expect(requests.get(self.url("/api/schema/?format=json"), timeout=TIMEOUT), 200, "OpenAPI schema")
        used = ["/api/v1/stores/", "/api/v1/promises/", "/api/v1/orders/", "/api/v1/orders/{number}/",
                "/api/v1/loyalty/redemptions/", "/api/v1/loyalty/members/{phone}/balance/",
                "/api/v1/pos/pickups/{code}/", "/api/v1/pos/pickups/{code}/handover/", "/api/v1/pos/sales/",
                "/api/v1/pos/stock/{sku}/", "/api/v1/pos/returns/", "/api/v1/pos/goods-receipts/",
                "/api/v1/pricing/quote/", "/api/v1/pricing/vouchers/", "/api/v1/pos/prices/",
                "/api/v1/pos/pricing/snapshot/"]
        missing = [p for p in used if p not in schema.get("paths", {})]
        check(not missing, f"the OpenAPI schema lacks {missing}")
        for name in ("website_api_key", "admin_password", "manager.q1_password"):
            check(bool(self.credentials.get(name)), f"the credentials file has no {name!r}")
        self.web = api_session(self.credentials["website_api_key"])
        return f"{len(schema['paths'])} paths in /api/schema/, the {len(used)} the walk uses among them"

    def store_keys(self) -> str:
        """A POS key for each store's till, issued by the superuser in the admin (the same StoreApiKey that
        `manage.py create_store_key` makes, without starting a second Django process beside the server): find the
        store with the form's autocomplete, save the form, read the key from the one message that shows it."""
        admin = self.admin_login("admin", "admin_password")
        add = self.url("/admin/pos/storeapikey/add/")
        for attr, code in (("q1", SELLING_STORE), ("q3", RETURNS_STORE)):
            r = admin.get(self.url("/admin/autocomplete/"), timeout=TIMEOUT, params={
                "app_label": "pos", "model_name": "storeapikey", "field_name": "store", "term": code})
            found = [s["id"] for s in expect(r, 200, f"store autocomplete for {code}")["results"]
                     if s["text"].split()[0] == code]
            check(len(found) == 1, f"the admin finds store {code}", r)
            r = admin.post(add, timeout=TIMEOUT, headers={"Referer": add},
                           data={"csrfmiddlewaretoken": admin.cookies["csrftoken"], "name": f"ci-walk-{self.run}",
                                 "store": found[0], "expiry_date_0": "", "expiry_date_1": "", "_save": "Save"})
            key = re.search(r"The API key for \S+ is: ([A-Za-z0-9]+\.[A-Za-z0-9]+)", unescape(r.text))
            check(r.status_code == 200 and key is not None, f"a POS key for {code} shown once after saving", r)
            setattr(self, attr, api_session(key.group(1)))
        return f"admin issued POS keys for {SELLING_STORE} and {RETURNS_STORE}"

    def stores_near(self) -> str:
        """The website's first question: pickup stores near Bến Thành market, nearest first (the old CI check)."""
        body = expect(self.web.get(self.url("/api/v1/stores/"), timeout=TIMEOUT,
                                   params={"address": "Chợ Bến Thành, Quận 1", "service": "pickup", "limit": 5}),
                      200, "stores near Bến Thành")
        codes = [s["code"] for s in body["stores"]]
        check(SELLING_STORE in codes, f"{SELLING_STORE} should be among the nearest pickup stores, got {codes}")
        return f"nearest pickup stores: {', '.join(codes)}"

    def promise(self) -> str:
        """The checkout's quote for picking the cart up at the selling store. An earlier walk's shop floor step sold
        that store's shelf empty: then the store books a delivery at its till first (a goods receipt), as it would."""
        before, delivered = self.stock(self.q1, ORDER_SKU), 0
        if before["available_online"] < ORDER_QTY:
            delivered = self.deliver(self.q1, SELLING_STORE, ORDER_SKU, "DC")
            before = self.stock(self.q1, ORDER_SKU)
        check(before["available_online"] >= ORDER_QTY,
              f"{SELLING_STORE} has only {before['available_online']} {ORDER_SKU} online; the walk needs {ORDER_QTY}")
        r = self.web.post(self.url("/api/v1/promises/"), timeout=TIMEOUT,
                          json={"pickup_store": SELLING_STORE, "lines": [{"sku": ORDER_SKU, "qty": ORDER_QTY}]})
        body = expect(r, 201, "promise")
        option = next((o for o in body["options"] if o["id"] == f"pickup:{SELLING_STORE}"), None)
        check(option is not None and option["method"] == "pickup", f"no pickup option at {SELLING_STORE}", r)
        check([(s["store"], s["lines"]) for s in option["shipments"]]
              == [(SELLING_STORE, [{"sku": ORDER_SKU, "qty": ORDER_QTY}])], "the option should ship the cart from "
              f"{SELLING_STORE} alone", r)
        self.state.update(promise=body["id"], option=option["id"], stock_before_order=before)
        restocked = f" (after a delivery of {delivered} {ORDER_SKU})" if delivered else ""
        return f"promise {body['id'][:8]}…: {option['id']}, ready by {option['window_end']}{restocked}"

    def points_hold(self) -> str:
        """Points as an online tender: the website holds them first, the order captures the hold."""
        before = self.balance()
        check(before["available"] >= ORDER_POINTS + TILL_POINTS,
              f"the demo member has {before['available']} points; the walk spends {ORDER_POINTS + TILL_POINTS}")
        r = self.web.post(self.url("/api/v1/loyalty/redemptions/"), timeout=TIMEOUT,
                          headers={"Idempotency-Key": f"walk-{self.run}-hold"},
                          json={"phone": PHONE, "points": ORDER_POINTS, "reference": f"walk-{self.run}"})
        hold = expect(r, 201, "points hold")
        check(hold["status"] == "held" and hold["points"] == ORDER_POINTS, "the hold should be held", r)
        after = self.balance()
        expected = (before["available"] - ORDER_POINTS, before["held"] + ORDER_POINTS)
        check((after["available"], after["held"]) == expected,
              f"holding {ORDER_POINTS} points: available/held {before['available']}/{before['held']} -> "
              f"{after['available']}/{after['held']}")
        self.state.update(hold=hold["id"], balance_at_start=before)
        return f"hold #{hold['id']}: {ORDER_POINTS} points; available {before['available']} -> {after['available']}"

    def place_order(self) -> str:
        """Place the pickup order from the promise, paying part with the held points; the replay (same key, same
        body) must give the same order back and write nothing."""
        body = {"method": "pickup", "promise": self.state["promise"], "option": self.state["option"],
                "pickup_store": SELLING_STORE, "payment_state": "paid",
                "customer": {"name": "Nguyễn Văn An", "phone": PHONE},
                "lines": [{"sku": ORDER_SKU, "qty": ORDER_QTY}], "loyalty": {"hold_id": self.state["hold"]}}
        headers = {"Idempotency-Key": f"walk-{self.run}-order"}
        r = self.web.post(self.url("/api/v1/orders/"), json=body, headers=headers, timeout=TIMEOUT)
        order = expect(r, 201, "order placement")
        check(order["status"] == "open" and order["method"] == "pickup", "a placed order is open, for pickup", r)
        # total_vnd is what the order costs; the points pay part of it, money the rest (orders/loyalty_tender.py).
        check(order["points_redeemed"] == ORDER_POINTS and order["points_tender_vnd"] == ORDER_POINTS * 100
              and order["total_vnd"] == order["subtotal_vnd"] == ORDER_QTY * ORDER_PRICE,
              f"{ORDER_QTY} × {ORDER_PRICE:,} ₫, of which {ORDER_POINTS} points pay {ORDER_POINTS * 100:,} ₫", r)
        check(len(order["fulfillments"]) == 1, f"one fulfillment (one store, {SELLING_STORE})", r)
        f = order["fulfillments"][0]
        check(f["store"]["code"] == SELLING_STORE and f["status"] == "assigned", f"assigned to {SELLING_STORE}", r)
        check(bool(f["pickup"] and f["pickup"]["code"] and f["pickup"]["is_live"]), "a live pickup code", r)
        replay = self.web.post(self.url("/api/v1/orders/"), json=body, headers=headers, timeout=TIMEOUT)
        check(expect(replay, 201, "order replay")["number"] == order["number"], "the replay gives the same order",
              replay)
        stock = self.stock(self.q1, ORDER_SKU)
        before = self.state["stock_before_order"]
        check(stock["reserved"] == before["reserved"] + ORDER_QTY and stock["on_hand"] == before["on_hand"],
              f"placing reserves {ORDER_QTY} at {SELLING_STORE} (once): reserved {before['reserved']} -> "
              f"{stock['reserved']}, on hand {before['on_hand']} -> {stock['on_hand']}")
        money = order["total_vnd"] - order["points_tender_vnd"]
        self.state.update(order=order["number"], fulfillment=f["id"], code=f["pickup"]["code"], money=money,
                          total=order["total_vnd"])
        return (f"{order['number']}: {order['total_vnd']:,} ₫ = {money:,} ₫ money + {ORDER_POINTS} points; "
                f"fulfillment #{f['id']} at {SELLING_STORE}, pickup code {f['pickup']['code']}; "
                f"reserved {before['reserved']} -> {stock['reserved']}; replay: same order")

    def pick_in_admin(self) -> str:
        """Store staff work their queue in the admin (there is no API for picking): log in as the store's manager,
        find the order in the queue, and click picking -> packed -> ready for pickup, each one POST of the queue's
        button with the CSRF token, as the browser sends it."""
        admin = self.admin_login("manager.q1", "manager.q1_password")
        queue = admin.get(self.url("/admin/orders/fulfillment/queue/"), timeout=TIMEOUT)
        check(queue.status_code == 200 and self.state["order"] in queue.text,
              f"{self.state['order']} in manager.q1's store queue", queue)
        steps = []
        for to in ("picking", "packed", "ready_for_pickup"):
            r = admin.post(self.url(f"/admin/orders/fulfillment/{self.state['fulfillment']}/move/"), timeout=TIMEOUT,
                           headers={"Referer": queue.url},
                           data={"to": to, "csrfmiddlewaretoken": admin.cookies["csrftoken"]})
            # The redirect lands on the queue again, with the admin's message (success, or the refusal's reason).
            found = re.findall(r'<li class="(?:success|error|warning|info)"[^>]*>(.*?)</li>', r.text, re.S)
            messages = [unescape(re.sub(r"<[^>]+>", "", m)).strip() for m in found]
            status = next(f["status"] for f in self.order(self.state["order"])["fulfillments"]
                          if f["id"] == self.state["fulfillment"])
            check(r.status_code == 200 and status == to,
                  f"queue button -> {to}: fulfillment is {status!r}; admin said {messages}", r)
            steps.append(to)
        return f"manager.q1 moved #{self.state['fulfillment']}: assigned -> {' -> '.join(steps)}"

    def collect_at_till(self) -> str:
        """The customer shows the code at the store's till: look it up, hand it over; the stock is committed and the
        order completes, which earns its (pending) points on the money part."""
        code, before = self.state["code"], self.balance()
        multiplier = self.multiplier()
        r = self.q1.get(self.url(f"/api/v1/pos/pickups/{code}/"), timeout=TIMEOUT)
        pickup = expect(r, 200, "pickup look-up")
        check(pickup["order"] == self.state["order"] and pickup["status"] == "ready_for_pickup",
              "the code finds the order, ready for pickup", r)
        wrong_store = self.q3.get(self.url(f"/api/v1/pos/pickups/{code}/"), timeout=TIMEOUT)
        check(wrong_store.status_code == 404, "another store's till must not find the pickup", wrong_store)
        r = self.q1.post(self.url(f"/api/v1/pos/pickups/{code}/handover/"), timeout=TIMEOUT)
        check(expect(r, 200, "handover")["status"] == "collected", "handed over: collected", r)
        order = self.order(self.state["order"])
        check(order["status"] == "completed" and order["fulfillments"][0]["status"] == "collected",
              f"the order is completed, its fulfillment collected (got {order['status']}, "
              f"{order['fulfillments'][0]['status']})")
        stock, start = self.stock(self.q1, ORDER_SKU), self.state["stock_before_order"]
        check((stock["on_hand"], stock["reserved"]) == (start["on_hand"] - ORDER_QTY, start["reserved"]),
              f"collected: on hand {start['on_hand']} -> {stock['on_hand']} (−{ORDER_QTY}), reserved back to "
              f"{start['reserved']} (is {stock['reserved']})")
        earned = points_for(self.state["money"], multiplier)
        after = self.balance()
        check(after["pending"] == before["pending"] + earned and after["available"] == before["available"],
              f"completing earns {earned} pending points on {self.state['money']:,} ₫ (×{multiplier}): pending "
              f"{before['pending']} -> {after['pending']}, available {before['available']} -> {after['available']}")
        self.state["order_earned"] = earned
        return (f"{code} handed over at {SELLING_STORE}: order completed; on hand {start['on_hand']} -> "
                f"{stock['on_hand']}, reserved {stock['reserved']}; +{earned} pending points")

    def till_sale(self) -> str:
        """A sale at the selling store's till for the member: paid in cash and points. Points are redeemed, and
        earned on the cash only, available at once; the resend of the same batch is a duplicate that changes
        nothing."""
        if self.stock(self.q1, TILL_SKU)["sellable_at_till"] < 1:
            self.deliver(self.q1, SELLING_STORE, TILL_SKU, "DC-1")
        sku_before, before, multiplier = self.stock(self.q1, TILL_SKU), self.balance(), self.multiplier()
        check(sku_before["sellable_at_till"] >= 1, f"{SELLING_STORE} has no {TILL_SKU} to sell at its till")
        price = TILL_PRICE
        cash = price - TILL_POINTS * 100
        receipt = {"receipt_id": f"WALK-{self.run}-1", "sold_at": datetime.now(UTC).isoformat(),
                   "member_phone": PHONE, "lines": [{"sku": TILL_SKU, "qty": 1, "unit_price_vnd": price}],
                   "tenders": [{"type": "cash", "amount_vnd": cash}, {"type": "points", "points": TILL_POINTS}]}
        r = self.q1.post(self.url("/api/v1/pos/sales/"), json={"receipts": [receipt]}, timeout=TIMEOUT)
        [outcome] = expect(r, 200, "sales sync")["results"]
        check(outcome["status"] == "applied", "the receipt is applied", r)
        earned = points_for(cash, multiplier)
        points = outcome["result"]["points"]
        check((points["earned"], points["redeemed"]) == (earned, TILL_POINTS),
              f"earned {earned} on {cash:,} ₫ cash (×{multiplier}) and redeemed {TILL_POINTS}", r)
        after = self.balance()
        check(after["available"] == before["available"] - TILL_POINTS + earned == points["available"],
              f"available {before['available']} − {TILL_POINTS} + {earned} should be {after['available']} "
              f"(the receipt says {points['available']})")
        replay = self.q1.post(self.url("/api/v1/pos/sales/"), json={"receipts": [receipt]}, timeout=TIMEOUT)
        check(expect(replay, 200, "sales resend")["results"][0]["status"] == "duplicate", "a resend is a duplicate",
              replay)
        check(self.balance()["available"] == after["available"], "a duplicate changes no points")
        sku_after = self.stock(self.q1, TILL_SKU)
        check(sku_after["on_hand"] == sku_before["on_hand"] - 1,
              f"{TILL_SKU} at {SELLING_STORE}: on hand {sku_before['on_hand']} -> {sku_after['on_hand']} (−1, once)")
        self.state.update(receipt=receipt["receipt_id"], till_earned=earned, cash=cash)
        return (f"receipt {receipt['receipt_id']}: 1 × {TILL_SKU} {price:,} ₫ = {cash:,} cash + {TILL_POINTS} points; "
                f"earned {earned}; available {before['available']} -> {after['available']}; resend: duplicate")

    def return_receipt_elsewhere(self) -> str:
        """The till receipt of Q1 comes back at Q3's till: refunded per tender (cash, and the points given back),
        the points it earned reversed, the unit back on sale at Q3."""
        stock_before, before = self.stock(self.q3, TILL_SKU), self.balance()
        r = self.q3.post(self.url("/api/v1/pos/returns/"), timeout=TIMEOUT,
                         headers={"Idempotency-Key": f"walk-{self.run}-ret-receipt"},
                         json={"receipt": {"store": SELLING_STORE, "receipt_id": self.state["receipt"]},
                               "lines": [{"sku": TILL_SKU, "qty": 1, "condition": "resellable"}], "reason": "CI walk"})
        ret = expect(r, 201, "till return of the receipt")
        check(ret["status"] == "refunded" and ret["receiving_store"] == RETURNS_STORE,
              f"refunded, received at {RETURNS_STORE}", r)
        refunds = sorted((x["tender"], x["amount_vnd"], x["points"]) for x in ret["refunds"])
        check(ret["refund_money_vnd"] == self.state["cash"] and ret["points_given_back"] == TILL_POINTS
              and ret["points_reversed"] == self.state["till_earned"] and ("cash", self.state["cash"], 0) in refunds,
              f"cash {self.state['cash']:,} ₫ back, {TILL_POINTS} points given back, {self.state['till_earned']} "
              "reversed", r)
        after = self.balance()
        check(after["available"] == before["available"] + TILL_POINTS - self.state["till_earned"],
              f"available {before['available']} + {TILL_POINTS} − {self.state['till_earned']} should be "
              f"{after['available']}")
        stock_after = self.stock(self.q3, TILL_SKU)
        check(stock_after["on_hand"] == stock_before["on_hand"] + 1
              and stock_after["unavailable"] == stock_before["unavailable"],
              f"{TILL_SKU} at {RETURNS_STORE}: on hand {stock_before['on_hand']} -> {stock_after['on_hand']} (+1, "
              "on sale)")
        return (f"{ret['number']} at {RETURNS_STORE}: {ret['refund_money_vnd']:,} ₫ cash + {TILL_POINTS} points back, "
                f"{ret['points_reversed']} reversed; {TILL_SKU} on hand there {stock_before['on_hand']} -> "
                f"{stock_after['on_hand']}")

    def return_order_elsewhere(self) -> str:
        """One unit of the collected web order comes back at Q3's till: half the order refunded (online money and
        points in proportion), half its pending points reversed, the unit on sale at Q3."""
        stock_before, before = self.stock(self.q3, ORDER_SKU), self.balance()
        r = self.q3.post(self.url("/api/v1/pos/returns/"), timeout=TIMEOUT,
                         headers={"Idempotency-Key": f"walk-{self.run}-ret-order"},
                         json={"order": self.state["order"], "lines": [{"sku": ORDER_SKU, "qty": 1}],
                               "reason": "CI walk"})
        ret = expect(r, 201, "till return of the web order")
        # One of two identical units: half of each part of what was paid (the README's worked example).
        money, points_back, reversed_ = self.state["money"] // 2, ORDER_POINTS // 2, self.state["order_earned"] // 2
        check(ret["status"] == "refunded" and ret["receiving_store"] == RETURNS_STORE
              and ret["refund_vnd"] == self.state["total"] // ORDER_QTY and ret["refund_money_vnd"] == money
              and ret["points_given_back"] == points_back and ret["points_reversed"] == reversed_,
              f"refunded at {RETURNS_STORE}: {money:,} ₫ online + {points_back} points, {reversed_} pending "
              "reversed", r)
        after = self.balance()
        check((after["available"], after["pending"]) == (before["available"] + points_back,
                                                         before["pending"] - reversed_),
              f"available {before['available']} + {points_back}, pending {before['pending']} − {reversed_}; got "
              f"{after['available']}, {after['pending']}")
        stock_after = self.stock(self.q3, ORDER_SKU)
        check(stock_after["on_hand"] == stock_before["on_hand"] + 1,
              f"{ORDER_SKU} at {RETURNS_STORE}: on hand {stock_before['on_hand']} -> {stock_after['on_hand']} (+1)")
        start = self.state["balance_at_start"]
        return (f"{ret['number']} ({self.state['order']}, 1 of {ORDER_QTY}) at {RETURNS_STORE}: {money:,} ₫ online + "
                f"{points_back} points back, {reversed_} pending reversed; member's points over the walk: available "
                f"{start['available']} -> {after['available']}, pending {start['pending']} -> {after['pending']}")

    def shop_floor_truth(self) -> str:
        """The shop floor is the truth (issue #18): the website holds a unit of a SKU at the selling store for a
        delivery order, then that store's till syncs an offline receipt that sold the shelf empty. The receipt is
        recorded in full, the unit it took from the order is re-routed at once to the next store, the order's
        routing page names the receipt as the cause, and the website's event (order.rerouted) is in the outbox."""
        sku, run = ORDER_SKU, self.run
        stock = self.stock(self.q1, sku)
        check(bool(stock["nearby"]), f"no store near {SELLING_STORE} has {sku}: nothing to re-route to")
        check(stock["available_online"] >= 1, f"{SELLING_STORE} has no {sku} online")
        stores = expect(self.web.get(self.url("/api/v1/stores/"), timeout=TIMEOUT,
                                     params={"address": "Chợ Bến Thành, Quận 1", "limit": 10}), 200, "stores")
        here = next((s for s in stores["stores"] if s["code"] == SELLING_STORE), None)
        check(here is not None, f"{SELLING_STORE} among the stores near Bến Thành")
        destination = {"lat": here["lat"], "lon": here["lon"]}  # next door: the selling store is the nearest
        r = self.web.post(self.url("/api/v1/promises/"), timeout=TIMEOUT,
                          json={"destination": destination, "lines": [{"sku": sku, "qty": 1}]})
        promise = expect(r, 201, "delivery promise")
        option = next((o for o in promise["options"] if o["method"] == "delivery"
                       and [s["store"] for s in o["shipments"]] == [SELLING_STORE]), None)
        check(option is not None, f"a delivery option from {SELLING_STORE}", r)
        r = self.web.post(self.url("/api/v1/orders/"), timeout=TIMEOUT, headers={"Idempotency-Key": f"walk-{run}-sf"},
                          json={"method": "delivery", "promise": promise["id"], "option": option["id"],
                                "destination": destination, "payment_state": "paid",
                                "customer": {"name": "Lê Thị Hoa", "phone": "0912345678"},
                                "lines": [{"sku": sku, "qty": 1}]})
        order = expect(r, 201, "delivery order for the last unit")
        [held] = order["fulfillments"]
        check(held["store"]["code"] == SELLING_STORE, f"the order holds the last unit at {SELLING_STORE}", r)
        stock = self.stock(self.q1, sku)
        # The till was offline: ten minutes ago it sold the whole shelf, the unit the order holds included (a
        # count would be the only other way to learn that), and it syncs now.
        sold = stock["sellable_at_till"] + 1
        receipt = {"receipt_id": f"WALK-{run}-SF", "sold_at": datetime.fromtimestamp(time.time() - 600, UTC).isoformat(),
                   "lines": [{"sku": sku, "qty": sold, "unit_price_vnd": ORDER_PRICE}],
                   "tenders": [{"type": "cash", "amount_vnd": sold * ORDER_PRICE}]}
        r = self.q1.post(self.url("/api/v1/pos/sales/"), json={"receipts": [receipt]}, timeout=TIMEOUT)
        [outcome] = expect(r, 200, "offline till sync")["results"]
        check(outcome["status"] == "applied" and outcome["result"]["taken_from_online"] == [{"sku": sku, "qty": 1}],
              "the receipt is recorded in full and says it took the order's unit", r)
        cause = f"pos:{SELLING_STORE}:{receipt['receipt_id']}"
        after = self.order(order["number"])
        by_store = {f["store"]["code"]: f["status"] for f in after["fulfillments"]}
        moved = [code for code, status in by_store.items() if code != SELLING_STORE and status == "assigned"]
        check(by_store.get(SELLING_STORE) == "cancelled" and len(moved) == 1,
              f"re-routed from {SELLING_STORE} to the next store: fulfilments {by_store}")
        decision = next((d for d in after["routing"] if d["kind"] == "store_event"), None)
        check(decision is not None and decision["cause"] == cause,
              f"a store_event routing decision with the receipt {cause} as its cause: {after['routing']}")
        replay = self.q1.post(self.url("/api/v1/pos/sales/"), json={"receipts": [receipt]}, timeout=TIMEOUT)
        check(expect(replay, 200, "sync resent")["results"][0]["status"] == "duplicate", "a resend is a duplicate",
              replay)
        check(len(self.order(order["number"])["fulfillments"]) == len(after["fulfillments"]),
              "the resend re-routes nothing more")
        # Operations: the order's routing page names the receipt; the website's event waits in the outbox.
        admin = self.admin_login("admin", "admin_password")
        listing = admin.get(self.url("/admin/orders/order/"), params={"q": order["number"]}, timeout=TIMEOUT)
        link = re.search(r'href="(/admin/orders/order/\d+/routing/)"', listing.text)
        check(link is not None, f"a routing link for {order['number']} in the admin's order list", listing)
        page = admin.get(self.url(link.group(1)), timeout=TIMEOUT)
        check(page.status_code == 200 and receipt["receipt_id"] in page.text,
              f"the routing page of {order['number']} shows the receipt {receipt['receipt_id']}", page)
        events = admin.get(self.url("/admin/o2o/outboxevent/"), params={"q": f"order:{order['number']}"},
                           timeout=TIMEOUT)
        check(events.status_code == 200 and "order.rerouted" in events.text,
              f"order.rerouted for {order['number']} in the outbox", events)
        return (f"{order['number']} held a {sku} at {SELLING_STORE}; offline receipt {receipt['receipt_id']} "
                f"({sold} units) recorded, took it; re-routed to {moved[0]} (cause {cause}); order.rerouted in the "
                "outbox; resend: duplicate")

    # --- the one price policy (issue #19) ----------------------------------------------------------------------------

    def admin_messages(self, response: requests.Response) -> list[str]:
        """The admin's messages and form errors on a page, as text (for a failure's message)."""
        found = re.findall(r'<li class="(?:success|error|warning|info)"[^>]*>(.*?)</li>|<ul class="errorlist[^"]*"[^>]*>'
                           r'(.*?)</ul>', response.text, re.S)
        return [unescape(re.sub(r"<[^>]+>", " ", a or b)).strip() for a, b in found]

    def promotion_ids(self, admin: requests.Session, **params: str) -> list[str]:
        """The ids of the promotions the admin's changelist shows for a search (its action check boxes)."""
        r = admin.get(self.url("/admin/pricing/promotion/"), params=params, timeout=TIMEOUT)
        check(r.status_code == 200, f"the promotions' changelist for {params}", r)
        return re.findall(r'name="_selected_action" value="(\d+)"', r.text)

    def switch_off(self, admin: requests.Session, ids: list[str]) -> None:
        """The changelist's action "Switch off the selected", as the browser posts it."""
        changelist = self.url("/admin/pricing/promotion/")
        r = admin.post(changelist, timeout=TIMEOUT, headers={"Referer": changelist},
                       data={"csrfmiddlewaretoken": admin.cookies["csrftoken"], "action": "switch_off", "index": 0,
                             "_selected_action": ids})
        check(r.status_code in (200, 302), f"switch off promotions {ids} in the admin", r)

    def snapshot(self, **params) -> requests.Response:
        return self.q1.get(self.url("/api/v1/pos/pricing/snapshot/"), params=params, timeout=TIMEOUT)

    def till_price(self, till: requests.Session, lines: list[dict], **context) -> dict:
        """The online till's price call (POS): the cart priced in its store's context."""
        return expect(till.post(self.url("/api/v1/pos/prices/"), json={"lines": lines, **context}, timeout=TIMEOUT),
                      200, "till price call")

    def new_promotion(self) -> str:
        """Operations creates a promotion in the admin's add form: 15% off a SKU, on the website and at the tills,
        for the HCMC stores' group, exclusive (one exclusive promotion or every stackable one, whichever gives more: 15% of
        this SKU beats the tills' 10% happy hour, so both channels answer alike at any time of day), no dates.
        The till's snapshot version is read first: step "till snapshot" checks that the change moved it."""
        body = expect(self.snapshot(), 200, "snapshot before the promotion")
        check(all(p["code"] != PROMO_CODE.format(run=self.run) for p in body["policy"]["promotions"]),
              "the snapshot before the promotion does not have it")
        admin = self.admin_login("admin", "admin_password")
        # A walk that failed before switching its promotion off left it running: end it as operations would.
        stale = self.promotion_ids(admin, q="walk-", is_active__exact="1")
        if stale:
            self.switch_off(admin, stale)
        add = self.url("/admin/pricing/promotion/add/")
        form = admin.get(add, timeout=TIMEOUT)
        check(form.status_code == 200, "the promotion add form", form)
        groups = dict((text.strip(), value) for value, text in re.findall(
            r'<option value="(\d+)"[^>]*>([^<]*)</option>', form.text.split('name="store_group"', 1)[1].split(
                "</select>", 1)[0]))
        group = groups.get(PROMO_GROUP)
        check(group is not None, f"the store group {PROMO_GROUP!r} among the form's {list(groups)}", form)
        channels = re.findall(r'name="channels" value="([^"]+)"', form.text)
        check({"website", body["channel"]} <= set(channels),
              f"the form offers the website and the tills' channel {body['channel']!r} (it offers {channels})", form)
        code = PROMO_CODE.format(run=self.run)
        r = admin.post(add, timeout=TIMEOUT, allow_redirects=False, headers={"Referer": add}, data={
            "csrfmiddlewaretoken": admin.cookies["csrftoken"], "code": code, "name": f"CI walk {self.run}: "
            f"{PROMO_PERCENT}% off {PROMO_SKU}", "campaign": "ci-walk", "is_active": "on", "kind": "percent_off",
            "target": "sku", "skus": PROMO_SKU, "categories": "", "percent": PROMO_PERCENT, "amount_vnd": 0,
            "buy_qty": 0, "get_qty": 0, "bundle": "", "bundle_price_vnd": 0, "min_spend_vnd": 0,
            "channels": ["website", body["channel"]], "store_group": group, "starts_at_0": "", "starts_at_1": "",
            "ends_at_0": "", "ends_at_1": "", "from_time": "", "until_time": "", "priority": 0, "exclusive": "on",
            "max_uses": "", "max_uses_per_member": "", "max_discount_vnd": "", "_save": "Save"})
        check(r.status_code == 302, f"the admin saves promotion {code} (it said {self.admin_messages(r)})", r)
        ids = self.promotion_ids(admin, q=code)
        check(len(ids) == 1, f"promotion {code} in the admin's list")
        self.state.update(promotion=code, promotion_id=ids[0], version_before=body["version"])
        return (f"admin created {code}: {PROMO_PERCENT}% off {PROMO_SKU}, website + tills ({body['channel']}), "
                f"stores of {PROMO_GROUP}, exclusive, no dates; the till's snapshot was v{body['version']}" + (f"; switched off {len(stale)} left by an earlier walk" if stale
                                                  else ""))

    def same_price(self) -> str:
        """The website's quote at the selling store and that store's till price the same cart alike: the new
        promotion applied, the same unit price, discount, net and total (15% computed here, rounded down)."""
        code, cart = self.state["promotion"], [{"sku": PROMO_SKU, "qty": PROMO_QTY}]
        r = self.web.post(self.url("/api/v1/pricing/quote/"), timeout=TIMEOUT,
                          json={"lines": cart, "store": SELLING_STORE})
        web = expect(r, 200, "website quote")
        till = self.till_price(self.q1, cart)
        fields = ("lines", "promotions", "subtotal_vnd", "discount_vnd", "total_vnd")
        check({k: web[k] for k in fields} == {k: till[k] for k in fields},
              f"the website's quote and {SELLING_STORE}'s till price alike:\n  website: "
              f"{json.dumps({k: web[k] for k in fields})}\n  till:    {json.dumps({k: till[k] for k in fields})}")
        [line] = web["lines"]
        gross = line["unit_price_vnd"] * PROMO_QTY
        off = gross * PROMO_PERCENT // 100
        check([p["promotion"] for p in web["promotions"]] == [code] and line["discount_vnd"] == off
              and line["net_vnd"] == web["total_vnd"] == gross - off,
              f"{code} alone takes {PROMO_PERCENT}% ({off:,} ₫) off {PROMO_QTY} × {line['unit_price_vnd']:,} ₫", r)
        unit = line["net_vnd"] / PROMO_QTY
        return (f"{PROMO_QTY} × {PROMO_SKU} at {SELLING_STORE}: website quote = till price call = "
                f"{line['unit_price_vnd']:,} ₫ − {PROMO_PERCENT}% → {unit:,.0f} ₫ each, net {line['net_vnd']:,} ₫ "
                f"(−{off:,} ₫ by {code}), total {web['total_vnd']:,} ₫, policy v{web['policy_version']}")

    def till_snapshot(self) -> str:
        """The offline till's copy of the policy: the promotion moved the version and is in the snapshot, which is
        signed with the till's own key; asking again with ?since= (or If-None-Match) says nothing changed. Then
        operations switches the promotion off in the admin: the version moves again, the till's ?since= now gets a
        snapshot without it, and the till's price is the list price again."""
        r = self.snapshot()
        body = expect(r, 200, "snapshot")
        version, before, code = body["version"], self.state["version_before"], self.state["promotion"]
        check(body["changed"] is True and version > before, f"creating {code} raised the version: v{before} -> "
              f"v{version}", r)
        check(any(p["code"] == code for p in body["policy"]["promotions"]), f"{code} in the snapshot's promotions")
        key = self.q1.headers["Authorization"].removeprefix("Api-Key ")
        unsigned = json.dumps({k: v for k, v in body.items() if k != "signature"}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False).encode()
        signature = "v1=" + hmac.new(key.encode(), unsigned, hashlib.sha256).hexdigest()
        check(body["signature"] == signature, "the snapshot's signature is HMAC-SHA256 of its canonical JSON under the "
              f"till's key: got {body['signature']}, computed {signature}")
        check(r.headers.get("ETag") == f'"{version}"', f"the snapshot's ETag is \"{version}\"", r)
        r = self.snapshot(since=version)
        check(expect(r, 200, "snapshot since") == {"version": version, "changed": False},
              f"?since={version}: {{version: {version}, changed: false}}", r)
        r = self.q1.get(self.url("/api/v1/pos/pricing/snapshot/"), headers={"If-None-Match": f'"{version}"'},
                        timeout=TIMEOUT)
        check(r.status_code == 304, f"If-None-Match \"{version}\": 304", r)
        admin = self.admin_login("admin", "admin_password")
        self.switch_off(admin, [self.state["promotion_id"]])
        r = self.snapshot(since=version)
        after = expect(r, 200, "snapshot since, after the switch-off")
        check(after["changed"] is True and after["version"] > version
              and all(p["code"] != code for p in after["policy"]["promotions"]),
              f"switched off: ?since={version} gets a newer snapshot without {code}", r)
        price = self.till_price(self.q1, [{"sku": PROMO_SKU, "qty": PROMO_QTY}])
        check(all(p["promotion"] != code for p in price["promotions"]), f"{code} no longer applies at the till")
        return (f"v{before} -> v{version} with {code} (signed with the till's key, ETag \"{version}\"); ?since={version}"
                f": changed false; If-None-Match: 304; switched off in the admin: ?since={version} -> v{after['version']}"
                f" without it, till price {price['total_vnd']:,} ₫")

    def voucher_at_till(self) -> str:
        """Points become a voucher online and are spent at another store's till: the website buys it (the points
        leave the balance at once; the replay of its key is the same voucher), the till prices the cart with the
        code, the receipt charges exactly that and is applied with no price exception, the code is consumed, and
        the website then gets 422 code_used_up for it."""
        before, multiplier = self.balance(), self.multiplier()
        buy = {"phone": PHONE, "points": VOUCHER_POINTS}
        headers = {"Idempotency-Key": f"walk-{self.run}-voucher"}
        r = self.web.post(self.url("/api/v1/pricing/vouchers/"), json=buy, headers=headers, timeout=TIMEOUT)
        voucher = expect(r, 201, "voucher bought with points")
        code, value = voucher["code"], voucher["value_vnd"]
        check(voucher["points"] == VOUCHER_POINTS and value == VOUCHER_POINTS * 100
              and voucher["balance"]["available"] == before["available"] - VOUCHER_POINTS,
              f"{VOUCHER_POINTS} points -> a {VOUCHER_POINTS * 100:,} ₫ voucher, available {before['available']} − "
              f"{VOUCHER_POINTS}", r)
        replay = self.web.post(self.url("/api/v1/pricing/vouchers/"), json=buy, headers=headers, timeout=TIMEOUT)
        check(expect(replay, 201, "voucher replay")["code"] == code, "the replay gives the same voucher", replay)
        bought = self.balance()
        check(bought["available"] == before["available"] - VOUCHER_POINTS,
              f"available {before['available']} − {VOUCHER_POINTS} once: got {bought['available']}")
        listed = expect(self.web.get(self.url("/api/v1/pricing/vouchers/"), params={"phone": PHONE}, timeout=TIMEOUT),
                        200, "member's vouchers")
        check(code in [v["code"] for v in listed], f"{code} among the member's vouchers")
        if self.stock(self.q3, VOUCHER_SKU)["sellable_at_till"] < 1:
            self.deliver(self.q3, RETURNS_STORE, VOUCHER_SKU, "DC-V")
        check(self.stock(self.q3, VOUCHER_SKU)["sellable_at_till"] >= 1,
              f"{RETURNS_STORE} has no {VOUCHER_SKU} to sell at its till")
        sold_at = datetime.now(UTC).isoformat()
        cart = [{"sku": VOUCHER_SKU, "qty": 1}]
        priced = self.till_price(self.q3, cart, member_phone=PHONE, codes=[code], at=sold_at)
        [line] = priced["lines"]
        check(priced["codes"] == [{"code": code, "promotion": priced["codes"][0]["promotion"], "applied": True,
                                   "reason": ""}]
              and any(p["code"] == code and p["discount_vnd"] == value for p in priced["promotions"]),
              f"the till applies {code} for {value:,} ₫: {json.dumps(priced['promotions'])}")
        cash = priced["total_vnd"]
        receipt = {"receipt_id": f"WALK-{self.run}-V", "sold_at": sold_at, "member_phone": PHONE,
                   "lines": [{"sku": VOUCHER_SKU, "qty": 1, "unit_price_vnd": line["unit_price_vnd"],
                              "discount_vnd": line["discount_vnd"]}],
                   "tenders": [{"type": "cash", "amount_vnd": cash}], "codes": [code],
                   "promotions": [{"promotion": p["promotion"], "code": p["code"] or "",
                                   "discount_vnd": p["discount_vnd"]} for p in priced["promotions"]]}
        r = self.q3.post(self.url("/api/v1/pos/sales/"), json={"receipts": [receipt]}, timeout=TIMEOUT)
        [outcome] = expect(r, 200, "till sync of the voucher receipt")["results"]
        check(outcome["status"] == "applied" and outcome["result"]["price_exceptions"] == 0
              and outcome["result"]["policy_total_vnd"] == cash,
              f"applied at the policy's {cash:,} ₫ with no price exception", r)
        earned = points_for(cash, multiplier)
        after = self.balance()
        check(after["available"] == bought["available"] + earned,
              f"the receipt earns {earned} points on {cash:,} ₫: available {bought['available']} -> "
              f"{after['available']}")
        r = self.web.post(self.url("/api/v1/pricing/quote/"), timeout=TIMEOUT,
                          json={"lines": cart, "member_phone": PHONE, "codes": [code]})
        check(r.status_code == 422 and r.json().get("code") == "code_used_up",
              f"the website's quote with {code} after the till used it: 422 code_used_up", r)
        listed = expect(self.web.get(self.url("/api/v1/pricing/vouchers/"), params={"phone": PHONE}, timeout=TIMEOUT),
                        200, "member's vouchers")
        check(code not in [v["code"] for v in listed], f"{code} no longer among the member's usable vouchers")
        return (f"website bought {code} ({VOUCHER_POINTS} points = {value:,} ₫): available {before['available']} -> "
                f"{bought['available']}; {receipt['receipt_id']} at {RETURNS_STORE}: 1 × {VOUCHER_SKU} "
                f"{line['unit_price_vnd']:,} ₫ − {line['discount_vnd']:,} ₫ ("
                + ", ".join(f"{d['promotion']} {d['amount_vnd']:,}" for d in line["discounts"])
                + f") = {cash:,} ₫ cash, 0 price exceptions, "
                f"+{earned} points; the website then: 422 code_used_up")

    def below_policy(self) -> str:
        """A till sells below the policy's price: the receipt is applied (the goods have left) and its line waits
        in the price-exception queue, where the store's manager finds it in the admin."""
        if self.stock(self.q1, LOW_SKU)["sellable_at_till"] < 1:
            self.deliver(self.q1, SELLING_STORE, LOW_SKU, "DC-LOW")
        sold_at = datetime.now(UTC).isoformat()
        policy = self.till_price(self.q1, [{"sku": LOW_SKU, "qty": 1}], at=sold_at)
        receipt = {"receipt_id": f"WALK-{self.run}-LOW", "sold_at": sold_at,
                   "lines": [{"sku": LOW_SKU, "qty": 1, "unit_price_vnd": LOW_PRICE}],
                   "tenders": [{"type": "cash", "amount_vnd": LOW_PRICE}]}
        r = self.q1.post(self.url("/api/v1/pos/sales/"), json={"receipts": [receipt]}, timeout=TIMEOUT)
        [outcome] = expect(r, 200, "till sync below the policy")["results"]
        check(outcome["status"] == "applied" and outcome["result"]["price_exceptions"] >= 1
              and outcome["result"]["policy_total_vnd"] == policy["total_vnd"],
              f"applied, policy total {policy['total_vnd']:,} ₫, price exceptions queued", r)
        admin = self.admin_login("manager.q1", "manager.q1_password")
        queue = admin.get(self.url("/admin/pricing/priceexception/"), params={"q": receipt["receipt_id"]},
                          timeout=TIMEOUT)
        rows = [dict((name, " ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split())) for name, cell in
                     re.findall(r'<t[hd] class="field-([a-z_]+)"[^>]*>(.*?)</t[hd]>', row, re.S))
                for row in re.findall(r"<tr\b.*?</tr>", queue.text.partition("<tbody")[2], re.S)
                if f">{receipt['receipt_id']}<" in row]
        check(queue.status_code == 200 and len(rows) == 1,
              f"{receipt['receipt_id']} once in manager.q1's (open) price-exception queue", queue)
        [row] = rows
        policy_shown, charged_shown = (re.sub(r"\D", "", x) for x in row["policy_charged"].split(" ", 2)[::2])
        check(LOW_SKU in row["sku_qty"] and (policy_shown, charged_shown) == (str(policy["total_vnd"]), str(LOW_PRICE)),
              f"the queue's row shows {LOW_SKU}, the policy's {policy['total_vnd']:,} ₫ and the {LOW_PRICE:,} ₫ "
              f"charged: {row}", queue)
        return (f"{receipt['receipt_id']} at {SELLING_STORE}: 1 × {LOW_SKU} for {LOW_PRICE:,} ₫ (policy "
                f"{policy['total_vnd']:,} ₫) applied with {outcome['result']['price_exceptions']} price exception; "
                f"manager.q1's queue in the admin: {row['receipt']} | {row['kind']} | {row['sku_qty']} | policy / "
                f"charged {row['policy_charged']} | {row['difference']} | {row['review']}")

    def audits(self) -> str:
        """Both ledgers against their rows, on the demo's file, after everything above wrote to it."""
        with ThreadPoolExecutor(2) as pool:  # both at once (they only read): the step takes as long as the slower
            done = {name: pool.submit(self.manage, name) for name in ("inventory_audit", "loyalty_audit")}
        lines = []
        for name, future in done.items():
            result = future.result()
            check(result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stdout}{result.stderr}")
            lines.append((result.stdout.strip().splitlines() or [f"{name}: (no output)"])[-1])
        return " | ".join(lines)


STEPS = [
    ("server and schema", Walk.server_and_schema),
    ("stores near", Walk.stores_near),
    ("till keys (admin)", Walk.store_keys),
    ("promise", Walk.promise),
    ("points hold", Walk.points_hold),
    ("place order", Walk.place_order),
    ("pick (admin)", Walk.pick_in_admin),
    ("collect (till)", Walk.collect_at_till),
    ("till sale", Walk.till_sale),
    ("return receipt", Walk.return_receipt_elsewhere),
    ("return order", Walk.return_order_elsewhere),
    ("shop floor", Walk.shop_floor_truth),
    ("promotion (admin)", Walk.new_promotion),
    ("same price", Walk.same_price),
    ("till snapshot", Walk.till_snapshot),
    ("voucher at till", Walk.voucher_at_till),
    ("below policy", Walk.below_policy),
    ("audits", Walk.audits),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:18765")
    parser.add_argument("--credentials", required=True, type=Path, help="what `manage.py demo` wrote, e.g. "
                        ".demo/credentials-sqlite.json")
    parser.add_argument("--database-url", required=True, help="the demo's DATABASE_URL, e.g. sqlite:////tmp/x.sqlite3")
    args = parser.parse_args()
    try:
        credentials = json.loads(args.credentials.read_text())
    except (OSError, ValueError) as exc:
        print(f"demo walkthrough: cannot read {args.credentials}: {exc}", file=sys.stderr)
        return 2
    walk = Walk(base=args.base_url.rstrip("/"), credentials=credentials, database_url=args.database_url)
    started = time.monotonic()
    print(f"demo walkthrough against {walk.base} (run {walk.run})", flush=True)
    for number, (title, step) in enumerate(STEPS, 1):
        t0 = time.monotonic()
        try:
            summary = step(walk)
        except WalkFailed as exc:
            print(f"FAIL {number:2}/{len(STEPS)} {title}: {exc}", flush=True)
            return 1
        except requests.RequestException as exc:
            print(f"FAIL {number:2}/{len(STEPS)} {title}: no answer from the demo server: {exc}", flush=True)
            return 1
        except Exception:  # an answer of another shape than the walk knows (a missing field...): say where
            print(f"FAIL {number:2}/{len(STEPS)} {title}: unexpected error\n{traceback.format_exc()}", flush=True)
            return 1
        print(f"ok   {number:2}/{len(STEPS)} {title:<17} {summary} ({time.monotonic() - t0:.1f}s)", flush=True)
    print(f"demo walkthrough passed in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
