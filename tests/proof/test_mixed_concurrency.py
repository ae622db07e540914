"""Many clients at once on a few scarce SKUs, every channel mixed: website orders (pickup), POS sales, goods
receipts, cancellations, pickups handed over at the till and till receipts returned at another store, on real
PostgreSQL connections. Every operation's
invoke and result is recorded; afterwards the history must explain the final stock exactly:

    on_hand     = initial + received - sold at the till (but what it sold beyond the ledger) - handed over + returned
    unavailable = units returned here damaged (kept out of ATP)
    reserved    = units of the orders still waiting (placed, not cancelled, not handed over), less what till sales
                  took from them (a sale is never refused for stock: issue #18)
    shortfall   = units the till sales sold beyond the ledger (the row flagged for a count)

for every store and SKU, what the receipts said they took from online orders is what the ledger took, every take
was reconciled in the sale's own request, online ATP is never below zero, and both audits are clean."""

import os
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import Stock, TakenReservation
from orders import services as order_services
from orders.models import Fulfillment, FulfillmentStatus
from orders.pos.models import StoreApiKey
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory
from tests.pos.conftest import audits_clean

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

CLIENTS = int(os.environ.get("O2O_MIXED_CLIENTS", "64"))
SECONDS = float(os.environ.get("O2O_MIXED_SECONDS", "30"))
SKUS = 20
INITIAL = 3  # units of each SKU at each store: scarce, so that clients fight over them


