"""Work on the old rows with the CURRENT code, after `manage.py migrate` has moved the POS models to orders/pos.

Not a test module: tests/proof/test_migrate_forward.py runs it in a subprocess from the current checkout, with
DATABASE_URL pointing at the database migrate_forward_fill.py filled through the old code:

    python tests/proof/migrate_forward_check.py <manifest.json> <observations.json>

It asks the current code's doors what the old code left behind, and writes what it was told, as JSON, to
<observations.json>; the test decides what is right. Nothing is asserted here, so that a failure names the one
observation that is wrong rather than stopping at the first."""

import json
import os
import sys
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST, OBSERVATIONS = sys.argv[1], sys.argv[2]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if os.path.abspath(p or ".") != str(Path(__file__).resolve().parent)]
os.chdir(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")

import django  # noqa: E402

django.setup()

from django.apps import apps  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from inventory.models import Store  # noqa: E402
from inventory.staff.scope import store_ids_for  # noqa: E402
from loyalty.models import Member  # noqa: E402
from orders.models import Order  # noqa: E402
from orders.pos.models import StoreApiKey, TillReceipt, TillReceiptLine, TillRefund  # noqa: E402
from orders.returns import services as returns  # noqa: E402
from orders.returns.models import Return  # noqa: E402
from orders.services import transition_fulfillment  # noqa: E402


def client(key: str | None) -> APIClient:
    c = APIClient()
    if key:
        c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return c


def answer(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = response.content.decode()[:500]
    return {"status": response.status_code, "body": body}


def member(phone: str) -> dict:
    m = Member.objects.get(phone=phone)
    return {"available": m.available, "pending": m.pending, "held": m.held, "merged_into": m.merged_into_id and
            Member.objects.get(pk=m.merged_into_id).phone}


def main() -> None:
    seen: dict = {}
    # Which tables the current models use, first: asked of the models alone, so it is known even when the rest fails.
    seen["pos_tables"] = {model._meta.label: model._meta.db_table for model in apps.get_app_config("pos").get_models()}
    try:
        observe(json.loads(Path(MANIFEST).read_text(encoding="utf-8")), seen)
    finally:  # what was seen up to a failure is written too; the exception still ends the process non-zero
        Path(OBSERVATIONS).write_text(json.dumps(seen, ensure_ascii=False, indent=1, default=str), encoding="utf-8")


def observe(m: dict, seen: dict) -> None:
    q1, q3, q7 = (client(m["keys"][code]) for code in ("MF-Q1", "MF-Q3", "MF-Q7"))
    web = client(m["channel_key"])
    P1, P2, P3 = m["members"]["P1"], m["members"]["P2"], m["members"]["P3"]

    # --- the keys made by the old code authenticate, bound to their store, each on its own surface only -------------
    seen["keys_in_pos_table"] = sorted(StoreApiKey.objects.values_list("store__code", flat=True))
    seen["receipt_at_its_store"] = answer(q1.get("/api/v1/pos/sales/R-0003/"))
    seen["receipt_at_other_store"] = answer(q3.get("/api/v1/pos/sales/R-0003/"))
    seen["store_key_on_website"] = answer(q1.get("/api/v1/orders/"))
    seen["channel_key_on_pos"] = answer(web.get("/api/v1/pos/sales/R-0003/"))
    seen["no_key_on_pos"] = answer(client(None).get("/api/v1/pos/sales/R-0003/"))
    seen["delivery_order"] = answer(web.get(f"/api/v1/orders/{m['orders']['delivery']}/"))
    seen["pickup_lookup"] = answer(q1.get(f"/api/v1/pos/pickups/{m['pickup_code']}/"))
    seen["merged_member_balance"] = answer(q1.get(f"/api/v1/pos/members/{P3.replace('+', '%2B')}/balance/"))
    seen["stock_lookup"] = answer(q1.get("/api/v1/pos/stock/AO-THUN-M/"))

    # --- what the old code booked is a replay for the new code (same idempotency keys, same content hashes) -------
    receipt = m["refunded_receipt"]
    seen["resent_receipt"] = answer(q1.post("/api/v1/pos/sales/", {"receipts": [receipt]}, format="json"))
    seen["resent_old_refund"] = answer(
        q1.post(f"/api/v1/pos/sales/{receipt['receipt_id']}/refunds/", m["old_refund"], format="json"))
    seen["resent_count"] = answer(q3.post("/api/v1/pos/counts/", m["count"], format="json"))
    seen["resent_goods_receipt"] = answer(q7.post("/api/v1/pos/goods-receipts/", m["goods"], format="json"))
    seen["resent_handover"] = answer(q1.post(f"/api/v1/pos/pickups/{m['pickup_code']}/handover/", {}, format="json"))
    seen["resent_void"] = answer(q1.post("/api/v1/pos/sales/R-0004/void/", {}, format="json"))

    # --- the new refund door on the receipt the old refund_receipt already refunded 1 of 3 units of -------------------
    seen["P2_before"] = member(P2)
    rid = receipt["receipt_id"]
    seen["new_refund"] = answer(q1.post(f"/api/v1/pos/sales/{rid}/refunds/", {
        "refund_id": "RF-NEW-1", "lines": [{"sku": "NOI-INOX", "qty": 2, "resellable": True}]}, format="json"))
    seen["refund_beyond_sale"] = answer(q1.post(f"/api/v1/pos/sales/{rid}/refunds/", {
        "refund_id": "RF-NEW-2", "lines": [{"sku": "NOI-INOX", "qty": 1, "resellable": True}]}, format="json"))
    r3 = TillReceipt.objects.get(store__code="MF-Q1", receipt_id=rid)
    seen["refunds_of_receipt"] = sorted(
        TillRefund.objects.filter(receipt=r3, kind="refund").values_list("refund_id", "amount_vnd"))
    seen["refunded_qty"] = list(TillReceiptLine.objects.filter(receipt=r3).values_list("qty", "refunded_qty"))
    seen["receipt_total"] = r3.total_vnd
    seen["returns_of_receipt"] = list(Return.objects.filter(receipt=r3).values_list("opened_via", "status"))
    seen["P2_after"] = member(P2)
    # ... and the door itself, called as a service, on another old receipt (1 of its 2 shirts)
    result, replayed = returns.refund_till_receipt(
        store=Store.objects.get(code="MF-Q1"), receipt_id="R-0001", refund_id="RF-NEW-3",
        items=[returns.ReturnItem(sku="AO-THUN-M", qty=1)], content_hash="migfwd-direct", actor="pos:MF-Q1:migfwd",
    )
    seen["direct_refund"] = {"amount_vnd": result["amount_vnd"], "replayed": replayed, "points": result["points"]}

    # --- new writes into the old tables and onto the old rows --------------------------------------------------------
    seen["new_sale"] = answer(q1.post("/api/v1/pos/sales/", {"receipts": [{
        "receipt_id": "R-NEW-1", "sold_at": timezone.now().isoformat(), "member_phone": P1,
        "lines": [{"sku": "NON-LA", "qty": 1, "unit_price_vnd": 150_000}],
        "tenders": [{"type": "cash", "amount_vnd": 150_000}]}]}, format="json"))
    seen["receive_old_transfer"] = answer(q3.post(f"/api/v1/pos/transfers/{m['in_transit']}/receive/",
                                                  {"lines": [{"sku": "NOI-INOX", "qty": 1}]}, format="json"))
    seen["new_count"] = answer(q7.post("/api/v1/pos/counts/", {
        "count_id": "CC-NEW-1", "counted_at": timezone.now().isoformat(), "lines": [{"sku": "KHAN-TAM", "counted": 18}]},
        format="json"))
    open_order = Order.objects.get(number=m["orders"]["open"])
    for f in open_order.fulfillments.order_by("pk"):
        for to in ("picking", "packed", "handed_to_courier", "delivered"):
            transition_fulfillment(fulfillment=f.pk, to=to, actor="staff:migfwd")
    seen["open_order_now"] = Order.objects.get(pk=open_order.pk).status
    seen["return_new_sale_elsewhere"] = answer(q3.post("/api/v1/pos/returns/", {
        "receipt": {"store": "MF-Q1", "receipt_id": "R-NEW-1"}, "lines": [{"sku": "NON-LA", "qty": 1}]},
        format="json", HTTP_IDEMPOTENCY_KEY="ret-new-1"))

    # --- staff: the old role groups and store scopes, read by the new code's names -----------------------------------
    lan = get_user_model().objects.get(username="lan.q1")
    seen["staff_perms"] = {p: lan.has_perm(p) for p in ("pos.view_tillreceipt", "pos.view_stockcount",
                                                        "inventory.view_stock", "inventory.view_tillreceipt")}
    seen["staff_scope"] = sorted(Store.objects.filter(pk__in=store_ids_for(lan)).values_list("code", flat=True))

    # --- the audits, after all of the above (the same commands as `manage.py inventory_audit` / `loyalty_audit`) ------
    for command in ("inventory_audit", "loyalty_audit"):
        out = StringIO()
        try:
            call_command(command, stdout=out, stderr=out)
            seen[f"{command}_after"] = {"ok": True, "output": out.getvalue()}
        except CommandError as exc:  # what manage.py turns into a non-zero exit
            seen[f"{command}_after"] = {"ok": False, "output": f"{out.getvalue()}{exc}"}


if __name__ == "__main__":
    main()
