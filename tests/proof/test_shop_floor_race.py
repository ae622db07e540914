"""The shop floor is the truth (issue #18), raced over real HTTP on PostgreSQL: tills and website checkouts fight for
the last units of a SKU at one store, through pytest-django's live_server (a threaded HTTP server, one database
connection per request) and plain HTTP clients in threads, as the tills and the website call the service.

1. 20 tills vs 20 checkouts: store A has the last 10 units of a SKU, B nearby has 3, C none. 20 website clients each
   quote a promise (delivery near A) and place an order for 1 unit from it; 20 till clients at A (four till keys)
   each sync a receipt selling 1 unit; all 40 start behind a barrier (the checkouts quote, then all meet
   at a second barrier and place or sell at once). Every receipt is recorded (never refused for
   stock); every placement is a 201 or a 409 insufficient_stock carrying a fresh promise; A ends with nothing
   reserved for units that are gone (its 10 units sold at the till, 10 more as a shortfall), every reservation a
   till took is reconciled, the orders that lost their units at A are served at B (a store_event routing decision
   whose cause is the receipt) or unfulfilled, and both audits are clean.
2. Replays during the re-route: a batch of 10 receipts that takes the reservations of 10 placed orders is posted
   by 8 threads at once (some a little later, landing while the first is applied or reconciled): each receipt is
   applied once, every other answer is `duplicate` with the first result, and the rows written (movements, taken
   reservations, routing decisions, outbox events, per topic) are exactly those of one application, measured on a
   twin chain that got the batch once.

Each test prints its figures (wall time, outcomes, p50/p99 latency per request type); run with -rP to keep them."""

import json
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from inventory.models import Reservation, Stock, StockMovement, TakenReservation
from inventory.selectors import reservation_differences, stock_ledger_differences
from loyalty import selectors as loyalty_selectors
from o2o.models import OutboxEvent
from orders.models import Fulfillment, FulfillmentLine, FulfillmentStatus, Order, OrderLine, RoutingDecision
from orders.pos.models import StoreApiKey, TillReceipt
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

CUSTOMER = {"name": "Khách thử", "phone": "0901234567"}
PRICE = 100_000
TIMEOUT = 90  # seconds a request may take on a loaded 2-core machine before the test calls it a hang


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL promise; the suite runs on PostgreSQL")


@pytest.fixture
def server(live_server) -> str:
    """The live server's URL, its listen backlog raised from socketserver's 10 (Django's test server) to what a
    production server keeps (gunicorn: 2048): 40 clients connecting at once would otherwise overflow it and be
    reset by the kernel before the server ever reads their request, a limit of the test server, not of the app."""
    live_server.thread.httpd.socket.listen(1024)
    return live_server.url


# --- HTTP, as a till or a website calls the service -----------------------------------------------------------------


class Calls:
    """Every request made: (kind, status, seconds, started, ended), appended under a lock."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, float, float, float]] = []
        self.lock = threading.Lock()

    def post(self, base: str, path: str, key: str, body: dict, *, kind: str, idem: str | None = None):
        headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
        if idem:
            headers["Idempotency-Key"] = idem
        started = time.monotonic()
        res = requests.post(base + path, data=json.dumps(body), headers=headers, timeout=TIMEOUT)
        ended = time.monotonic()
        with self.lock:
            self.rows.append((kind, res.status_code, ended - started, started, ended))
        try:
            payload = res.json()
        except ValueError:
            payload = {"raw": res.text[:2000]}
        return res.status_code, payload, started, ended

    def latencies(self) -> dict[str, str]:
        by_kind: dict[str, list[float]] = defaultdict(list)
        for kind, _, seconds, _, _ in self.rows:
            by_kind[kind].append(seconds)
        return {kind: f"n={len(v)} p50={_pct(v, 50) * 1000:.0f} ms p99={_pct(v, 99) * 1000:.0f} ms "
                      f"max={max(v) * 1000:.0f} ms" for kind, v in sorted(by_kind.items())}


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def _run_behind_barrier(calls: list, *, timeout: float = 180) -> list[Any]:
    """Start one thread per callable behind a barrier; each result (or the exception raised) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "requests did not finish: a deadlock or a hang?"
    return results


