"""Fill a database with the OLD code (commit 35a9c31, before the POS moved to orders/pos), through its services.

Not a test module: tests/proof/test_migrate_forward.py runs it in a subprocess with the old tree first on sys.path
and DATABASE_URL pointing at a scratch database the old code has just migrated:

    python tests/proof/migrate_forward_fill.py <old tree> <manifest.json>

It writes what the new code needs to find the old rows again (keys, receipt ids, order numbers, request bodies to
replay) as JSON to <manifest.json>. Everything goes through the old code's doors: its HTTP API (the website's sales
channel key, the stores' POS keys) served in process by Django's test client, its services (orders, loyalty,
inventory, imports) and its management commands (load_demo_chain, create_store_key, setup_roles, create_staff).
Any unexpected answer stops the fill with the answer printed, so the test fails at the step that broke.

Only the names the old tree has are used (inventory.pos, o2o.staff, inventory.imports); the current tree's names
would not import here, which is the point."""

import json
import os
import sys
from datetime import time, timedelta
from io import StringIO
from pathlib import Path

OLD_TREE, MANIFEST = sys.argv[1], sys.argv[2]
# The old tree first: `inventory`, `orders`, `o2o` ... must be the old packages, never the current checkout's.
sys.path[:] = [OLD_TREE] + [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
os.chdir(OLD_TREE)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from inventory.pos.models import StoreApiKey  # noqa: E402  (the old home of the POS: only the old tree has it)
from rest_framework.test import APIClient  # noqa: E402

from inventory import imports  # noqa: E402
from inventory import services as stock  # noqa: E402
from inventory.models import MovementReason, OpeningHours, Product, Store  # noqa: E402
from loyalty import services as loyalty  # noqa: E402
from loyalty.models import Member  # noqa: E402
from o2o.models import SalesChannel, SalesChannelKey  # noqa: E402
from orders import services as orders  # noqa: E402
from orders.models import Order  # noqa: E402

BEN_THANH = {"lat": 10.7725, "lon": 106.6980}
CUSTOMER = {"name": "Nguyễn Văn A", "phone": "0901 234 567"}
P1, P2, P3, P4 = "+84901234567", "+84912345678", "+84987654321", "+84933333333"
EARNED: dict[str, int] = {}  # points earned per receipt id, as the old sales sync answered


class FillFailed(SystemExit):
    pass


def check(response, *codes):
    if response.status_code not in codes:
        raise FillFailed(f"{response.request['REQUEST_METHOD']} {response.request['PATH_INFO']}: expected "
                         f"{codes}, got {response.status_code}: {response.content.decode()[:2000]}")
    return response.json()


def client(key: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return c


def store_key(code: str, name: str) -> str:
    """A POS key through the old command (`manage.py create_store_key`), which prints it once."""
    out = StringIO()
    call_command("create_store_key", code, name=name, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def sale(till: APIClient, rid: str, lines, *, phone=None, points=0, minutes_ago=5) -> dict:
    """One receipt through the old sales sync: lines (sku, qty, unit price); paid in cash (minus a points tender)."""
    body_lines = [{"sku": sku, "qty": qty, "unit_price_vnd": price} for sku, qty, price in lines]
    total = sum(x["qty"] * x["unit_price_vnd"] for x in body_lines)
    tenders = [{"type": "cash", "amount_vnd": total - points * 100}]
    if points:
        tenders.append({"type": "points", "points": points})
    body = {
        "receipt_id": rid,
        "sold_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat(),
        "lines": body_lines,
        "tenders": tenders,
    }
    if phone:
        body["member_phone"] = phone
    answer = check(till.post("/api/v1/pos/sales/", {"receipts": [body]}, format="json"), 200)
    if answer["results"][0]["status"] != "applied":
        raise FillFailed(f"receipt {rid} not applied: {answer}")
    EARNED[rid] = answer["results"][0]["result"]["points"]["earned"] if phone else 0
    return body


def walk(order_number: str, steps) -> None:
    """Move every fulfillment of the order along `steps` through the orders service (the store's queue)."""
    order = Order.objects.get(number=order_number)
    for f in order.fulfillments.order_by("pk"):
        for to in steps:
            orders.transition_fulfillment(fulfillment=f.pk, to=to, actor="staff:migfwd")


def main() -> None:
    # --- the chain, through the old loader (load_demo_chain --dir): three stores around Bến Thành, four products,
    # seeded opening stock (load_opening_balances); then a delivery on top of it everywhere, a safety stock, a hold
    chain = Path(MANIFEST).parent / "chain"
    chain.mkdir(exist_ok=True)
    every_day = {day: [["00:00", "23:59"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    places = [("MF-Q1", "Q1 Lê Lợi", 10.7743, 106.7038), ("MF-Q3", "Q3 Võ Văn Tần", 10.7835, 106.6870),
              ("MF-Q7", "Q7 Phú Mỹ Hưng", 10.7295, 106.7218)]
    (chain / "stores.json").write_text(json.dumps([
        {"code": code, "name": name, "city": "Ho Chi Minh City", "district": "Quận 1", "lat": lat, "lon": lon,
         "opening_hours": every_day, "delivery_radius_km": 8, "picking_capacity_per_hour": 30}
        for code, name, lat, lon in places]), encoding="utf-8")
    catalogue = [("AO-THUN-M", 200_000, "ao-thun"), ("NOI-INOX", 300_000, "gia-dung"), ("NON-LA", 150_000, "non"),
                 ("KHAN-TAM", 90_000, "khan")]
    (chain / "products.json").write_text(json.dumps([
        {"sku": sku, "name": sku.title(), "barcode": f"893000000{i:04d}", "price_vnd": price, "category": category}
        for i, (sku, price, category) in enumerate(catalogue)]), encoding="utf-8")
    call_command("load_demo_chain", dir=str(chain), seed=7, stdout=StringIO())
    OpeningHours.objects.update(closes=time(23, 59, 59))  # open around the clock: the proof runs at any hour
    stores = {store.code: store for store in Store.objects.all()}
    products = {product.sku: product for product in Product.objects.all()}
    if sorted(stores) != [code for code, *_ in places] or len(products) != len(catalogue):
        raise FillFailed(f"the loader made {sorted(stores)} and {sorted(products)}")
    for store in stores.values():
        for product in products.values():
            stock.adjust_stock(store=store, product=product, reason=MovementReason.GOODS_RECEIPT, actor="migfwd",
                               on_hand=20, idempotency_key=f"dc:{store.code}:{product.sku}")
    stock.set_stock_levels(store=stores["MF-Q1"], product=products["AO-THUN-M"], actor="migfwd", safety=2, target=25)
    stock.hold_stock(store=stores["MF-Q7"], quantities={products["KHAN-TAM"]: 1}, ttl_seconds=900, actor="migfwd")

    # --- keys: the website's sales channel, one POS key per store (through the old command) ------------------------
    channel = SalesChannel.objects.create(code="website", name="Website")
    _, channel_key = SalesChannelKey.objects.create_key(name="website", channel=channel)
    keys = {code: store_key(code, "till-1") for code in stores}
    web = client(channel_key)
    till = {code: client(key) for code, key in keys.items()}

    # --- staff: the roles and a store-scoped member of staff, a head-office user (old o2o.staff) --------------------
    call_command("setup_roles", stdout=StringIO())
    call_command("create_staff", "lan.q1", role="store", stores="MF-Q1", password="migfwd-pass-1", stdout=StringIO())
    call_command("create_staff", "hq.an", role="head-office", password="migfwd-pass-2", stdout=StringIO())

    # --- till sales at MF-Q1: members earn and spend points ---------------------------------------------------------
    sale(till["MF-Q1"], "R-0001", [("AO-THUN-M", 2, 200_000)], phone=P1)  # P1 earns 40
    sale(till["MF-Q1"], "R-0002", [("NON-LA", 1, 150_000)], phone=P1, points=30)  # P1 spends 30
    refunded = sale(till["MF-Q1"], "R-0003", [("NOI-INOX", 3, 100_000)], phone=P2)  # P2 earns 30; refunded below
    sale(till["MF-Q1"], "R-0004", [("KHAN-TAM", 1, 90_000)], phone=P2)  # voided below
    sale(till["MF-Q1"], "R-0005", [("AO-THUN-M", 1, 200_000), ("KHAN-TAM", 2, 90_000)], phone=P1)  # returned at MF-Q3
    sale(till["MF-Q3"], "R-0101", [("NON-LA", 2, 150_000)], phone=P3)  # P3, merged into P1 below
    sale(till["MF-Q3"], "R-0102", [("KHAN-TAM", 1, 90_000)])  # no member

    # a till refund of part of a receipt, by the old refund_receipt (POST /sales/{id}/refunds/): 1 of 3 units
    old_refund = {"refund_id": "RF-0001", "lines": [{"sku": "NOI-INOX", "qty": 1, "resellable": True}]}
    old_refund_result = check(till["MF-Q1"].post("/api/v1/pos/sales/R-0003/refunds/", old_refund, format="json"), 201)
    check(till["MF-Q1"].post("/api/v1/pos/sales/R-0004/void/", {}, format="json"), 200, 201)

    # --- web orders: delivery (walked to delivered), pickup (handed over at the till), points tender, cancelled ------
    def place(body, key):
        return check(web.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key), 201)

    delivery = place({"lines": [{"sku": "AO-THUN-M", "qty": 2}, {"sku": "NOI-INOX", "qty": 1}], "customer": CUSTOMER,
                      "method": "delivery", "destination": BEN_THANH, "payment_state": "paid",
                      "loyalty": {"phone": CUSTOMER["phone"]}}, "web-1")
    walk(delivery["number"], ["picking", "packed", "handed_to_courier", "delivered"])
    pickup = place({"lines": [{"sku": "NON-LA", "qty": 1}], "customer": CUSTOMER, "method": "pickup",
                    "pickup_store": "MF-Q1", "payment_state": "paid"}, "web-2")
    walk(pickup["number"], ["picking", "packed", "ready_for_pickup"])
    code = Order.objects.get(number=pickup["number"]).fulfillments.get().pickup_code.code
    check(till["MF-Q1"].get(f"/api/v1/pos/pickups/{code}/"), 200)
    check(till["MF-Q1"].post(f"/api/v1/pos/pickups/{code}/handover/", {}, format="json"), 200, 201)
    hold = check(web.post("/api/v1/loyalty/redemptions/", {"phone": P1, "points": 5}, format="json",
                          HTTP_IDEMPOTENCY_KEY="hold-1"), 201)
    open_order = place({"lines": [{"sku": "KHAN-TAM", "qty": 2}], "customer": CUSTOMER, "method": "delivery",
                        "destination": BEN_THANH, "payment_state": "paid",
                        "loyalty": {"phone": P1, "hold_id": hold["id"]}}, "web-3")  # left open: live reservations
    cancelled = place({"lines": [{"sku": "NON-LA", "qty": 1}], "customer": CUSTOMER, "method": "delivery",
                       "destination": BEN_THANH}, "web-4")
    check(web.post(f"/api/v1/orders/{cancelled['number']}/cancel/", {}, format="json"), 200)

    # --- returns at another store (orders.returns): the delivered web order and a till receipt of MF-Q1 at MF-Q3 ----
    check(till["MF-Q3"].post("/api/v1/pos/returns/", {"order": delivery["number"], "reason": "size",
                                                      "lines": [{"sku": "AO-THUN-M", "qty": 1}]},
                             format="json", HTTP_IDEMPOTENCY_KEY="ret-1"), 201)
    check(till["MF-Q3"].post("/api/v1/pos/returns/", {"receipt": {"store": "MF-Q1", "receipt_id": "R-0005"},
                                                      "lines": [{"sku": "KHAN-TAM", "qty": 1, "condition": "damaged"}]},
                             format="json", HTTP_IDEMPOTENCY_KEY="ret-2"), 201)

    # --- a count, a goods receipt, a transfer at the tills; an import of a delivery note by head office ---------------
    count = {"count_id": "CC-0001", "counted_at": timezone.now().isoformat(),
             "lines": [{"sku": "NON-LA", "counted": 15}, {"sku": "KHAN-TAM", "counted": 19}]}
    check(till["MF-Q3"].post("/api/v1/pos/counts/", count, format="json"), 201)
    goods = {"receipt_id": "DN-0001", "source": "DC Bình Dương",
             "lines": [{"sku": "AO-THUN-M", "qty": 12}, {"sku": "NOI-INOX", "qty": 4}]}
    check(till["MF-Q7"].post("/api/v1/pos/goods-receipts/", goods, format="json"), 201)
    transfer = check(till["MF-Q1"].post("/api/v1/pos/transfers/", {
        "transfer_id": "TR-0001", "to_store": "MF-Q7", "lines": [{"sku": "AO-THUN-M", "qty": 3}, {"sku": "NON-LA", "qty": 2}],
    }, format="json"), 201)
    check(till["MF-Q7"].post(f"/api/v1/pos/transfers/{transfer['id']}/receive/",
                             {"lines": [{"sku": "AO-THUN-M", "qty": 3}, {"sku": "NON-LA", "qty": 1}]}, format="json"), 200, 201)
    in_transit = check(till["MF-Q7"].post("/api/v1/pos/transfers/", {
        "transfer_id": "TR-0002", "to_store": "MF-Q3", "lines": [{"sku": "NOI-INOX", "qty": 1}]}, format="json"), 201)
    hq = get_user_model().objects.get(username="hq.an")
    rows = [{"_row": 2, "store": "MF-Q7", "receipt_id": "DN-IMP-1", "sku": "NON-LA", "qty": "6", "source": "DC"}]
    preview, stock_import = imports.prepare_import(kind="goods_receipts", rows=rows, file_name="dn.csv", user=hq,
                                                   store_ids=None)
    if stock_import is None:
        raise FillFailed(f"import refused: {preview}")
    done, errors = imports.confirm_import(stock_import_id=stock_import.pk, store_ids=None)
    if errors is not None or done.status != "done":
        raise FillFailed(f"import not applied: {done.status} {done.results} {errors}")

    # --- members: a sign-up without a purchase, and a duplicate merged into P1 --------------------------------------
    loyalty.get_or_create_member(phone=P4, name="Chị Bốn", channel="website")
    keep = Member.objects.get(phone=P1)
    loyalty.merge_members(keep=keep, merge=Member.objects.get(phone=P3), actor="staff:migfwd")

    with open(MANIFEST, "w", encoding="utf-8") as fh:
        json.dump({
            "keys": keys, "channel_key": channel_key,
            "members": {"P1": P1, "P2": P2, "P3": P3, "P4": P4},
            "refunded_receipt": refunded, "refunded_receipt_points": EARNED[refunded["receipt_id"]],
            "old_refund": old_refund, "old_refund_result": old_refund_result,
            "orders": {"delivery": delivery["number"], "pickup": pickup["number"], "open": open_order["number"],
                       "cancelled": cancelled["number"]},
            "pickup_code": code, "count": count, "goods": goods, "transfer": transfer["id"],
            "in_transit": in_transit["id"], "hold": hold["id"],
        }, fh, ensure_ascii=False, indent=1)
    print("filled through the old code:", ", ".join(f"{m.__name__}={m.objects.count()}" for m in (Order, Member, StoreApiKey)))


if __name__ == "__main__":
    main()