@dataclass
class History:
    """What every client asked and what it was told, appended under a lock (a Jepsen-style history)."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, **op: Any) -> None:
        with self.lock:
            self.ops.append(op)


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL promise; the suite runs on PostgreSQL")


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_mixed_channels_on_scarce_stock(channel_key):
    stores = [
        StoreFactory(code="HCM-Q1-MIX", lat=10.7743, lon=106.7038),
        StoreFactory(code="HCM-Q3-MIX", lat=10.7835, lon=106.6870),
    ]
    products = [ProductFactory(sku=f"MIX-{i:02d}", price_vnd=100_000) for i in range(SKUS)]
    for s in stores:
        for p in products:
            put_stock(s, p, INITIAL)
    store_keys = {s.code: StoreApiKey.objects.create_key(name="till", store=s)[1] for s in stores}
    history = History()
    placed: list[dict[str, Any]] = []  # orders a client may cancel or hand over, shared between clients
    sold: list[dict[str, Any]] = []  # till sales a client may bring back at the other store
    placed_lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    start = threading.Barrier(CLIENTS)

    def place(rng: random.Random, web: APIClient, n: int) -> None:
        store = rng.choice(stores).code
        lines = {rng.choice(products).sku: rng.randint(1, 2) for _ in range(rng.randint(1, 2))}
        body = {
            "method": "pickup", "pickup_store": store, "customer": {"name": "Khách thử", "phone": "0901234567"},
            "lines": [{"sku": sku, "qty": q} for sku, q in lines.items()],
        }
        res = web.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"mix-{n}")
        history.record(op="place", store=store, lines=lines, status=res.status_code,
                       number=res.json().get("number") if res.status_code == 201 else None)
        if res.status_code == 201:
            with placed_lock:
                placed.append({"number": res.json()["number"], "store": store, "lines": lines})

    def take_placed(rng: random.Random) -> dict[str, Any] | None:
        with placed_lock:
            return placed.pop(rng.randrange(len(placed))) if placed else None

    def cancel(rng: random.Random, web: APIClient, n: int) -> None:
        order = take_placed(rng)
        if order is None:
            return
        res = web.post(f"/api/v1/orders/{order['number']}/cancel/", {}, format="json",
                       HTTP_IDEMPOTENCY_KEY=f"mix-cancel-{n}")
        history.record(op="cancel", number=order["number"], store=order["store"], lines=order["lines"],
                       status=res.status_code)

    def hand_over(rng: random.Random, web: APIClient, n: int) -> None:
        order = take_placed(rng)
        if order is None:
            return
        fulfillments = list(Fulfillment.objects.filter(order__number=order["number"]).select_related("pickup_code"))
        for f in fulfillments:  # the store works the pick list, as staff do in the admin
            for to in (FulfillmentStatus.PICKING, FulfillmentStatus.PACKED, FulfillmentStatus.READY_FOR_PICKUP):
                order_services.transition_fulfillment(fulfillment=f.pk, to=to, actor="staff@mix")
        code = Fulfillment.objects.select_related("pickup_code").get(pk=fulfillments[0].pk).pickup_code.code
        till = _client(store_keys[order["store"]])
        res = till.post(f"/api/v1/pos/pickups/{code}/handover/", {}, format="json")
        history.record(op="handover", number=order["number"], store=order["store"], lines=order["lines"],
                       status=res.status_code, state=res.json().get("status"))

    def sell(rng: random.Random, web: APIClient, n: int) -> None:
        store = rng.choice(stores).code
        sku, qty = rng.choice(products).sku, rng.randint(1, 2)
        receipt = {
            "receipt_id": f"MIX-R-{n}", "sold_at": timezone.now().isoformat(),
            "lines": [{"sku": sku, "qty": qty, "unit_price_vnd": 100_000}],
            "tenders": [{"type": "cash", "amount_vnd": 100_000 * qty}],
        }
        res = _client(store_keys[store]).post("/api/v1/pos/sales/", {"receipts": [receipt]}, format="json")
        verdict = res.json()["results"][0] if res.status_code == 200 else {"status": res.status_code}
        history.record(op="sell", store=store, lines={sku: qty}, status=verdict["status"], result=verdict)
        if verdict["status"] == "applied":
            with placed_lock:
                sold.append({"store": store, "receipt_id": receipt["receipt_id"], "sku": sku, "qty": qty})

    def return_at_other_store(rng: random.Random, web: APIClient, n: int) -> None:
        """Anything bought anywhere comes back at any store: a till receipt of one store returned at the other."""
        with placed_lock:
            sale = sold.pop(rng.randrange(len(sold))) if sold else None
        if sale is None:
            return
        at = next(s.code for s in stores if s.code != sale["store"])
        condition = rng.choice(["resellable", "resellable", "damaged"])
        body = {"receipt": {"store": sale["store"], "receipt_id": sale["receipt_id"]}, "reason": "đổi ý",
                "lines": [{"sku": sale["sku"], "qty": sale["qty"], "condition": condition}]}
        res = _client(store_keys[at]).post("/api/v1/pos/returns/", body, format="json",
                                           HTTP_IDEMPOTENCY_KEY=f"mix-return-{n}")
        history.record(op="return", store=at, lines={sale["sku"]: sale["qty"]}, condition=condition,
                       status=res.status_code)

    def receive(rng: random.Random, web: APIClient, n: int) -> None:
        store = rng.choice(stores).code
        sku = rng.choice(products).sku
        body = {"receipt_id": f"MIX-DN-{n}", "source": "DC Bình Dương", "lines": [{"sku": sku, "qty": 2}]}
        res = _client(store_keys[store]).post("/api/v1/pos/goods-receipts/", body, format="json")
        history.record(op="receive", store=store, lines={sku: 2}, status=res.status_code)

    # The mix of a busy day: mostly web orders and till sales, some cancellations, pickups and deliveries in.
    mix = [place] * 8 + [sell] * 6 + [cancel] * 2 + [hand_over] * 2 + [receive] * 1 + [return_at_other_store] * 2

    def client(index: int) -> None:
        rng = random.Random(index)
        web = _client(channel_key)
        try:
            start.wait()
            n = 0
            while time.monotonic() < deadline:
                n += 1
                op = rng.choice(mix)
                try:
                    op(rng, web, index * 100_000 + n)
                except Exception as exc:  # noqa: BLE001 - every failure is part of the history
                    history.record(op=op.__name__, status="exception", error=repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "clients did not finish: a deadlock?"

    ops = history.ops
    kinds = Counter((o["op"], o["status"]) for o in ops)
    print(f"{CLIENTS} clients, {SECONDS:.0f} s, {len(ops)} operations:", dict(kinds))
    assert not [o for o in ops if o["status"] == "exception" or (isinstance(o["status"], int) and o["status"] >= 500)]
    assert kinds[("place", 201)] > 0 and kinds[("sell", "applied")] > 0 and kinds[("return", 201)] > 0, kinds
    assert kinds[("place", 409)] > 0, f"stock was never contended: {kinds}"

    # Replay the history: what each store and SKU must hold now. A till sale is never refused for stock (the shop
    # floor is the truth): it takes free units, then units pickup orders held at that store (the order is offered a
    # change; its handover gives only what is still reserved), and what even those could not give is the row's
    # shortfall (on hand stays put, the row waits for a count). What a sale took from which order is the server's
    # TakenReservation; that the sales said the same (taken_from_online) is checked first.
    taken_by_order: dict[str, Counter] = defaultdict(Counter)
    taken_at: Counter = Counter()
    for t in TakenReservation.objects.select_related("store", "product").filter(store__in=stores):
        number = Fulfillment.objects.filter(pk=int(t.reference.split(":")[1])).values_list("order__number", flat=True).get()
        taken_by_order[number][t.product.sku] += t.units
        taken_at[(t.store.code, t.product.sku)] += t.units
        assert t.reconciled_at is not None, f"{t} was not reconciled in the sale's request"
    said: Counter = Counter()
    for o in ops:
        if o["op"] == "sell" and o["status"] == "applied":
            for line in o["result"]["result"]["taken_from_online"]:
                said[(o["store"], line["sku"])] += line["qty"]
    assert said == taken_at, "what the receipts said they took from online orders is not what the ledger took"
    on_hand: dict[tuple[str, str], int] = defaultdict(int)
    reserved: dict[tuple[str, str], int] = defaultdict(int)
    unavailable: dict[tuple[str, str], int] = defaultdict(int)
    shortfall: dict[tuple[str, str], int] = defaultdict(int)
    for s in stores:
        for p in products:
            on_hand[(s.code, p.sku)] = INITIAL
    waiting: dict[str, dict[str, Any]] = {}
    for o in ops:
        if o["op"] == "place" and o["status"] == 201:
            waiting[o["number"]] = o
        elif o["op"] == "receive" and o["status"] == 201:
            for sku, q in o["lines"].items():
                on_hand[(o["store"], sku)] += q
        elif o["op"] == "sell" and o["status"] == "applied":
            for line in o["result"]["result"]["lines"]:
                on_hand[(o["store"], line["sku"])] -= line["qty"] - line["shortfall"]
                shortfall[(o["store"], line["sku"])] += line["shortfall"]
        elif o["op"] == "handover" and o["status"] == 200 and o["state"] == FulfillmentStatus.COLLECTED:
            for sku, q in o["lines"].items():
                on_hand[(o["store"], sku)] -= q - taken_by_order[o["number"]][sku]
            waiting.pop(o["number"])
        elif o["op"] == "return" and o["status"] == 201:
            for sku, q in o["lines"].items():
                on_hand[(o["store"], sku)] += q
                if o["condition"] != "resellable":
                    unavailable[(o["store"], sku)] += q
        elif o["op"] == "cancel" and o["status"] == 200:
            waiting.pop(o["number"])
    for o in waiting.values():
        for sku, q in o["lines"].items():
            reserved[(o["store"], sku)] += q - taken_by_order[o["number"]][sku]

    for row in Stock.objects.select_related("store", "product").filter(store__in=stores):
        pair = (row.store.code, row.product.sku)
        assert row.on_hand == on_hand[pair], (
            pair, row.on_hand, on_hand[pair], [o for o in ops if o.get("lines", {}).get(pair[1]) and o.get("store") == pair[0]]
        )
        assert row.reserved == reserved[pair], (pair, row.reserved, reserved[pair])
        assert row.unavailable == unavailable[pair], (pair, row.unavailable, unavailable[pair])
        assert row.shortfall == shortfall[pair] and row.needs_count == bool(shortfall[pair]), (pair, row.shortfall)
        # Nothing promised twice: what is still held for waiting orders is on the shelf as the ledger knows it.
        assert row.on_hand - row.reserved - row.safety - row.unavailable >= 0, pair
    assert audits_clean()