def _receipt(rid: str, sku: str, *, phone: str | None = None) -> dict:
    body = {
        "receipt_id": rid, "sold_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
        "lines": [{"sku": sku, "qty": 1, "unit_price_vnd": PRICE}],
        "tenders": [{"type": "cash", "amount_vnd": PRICE}],
    }
    if phone:
        body["member_phone"] = phone
    return body


def _till_keys(store, count: int) -> list[str]:
    return [StoreApiKey.objects.create_key(name=f"till-{n}", store=store)[1] for n in range(1, count + 1)]


def _audits_clean() -> None:
    assert stock_ledger_differences() == []
    assert reservation_differences() == []
    assert loyalty_selectors.ledger_differences() == []
    assert loyalty_selectors.unbalanced_postings() == []
    call_command("inventory_audit", stdout=StringIO())  # each raises if not clean
    call_command("loyalty_audit", stdout=StringIO())


def _reserved_matches_ledger(store, product) -> Stock:
    """The stock row's reserved is the sum of its live reservations, within what is on the shelf."""
    row = Stock.objects.get(store=store, product=product)
    live = Reservation.objects.filter(store=store, product=product).aggregate(n=Sum("quantity"))["n"] or 0
    assert row.reserved == live, (store.code, row.reserved, live)
    assert row.reserved <= row.on_hand - row.unavailable, (store.code, row.on_hand, row.reserved, row.unavailable)
    return row


def _units_live(order: Order) -> int:
    """Units the order's fulfillments not cancelled will hand over."""
    return sum(
        line.units
        for line in FulfillmentLine.objects.filter(fulfillment__order=order).exclude(
            fulfillment__status=FulfillmentStatus.CANCELLED
        )
    )


# --- 1. 20 tills vs 20 checkouts on the last 10 units ---------------------------------------------------------------

LAST = 10
AT_B = 3  # fewer than A's last units: some orders that lose theirs are re-routed, others may be unfulfilled
CHECKOUTS = 20
TILLS = 20


def test_tills_and_checkouts_race_for_the_last_units(server, channel_key):
    a = StoreFactory(code="HCM-Q1-SFA", name="Q1 Lê Lợi", lat=10.7743, lon=106.7038, picking_capacity_per_hour=500)
    b = StoreFactory(code="HCM-Q1-SFB", name="Q1 Nguyễn Huệ", lat=10.7800, lon=106.7080, picking_capacity_per_hour=500)
    c = StoreFactory(code="HCM-Q3-SFC", name="Q3 Võ Văn Tần", lat=10.7835, lon=106.6870, picking_capacity_per_hour=500)
    sku = ProductFactory(sku="SF-LAST-10", price_vnd=PRICE)
    other = ProductFactory(sku="SF-OTHER", price_vnd=PRICE)
    put_stock(a, sku, LAST)
    put_stock(b, sku, AT_B)
    put_stock(c, other, 5)  # C sells other things, none of this SKU
    tills = _till_keys(a, 4)
    destination = {"lat": 10.7738, "lon": 106.7030}  # 100 m from A
    base = server
    calls = Calls()

    # All 40 start behind one barrier; the checkouts quote (racing each other), then everyone meets at `go` so that
    # the placements and the till sales hit A together (a quote under load takes seconds: without `go` the tills
    # would be done before the first order is placed).
    go = threading.Barrier(CHECKOUTS + TILLS)

    def checkout(i: int) -> dict:
        try:
            status, quote, _, _ = calls.post(base, "/api/v1/promises/", channel_key,
                                             {"lines": [{"sku": sku.sku, "qty": 1}], "destination": destination},
                                             kind="promise")
        finally:
            go.wait(timeout=TIMEOUT)
        out = {"who": f"web-{i}", "quote": status, "quote_body": quote}
        if status != 201:
            return out
        option = next(o for o in quote["options"] if o["kind"] != "pickup")
        out["quoted_at"] = sorted({s["store"] for s in option["shipments"]})
        body = {"lines": [{"sku": sku.sku, "qty": 1}], "customer": {**CUSTOMER, "phone": f"09012345{i:02d}"},
                "method": "delivery", "promise": quote["id"], "option": option["id"], "payment_state": "paid"}
        status, placed, _, _ = calls.post(base, "/api/v1/orders/", channel_key, body, kind="order", idem=f"sf-{i}")
        out.update(place=status, body=placed)
        return out

    def till(i: int) -> dict:
        rid = f"SF-T{i % 4 + 1}-{i:04d}"
        body = {"receipts": [_receipt(rid, sku.sku, phone=f"09087654{i:02d}" if i % 2 else None)]}
        go.wait(timeout=TIMEOUT)
        status, answer, _, _ = calls.post(base, "/api/v1/pos/sales/", tills[i % 4], body, kind="pos_sale")
        return {"who": f"till-{i}", "rid": rid, "status": status, "body": answer}

    jobs = []
    for i in range(max(CHECKOUTS, TILLS)):  # interleaved, so neither side gets a head start at the barrier
        if i < TILLS:
            jobs.append(lambda i=i: till(i))
        if i < CHECKOUTS:
            jobs.append(lambda i=i: checkout(i))
    started = time.monotonic()
    results = _run_behind_barrier(jobs)
    wall = time.monotonic() - started

    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    server_errors = [(kind, status) for kind, status, *_ in calls.rows if status >= 500]
    assert not server_errors, (server_errors, [r for r in results if r.get("status", 0) >= 500
                                               or r.get("quote", 0) >= 500 or r.get("place", 0) >= 500])

    # Every till receipt is recorded: a sale that happened is never refused for stock.
    sales = [r for r in results if r["who"].startswith("till")]
    for r in sales:
        assert r["status"] == 200, r
        (verdict,) = r["body"]["results"]
        assert verdict["status"] == "applied", r
    assert TillReceipt.objects.filter(store=a).count() == TILLS

    # Every quote is a promise (A, or B once A's units are gone) or, with nothing left anywhere, insufficient_stock;
    # every placement is a 201 or a 409 insufficient_stock with a fresh promise quoted now.
    checkouts = [r for r in results if r["who"].startswith("web")]
    for r in checkouts:
        if r["quote"] != 201:
            assert (r["quote"], r["quote_body"].get("code")) == (409, "insufficient_stock"), r
            continue
        assert r["place"] in (201, 409), r
        if r["place"] == 409:
            assert r["body"]["code"] == "insufficient_stock", r
            assert "fresh_promise" in r["body"]["details"], r
            fresh = r["body"]["details"]["fresh_promise"]
            assert fresh is not None or r["body"]["details"].get("fresh_promise_unavailable"), r
    placed = {r["body"]["number"]: r for r in checkouts if r.get("place") == 201}
    fresh_at = Counter(
        ",".join(sorted({s["store"] for o in r["body"]["details"]["fresh_promise"]["options"] if o["kind"] != "pickup"
                         for s in o["shipments"]})) or "pickup only"
        if r["body"]["details"]["fresh_promise"] else f"none ({r['body']['details'].get('fresh_promise_unavailable')})"
        for r in checkouts if r.get("place") == 409
    )
    quoted_at_a = sum(1 for r in checkouts if r.get("quoted_at") == [a.code])
    assert quoted_at_a > 0, "no checkout was promised A: the race did not happen"

    # A: every unit it had went over the till; ten more were sold beyond the ledger and wait for a count; nothing is
    # reserved for units that are gone.
    row_a = _reserved_matches_ledger(a, sku)
    assert (row_a.on_hand, row_a.reserved, row_a.shortfall, row_a.needs_count) == (0, 0, TILLS - LAST, True)
    assert row_a.available == 0
    till_shortfall = sum(line["shortfall"] for r in sales for line in r["body"]["results"][0]["result"]["lines"])
    assert till_shortfall == TILLS - LAST
    assert not Fulfillment.objects.filter(store=a).exclude(status=FulfillmentStatus.CANCELLED).exists()
    row_b = _reserved_matches_ledger(b, sku)
    assert row_b.on_hand == AT_B and row_b.shortfall == 0

    # Every reservation a till took is reconciled, in the till's own request.
    taken = list(TakenReservation.objects.filter(store=a))
    pending = [t for t in taken if t.reconciled_at is None]
    assert not pending, [  # a holder left as it was: its fulfillment still waits at A for a unit that is gone
        (t.reference, t.cause, Fulfillment.objects.get(pk=int(t.reference.partition(":")[2])).status,
         Reservation.objects.filter(reference=t.reference).count())
        for t in pending
    ]
    receipts = {f"pos:{a.code}:{r['rid']}" for r in sales}
    assert {t.cause for t in taken} <= receipts
    taken_online = sum(x["qty"] for r in sales for x in r["body"]["results"][0]["result"]["taken_from_online"])
    assert taken_online == sum(t.units for t in taken)

    # Each order that lost its unit at A is served at B after a store_event decision caused by the receipt, or is
    # unfulfilled (B ran out too), with that decision too; every placed order accounts for its unit.
    rerouted, unfulfilled, taken_orders = set(), set(), set()
    for t in taken:
        kind, _, ident = t.reference.partition(":")
        assert kind == "fulfillment", t.reference  # no checkout holds in this race
        f = Fulfillment.objects.select_related("order").get(pk=int(ident))
        order = f.order
        taken_orders.add(order.number)
        decisions = RoutingDecision.objects.filter(order=order, kind="store_event", cause=t.cause)
        assert decisions.exists(), (order.number, t.cause, list(RoutingDecision.objects.filter(order=order)
                                                                .values_list("kind", "cause")))
        at_b = Fulfillment.objects.filter(order=order, store=b, round__gt=1).exclude(
            status=FulfillmentStatus.CANCELLED
        ).exists()
        short = OrderLine.objects.filter(order=order, unfulfilled_qty__gt=0).exists()
        assert at_b or short, (order.number, t.outcome)
        told = "order.rerouted" if at_b else "order.lines_unfulfilled"  # the website learns it (outbox)
        assert OutboxEvent.objects.filter(topic=told, aggregate=order.aggregate).exists(), (order.number, told)
        (rerouted if at_b else unfulfilled).add(order.number)
    direct_b = 0
    for number, r in placed.items():
        order = Order.objects.get(number=number)
        line = OrderLine.objects.get(order=order)
        assert _units_live(order) + line.unfulfilled_qty == line.qty == 1, (number, r["body"])
        first_store = r["body"]["fulfillments"][0]["store"]["code"]
        assert first_store in (a.code, b.code), r["body"]
        if first_store == a.code:
            assert number in taken_orders, f"{number} was placed at A, whose units all went over the till"
        else:
            direct_b += 1
    live_at_b = Fulfillment.objects.filter(store=b).exclude(status=FulfillmentStatus.CANCELLED).count()
    assert row_b.reserved == live_at_b <= AT_B
    _audits_clean()

    outcomes = Counter(r.get("place", f"quote {r['quote']}") for r in checkouts)
    print(f"\n[tills vs checkouts] wall {wall:.2f} s for {len(calls.rows)} requests ({TILLS} tills, {CHECKOUTS} "
          f"checkouts, {LAST} units at A, {AT_B} at B)")
    print(f"  placements: {dict(outcomes)}; quoted at A: {quoted_at_a}; placed at A: {len(placed) - direct_b}, "
          f"at B directly: {direct_b}; the 409s' fresh promises deliver from: {dict(fresh_at)}")
    print(f"  taken at A by tills: {sum(t.units for t in taken)} reserved units of {len(taken_orders)} orders -> "
          f"re-routed to B: {len(rerouted)}, unfulfilled: {len(unfulfilled)}; shortfall at A: {row_a.shortfall} "
          f"(needs_count={row_a.needs_count}); B reserved {row_b.reserved}/{row_b.on_hand}")
    for kind, figures in calls.latencies().items():
        print(f"  {kind:9s} {figures}")


# --- 2. replays of one batch while the first is applied and reconciled --------------------------------------------

BATCH = 10
REPLAYS = 8
DELAYS = [0, 0, 0, 0, 0.05, 0.15, 0.3, 0.6]  # seconds after the barrier: some land while the first is reconciled


def _chain(tag: str, lat: float, lon: float, sku: str):
    """A store with BATCH units, all reserved for BATCH delivery orders placed over HTTP; a store nearby with BATCH
    units for the re-routes."""
    a = StoreFactory(code=f"{tag}-A", lat=lat, lon=lon, picking_capacity_per_hour=500)
    b = StoreFactory(code=f"{tag}-B", lat=lat + 0.0057, lon=lon + 0.0042, picking_capacity_per_hour=500)
    product = ProductFactory(sku=sku, price_vnd=PRICE)
    put_stock(a, product, BATCH)
    put_stock(b, product, BATCH)
    return a, b, product


def _place_all(base: str, channel_key: str, calls: Calls, *, a, product, lat: float, lon: float, tag: str) -> None:
    for n in range(BATCH):
        body = {"lines": [{"sku": product.sku, "qty": 1}], "customer": {**CUSTOMER, "phone": f"09034567{n:02d}"},
                "method": "delivery", "destination": {"lat": lat - 0.0005, "lon": lon - 0.0008},
                "payment_state": "paid"}
        status, placed, _, _ = calls.post(base, "/api/v1/orders/", channel_key, body, kind="order",
                                          idem=f"{tag}-{n}")
        assert status == 201, placed
        assert [f["store"]["code"] for f in placed["fulfillments"]] == [a.code], placed
    row = Stock.objects.get(store=a, product=product)
    assert (row.on_hand, row.reserved) == (BATCH, BATCH)  # nothing free at the till: the batch takes reservations


def _counts() -> dict[str, Any]:
    return {
        "movements": StockMovement.objects.count(),
        "taken": TakenReservation.objects.count(),
        "decisions": RoutingDecision.objects.count(),
        "outbox": OutboxEvent.objects.count(),
        "outbox_topics": Counter(OutboxEvent.objects.values_list("topic", flat=True)),
        "receipts": TillReceipt.objects.count(),
    }


def _delta(before: dict, after: dict) -> dict[str, Any]:
    out = {k: after[k] - before[k] for k in before if k != "outbox_topics"}
    topics = after["outbox_topics"] - before["outbox_topics"]
    out["outbox_topics"] = dict(sorted(topics.items()))
    return out


def test_replays_of_a_batch_during_its_reroute_apply_once(server, channel_key):
    base = server
    calls = Calls()
    # The twin: the same batch posted once, sequentially: what one application writes.
    twin = _chain("HCM-Q1-TWIN", 10.7743, 106.7038, "SF-TWIN")
    # The race, in Hà Nội (far from the twin: no store of one serves the other).
    race = _chain("HN-HK-RACE", 21.0285, 105.8542, "SF-RACE")
    for tag, (a, _, product), (lat, lon) in (("twin", twin, (10.7743, 106.7038)), ("race", race, (21.0285, 105.8542))):
        _place_all(base, channel_key, calls, a=a, product=product, lat=lat, lon=lon, tag=f"sf-{tag}")

    def batch(a, product) -> dict:
        return {"receipts": [_receipt(f"SF-RP-{n:03d}", product.sku, phone=f"09076543{n:02d}" if n % 2 else None)
                             for n in range(BATCH)]}

    (twin_key,) = _till_keys(twin[0], 1)
    before = _counts()
    status, once, _, _ = calls.post(base, "/api/v1/pos/sales/", twin_key, batch(twin[0], twin[2]), kind="pos_sale")
    assert status == 200 and once["summary"] == {"applied": BATCH, "duplicate": 0, "rejected": 0}, once
    one_application = _delta(before, _counts())
    # One sale movement per receipt (the re-routes' reservations at B write their own movements).
    assert StockMovement.objects.filter(reference__startswith=f"pos:{twin[0].code}:").count() == BATCH
    assert one_application["taken"] == BATCH, one_application
    assert one_application["decisions"] == BATCH and one_application["receipts"] == BATCH, one_application

    a, b, product = race
    (race_key,) = _till_keys(a, 1)
    body = batch(a, product)  # one body, resent as is: the same receipts, the same content

    def resend(j: int) -> dict:
        time.sleep(DELAYS[j])
        status, answer, started, ended = calls.post(base, "/api/v1/pos/sales/", race_key, body, kind="pos_resend")
        return {"j": j, "status": status, "body": answer, "started": started, "ended": ended}

    before = _counts()
    t0 = time.monotonic()
    results = _run_behind_barrier([lambda j=j: resend(j) for j in range(REPLAYS)])
    wall = time.monotonic() - t0
    after = _counts()

    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    assert all(r["status"] == 200 for r in results), [(r["status"], r["body"]) for r in results]
    # Each receipt applied exactly once across all the resends; every other answer is the first result again.
    applied: dict[str, dict] = {}
    appliers: dict[str, int] = {}
    for r in results:
        for verdict in r["body"]["results"]:
            assert verdict["status"] in ("applied", "duplicate"), verdict
            if verdict["status"] == "applied":
                assert verdict["receipt_id"] not in applied, f"{verdict['receipt_id']} applied twice"
                applied[verdict["receipt_id"]] = verdict["result"]
                appliers[verdict["receipt_id"]] = r["j"]
    assert sorted(applied) == [x["receipt_id"] for x in body["receipts"]]
    for r in results:
        for verdict in r["body"]["results"]:
            if verdict["status"] == "duplicate":
                assert verdict["result"] == applied[verdict["receipt_id"]], (r["j"], verdict)
    assert all(sum(1 for x in res["taken_from_online"]) == 1 for res in applied.values()), applied

    # Exactly the rows of one application: the twin's, table by table and outbox topic by topic.
    race_delta = _delta(before, after)
    assert race_delta == one_application, (race_delta, one_application)
    assert StockMovement.objects.filter(reference__startswith=f"pos:{a.code}:").count() == BATCH
    assert TakenReservation.objects.filter(store=a).count() == BATCH
    assert RoutingDecision.objects.filter(cause__startswith=f"pos:{a.code}:").count() == BATCH
    taken = list(TakenReservation.objects.filter(store=a))
    assert all(t.reconciled_at is not None for t in taken), [(t.reference, t.outcome) for t in taken]
    assert len({(t.reference, t.cause) for t in taken}) == BATCH
    # The re-route happened once per order: B serves the ten orders, A holds nothing for units that are gone.
    row_a = _reserved_matches_ledger(a, product)
    row_b = _reserved_matches_ledger(b, product)
    assert (row_a.on_hand, row_a.reserved, row_a.shortfall) == (0, 0, 0)
    assert row_b.reserved == BATCH
    assert Fulfillment.objects.filter(store=b).exclude(status=FulfillmentStatus.CANCELLED).count() == BATCH
    assert not Fulfillment.objects.filter(store=a).exclude(status=FulfillmentStatus.CANCELLED).exists()
    _audits_clean()

    # The resends overlapped the application (they did not simply come after it).
    first_done = max(r["ended"] for r in results if r["j"] in set(appliers.values()))
    overlapping = sum(1 for r in results if r["j"] not in set(appliers.values()) and r["started"] < first_done)
    assert overlapping > 0, "no resend was in flight while the batch was applied"
    answers = Counter(tuple(sorted(r["body"]["summary"].items())) for r in results)
    print(f"\n[replays during the re-route] wall {wall:.2f} s, {REPLAYS} resends of {BATCH} receipts: "
          f"applied by request(s) {sorted(set(appliers.values()))}, {overlapping} resends in flight meanwhile")
    print(f"  answers (summary -> requests): {dict(answers)}")
    print(f"  one application wrote {one_application}; the race wrote the same")
    for kind, figures in calls.latencies().items():
        print(f"  {kind:10s} {figures}")
