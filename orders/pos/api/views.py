"""The POS API (v1), for the tills of one store each: `Authorization: Api-Key <store key>`.

Views parse, call one service or selector with the caller's store (request.auth.store), render. Another store's
objects are not found (404); a sales-channel key is refused (401)."""

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.models import Store
from loyalty import selectors as loyalty_selectors
from o2o.api_keys import key_from_request
from o2o.domain_errors import InvalidInput
from o2o.idempotency import request_fingerprint
from orders.pos import selectors, services
from orders.pos.api import examples as ex
from orders.pos.api import serializers as io
from orders.pos.auth import IsStoreTill, StoreKeyAuthentication
from orders.pos.exceptions import BatchTooLarge
from orders.pricing.api import serializers as pricing_io

TAG = ["POS"]
ERRORS = {
    400: OpenApiResponse(description="Invalid input (`invalid`, `malformed_request`)"),
    401: OpenApiResponse(description="Missing, revoked or non-store key (`invalid_api_key`, `not_authenticated`)"),
    403: OpenApiResponse(description="Not a store key (`forbidden`)"),
}
NOT_FOUND = {404: OpenApiResponse(description="Not found at this store (another store's ids are not found either)")}
REUSED = {422: OpenApiResponse(description="`receipt_id_reused`: this id was used with other content; or `unknown_sku`")}

class PosView(APIView):
    authentication_classes = [StoreKeyAuthentication]
    permission_classes = [IsStoreTill]

    @property
    def store(self) -> Store:
        return self.request.auth.store

    @property
    def till(self) -> str:
        return self.request.auth.name


def _validated(serializer_class, data):
    body = serializer_class(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data


def _answer(result: dict, replayed: bool) -> Response:
    return Response(result, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)


class SalesSyncView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_sales_sync",
        summary="Sync a batch of till receipts (idempotent per receipt id)",
        description=(
            "Receipts queued by a till (possibly offline) are applied one by one, each atomically: stock down, points "
            "redeemed and earned, prices checked. Each applied receipt is priced as the policy in force would have "
            "at its `sold_at` (this store, the tills' channel, its member and `codes`): a difference is never a "
            "refusal (the goods have left) but a price exception in the operations queue (`price_exceptions` in the "
            "result, with `policy_total_vnd`); a `price_override` records the manager's reason and staff id on them; "
            "a single-use code is consumed by the first receipt that applies it, in any channel. The receipt's "
            "`codes`, `promotions` and `price_override` are part of its content: resending the id with others is "
            "`receipt_id_reused`. Per receipt the answer is `applied`, `duplicate` (same id, same content: the first "
            "result again) or `rejected` with a `reason`; one bad receipt never blocks the others, and a rejected "
            "receipt writes nothing. A receipt that does not validate is rejected with reason `invalid` and the field "
            f"errors in `details`. At most {settings.POS_MAX_RECEIPTS_PER_BATCH} receipts and "
            f"{settings.POS_MAX_BATCH_BYTES} bytes per call (else 413 `batch_too_large`, limits in `details`)."
        ),
        request=io.SalesSyncInput,
        responses={
            200: io.SalesSyncOutput,
            **ERRORS,
            413: OpenApiResponse(description="`batch_too_large` (or `payload_too_large`)"),
        },
        examples=[
            ex.request("Three receipts: a member paying partly with points, an unknown SKU, a malformed one",
                       ex.SALES_REQUEST),
            ex.response("Per receipt: applied or rejected (one bad receipt never blocks the others)", ex.SALES_ANSWER),
            ex.request("A receipt with a coupon code, the promotions the till applied and a manager's override",
                       ex.SALES_PRICED_REQUEST),
            ex.response("A resend: the first answer again (duplicate), a reused id with other content (rejected)",
                        ex.SALES_REPLAY),
            ex.response("Applied with the code consumed and the overridden line queued as a price exception",
                        ex.SALES_PRICED_ANSWER),
            ex.response("Too many receipts or bytes: the limits", ex.TOO_LARGE, 413),
        ],
    )
    def post(self, request: Request) -> Response:
        limits = {"max_receipts": settings.POS_MAX_RECEIPTS_PER_BATCH, "max_bytes": settings.POS_MAX_BATCH_BYTES}
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.POS_MAX_BATCH_BYTES:
            raise BatchTooLarge(details={**limits, "bytes": length})
        data = request.data
        if not isinstance(data, dict) or not isinstance(data.get("receipts"), list):
            raise InvalidInput("Send {\"receipts\": [...]}.", details={"receipts": "A list of receipts is required."})
        raw = data["receipts"]
        if len(raw) > settings.POS_MAX_RECEIPTS_PER_BATCH:
            raise BatchTooLarge(details={**limits, "receipts": len(raw)})
        entries: list = []
        # One serializer for every receipt, as a ListSerializer does: its fields are built once, not per receipt.
        check = io.ReceiptInput()
        for item in raw:
            rid = item.get("receipt_id") if isinstance(item, dict) else None
            rid = rid if isinstance(rid, str) else None
            try:
                q = check.run_validation(item)
            except ValidationError as exc:
                details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
                entries.append(
                    services.Outcome(rid, "rejected", reason="invalid", message="Invalid receipt.", details=details)
                )
                continue
            entries.append(
                services.Sale(
                    receipt_id=q["receipt_id"],
                    sold_at=q["sold_at"],
                    lines=tuple(services.SaleLine(**line) for line in q["lines"]),
                    tenders=tuple(services.Tender(**tender) for tender in q["tenders"]),
                    member_phone=q.get("member_phone") or None,
                    content_hash=request_fingerprint(item),
                    codes=tuple(q.get("codes") or ()),
                    promotions=tuple(dict(p) for p in q.get("promotions") or ()),
                    override=dict(q["price_override"]) if q.get("price_override") else None,
                )
            )
        outcomes = services.sync_sales(store=self.store, sales=entries, till=self.till)
        summary = {"applied": 0, "duplicate": 0, "rejected": 0}
        for outcome in outcomes:
            summary[outcome.status] += 1
        return Response({"results": [o.as_dict() for o in outcomes], "summary": summary})


class ReceiptDetailView(PosView):
    @extend_schema(
        tags=TAG, operation_id="pos_receipt", summary="A receipt of this store",
        responses={200: io.ReceiptDetailOutput, **ERRORS, **NOT_FOUND},
        examples=[ex.response("A receipt with one refund", ex.RECEIPT_DETAIL), ex.not_found()],
    )
    def get(self, request: Request, receipt_id: str) -> Response:
        r = selectors.receipt_for_store(store=self.store, receipt_id=receipt_id)
        return Response(
            {
                "receipt_id": r.receipt_id, "status": r.status, "sold_at": r.sold_at, "received_at": r.received_at,
                "total_vnd": r.total_vnd, "member_phone": r.member_phone, "result": r.result,
                "refunds": [x.result for x in r.refunds.all()],
            }
        )


class ReceiptVoidView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_receipt_void",
        summary="Void a receipt of this store (idempotent)",
        description="The sale's stock effect is undone, earned points reversed, redeemed points given back. Voiding "
        "again returns the first answer. A receipt with refunds cannot be voided (409 `receipt_refunded`).",
        request=None,
        responses={200: io.TillRefundOutput, **ERRORS, **NOT_FOUND, 409: OpenApiResponse(description="`receipt_refunded`")},
        examples=[ex.response("Voided: units back on hand, points reversed and given back", ex.VOID_RESULT),
                  ex.not_found()],
    )
    def post(self, request: Request, receipt_id: str) -> Response:
        return Response(services.void_receipt(store=self.store, receipt_id=receipt_id, till=self.till))


class CountsView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_count",
        summary="Send a stock count (cycle count)",
        description=(
            "Per SKU, `counted - ledger on-hand as of counted_at` becomes a count movement. Till sales are placed at "
            "their time of sale: a sale made before `counted_at` but synced after the count takes nothing more off "
            "the ledger (the count saw it); a sale made after `counted_at` is not undone by the count. With "
            "`expected_on_hand`, the count is refused (409 `stale_quantity`, nothing written) if the ledger moved. "
            "201 when applied, 200 for a replay of the same count id and content."
        ),
        request=io.CountInput,
        responses={
            201: io.CountOutput, 200: io.CountOutput, **ERRORS, **REUSED,
            409: OpenApiResponse(description="`stale_quantity`"),
        },
        examples=[
            ex.request("Two SKUs counted, one with the quantity the till showed", ex.COUNT_REQUEST),
            ex.response("Applied: the differences became count movements", ex.COUNT_RESULT, 201),
            ex.response("The same count again", ex.COUNT_RESULT, 200),
            ex.response("The ledger moved since the till read it: nothing written", ex.STALE, 409),
        ],
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.CountInput, request.data)
        result, replayed = services.record_count(
            store=self.store, count_id=q["count_id"], counted_at=q["counted_at"],
            lines=[services.CountLine(**line) for line in q["lines"]], content_hash=request_fingerprint(request.data),
            till=self.till,
        )
        return _answer(result, replayed)


class CountDetailView(PosView):
    @extend_schema(tags=TAG, operation_id="pos_count_detail", summary="A count of this store",
                   responses={200: io.CountOutput, **ERRORS, **NOT_FOUND},
                   examples=[ex.response("A count", ex.COUNT_RESULT), ex.not_found(
                       {"code": "count_not_found", "message": "No stock count with this id at this store.",
                        "details": {"count_id": "B-CC-1"}})])
    def get(self, request: Request, count_id: str) -> Response:
        return Response(selectors.count_for_store(store=self.store, count_id=count_id).result)


class GoodsReceiptsView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_goods_receipt",
        summary="Book a delivery (distribution centre or supplier)",
        description="On hand up per SKU. Idempotent per receipt id: 201 when booked, 200 for a replay.",
        request=io.GoodsReceiptInput,
        responses={201: io.GoodsReceiptOutput, 200: io.GoodsReceiptOutput, **ERRORS, **REUSED},
        examples=[
            ex.request("From the DC", ex.GOODS_REQUEST),
            ex.response("Booked", ex.GOODS_RESULT, 201),
            ex.response("The same delivery note again", ex.GOODS_RESULT, 200),
        ],
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.GoodsReceiptInput, request.data)
        result, replayed = services.receive_goods(
            store=self.store, receipt_id=q["receipt_id"], source=q["source"],
            lines={line["sku"]: line["qty"] for line in q["lines"]}, content_hash=request_fingerprint(request.data),
            till=self.till,
        )
        return _answer(result, replayed)


class GoodsReceiptDetailView(PosView):
    @extend_schema(tags=TAG, operation_id="pos_goods_receipt_detail", summary="A goods receipt of this store",
                   responses={200: io.GoodsReceiptOutput, **ERRORS, **NOT_FOUND},
                   examples=[ex.response("A delivery", ex.GOODS_RESULT), ex.not_found()])
    def get(self, request: Request, receipt_id: str) -> Response:
        return Response(selectors.goods_receipt_for_store(store=self.store, receipt_id=receipt_id).result)


class DamageReportsView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_damage_report",
        summary="Goods found damaged on the shelf",
        description="The units go to quarantine (unavailable): free ones first, then units reserved for online "
        "checkouts and orders (those are re-routed at once, the websites told), the rest a shortfall that flags the "
        "row for a count. Never refused for stock. Idempotent per report id: 201 when booked, 200 for a replay.",
        request=io.DamageReportInput,
        responses={201: io.DamageReportOutput, 200: io.DamageReportOutput, **ERRORS, **REUSED},
        examples=[
            ex.request("Two hats crushed", ex.DAMAGE_REQUEST),
            ex.response("Quarantined; one unit was held for an online order", ex.DAMAGE_RESULT, 201),
            ex.response("The same report again", ex.DAMAGE_RESULT, 200),
        ],
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.DamageReportInput, request.data)
        result, replayed = services.report_damage(
            store=self.store, report_id=q["report_id"], lines={line["sku"]: line["qty"] for line in q["lines"]},
            content_hash=request_fingerprint(request.data), note=q["note"], till=self.till,
        )
        return _answer(result, replayed)


class TransfersView(PosView):
    @extend_schema(
        tags=TAG, operation_id="pos_transfers_in_transit", summary="Transfers to or from this store still in transit",
        responses={200: io.TransferOutput(many=True), **ERRORS},
        examples=[ex.response("One transfer on its way", [ex.TRANSFER_SHIPPED])],
    )
    def get(self, request: Request) -> Response:
        transfers = selectors.transfers_in_transit(store=self.store)[:200]
        return Response([services.transfer_result(t) for t in transfers])

    @extend_schema(
        tags=TAG,
        operation_id="pos_transfer_ship",
        summary="Ship units to another store",
        description="The goods have left: recorded as shipped, never refused for stock. On hand down here by the "
        "units free at the till, then by units reserved for online orders (re-routed at once), the rest a shortfall "
        "(the row flagged for a count); in transit until the destination receives them. Idempotent per transfer id "
        "(201 / 200 replay).",
        request=io.TransferInput,
        responses={
            201: io.TransferOutput, 200: io.TransferOutput, **ERRORS, **REUSED,
        },
        examples=[
            ex.request("Rebalance", ex.TRANSFER_REQUEST),
            ex.response("Shipped: in transit", ex.TRANSFER_SHIPPED, 201),
            ex.response("The same transfer again", ex.TRANSFER_SHIPPED, 200),
        ],
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.TransferInput, request.data)
        result, replayed = services.ship_transfer(
            store=self.store, to_store_code=q["to_store"], transfer_id=q["transfer_id"],
            lines={line["sku"]: line["qty"] for line in q["lines"]}, content_hash=request_fingerprint(request.data),
            till=self.till, note=q["note"],
        )
        return _answer(result, replayed)


class TransferDetailView(PosView):
    @extend_schema(tags=TAG, operation_id="pos_transfer", summary="A transfer this store sends or receives",
                   responses={200: io.TransferOutput, **ERRORS, **NOT_FOUND},
                   examples=[ex.response("Received with one unit missing", ex.TRANSFER_RECEIVED), ex.not_found(
                       {"code": "transfer_not_found", "message": "No transfer with this id for this store.",
                        "details": {"transfer": 41}})])
    def get(self, request: Request, pk: int) -> Response:
        return Response(services.transfer_result(selectors.transfer_for_store(store=self.store, pk=pk)))


class TransferReceiveView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_transfer_receive",
        summary="Receive a transfer sent to this store",
        description="On hand up by what arrived; shipped minus received is recorded per line as `discrepancy`. "
        "Receiving again with the same body returns the first answer (200); with another body, 409.",
        request=io.TransferReceiveInput,
        responses={
            201: io.TransferOutput, 200: io.TransferOutput, **ERRORS, **NOT_FOUND,
            409: OpenApiResponse(description="`transfer_already_received`"),
        },
        examples=[
            ex.request("One unit short", ex.RECEIVE_REQUEST),
            ex.response("Received: the difference recorded per line", ex.TRANSFER_RECEIVED, 201),
            ex.response("The same receipt again", ex.TRANSFER_RECEIVED, 200),
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        q = _validated(io.TransferReceiveInput, request.data)
        result, replayed = services.receive_transfer(
            store=self.store, transfer_pk=pk, received={line["sku"]: line["qty"] for line in q["lines"]},
            content_hash=request_fingerprint(request.data), till=self.till,
        )
        return _answer(result, replayed)


def _pickup_body(pickup) -> dict:
    f = pickup.fulfillment
    order = f.order
    return {
        "code": pickup.code, "order": order.number, "customer_name": order.customer_name,
        "customer_phone": order.customer_phone, "status": f.status, "payment_state": order.payment_state,
        "total_vnd": order.total_vnd,
        "lines": [{"sku": line.product.sku, "name": line.product.name, "qty": line.units}
                  for line in f.lines.select_related("product")],
    }


class PickupView(PosView):
    @extend_schema(tags=TAG, operation_id="pos_pickup", summary="Look up a pickup by its code (this store's only)",
                   responses={200: io.PosPickupOutput, **ERRORS, **NOT_FOUND},
                   examples=[ex.response("Ready at this store", ex.PICKUP), ex.not_found(
                       {"code": "pickup_not_found", "message": "No pickup with this code at this store.",
                        "details": {"code": "ZZ9QX3"}})])
    def get(self, request: Request, code: str) -> Response:
        return Response(_pickup_body(services.pickup_at_store(store=self.store, code=code)))


class PickupHandoverView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_pickup_handover",
        summary="Hand a pickup over to the customer",
        description="The fulfillment becomes `collected` and its reserved stock is committed. A code of another "
        "store is not found (404). Handing over again returns the collected pickup (200).",
        request=None,
        responses={200: io.PosPickupOutput, **ERRORS, **NOT_FOUND,
                   409: OpenApiResponse(description="`invalid_transition`: not ready for pickup")},
        examples=[ex.response("Collected", {**ex.PICKUP, "status": "collected"}), ex.not_found(
            {"code": "pickup_not_found", "message": "No pickup with this code at this store.",
             "details": {"code": "ZZ9QX3"}})],
    )
    def post(self, request: Request, code: str) -> Response:
        pickup, _ = services.hand_over_pickup(store=self.store, code=code, till=self.till)
        return Response(_pickup_body(pickup))


class StockView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_stock",
        summary="This store's stock of a SKU, and nearby stores that have it",
        parameters=[OpenApiParameter("radius_km", float, required=False, description="Default POS_NEARBY_RADIUS_KM")],
        responses={200: io.TillStockOutput, **ERRORS, 422: OpenApiResponse(description="`unknown_sku`")},
        examples=[ex.response("Out here; the store 800 m away has 3", ex.STOCK)],
    )
    def get(self, request: Request, sku: str) -> Response:
        radius = request.query_params.get("radius_km")
        try:
            radius_km = float(radius) if radius is not None else None
        except ValueError:
            raise InvalidInput("radius_km must be a number.", details={"radius_km": radius}) from None
        if radius_km is not None and not 0 < radius_km <= 50:
            raise InvalidInput("radius_km must be between 0 and 50.", details={"radius_km": radius})
        found = selectors.till_stock(store=self.store, sku=sku, radius_km=radius_km)
        return Response(io.TillStockOutput(found).data)


class MemberBalanceView(PosView):
    @extend_schema(
        tags=TAG, operation_id="pos_member_balance", summary="A member's points balance by phone",
        responses={200: io.MemberBalanceOutput, **ERRORS, 404: OpenApiResponse(description="`unknown_member`")},
        examples=[ex.response("A member", ex.BALANCE)],
    )
    def get(self, request: Request, phone: str) -> Response:
        member = loyalty_selectors.member_by_phone(phone)
        b = loyalty_selectors.balance(member=member)
        return Response(
            {"phone": member.phone, "name": member.name, "tier": member.tier, "available": b.available,
             "available_value_vnd": b.available_value_vnd, "pending": b.pending, "expiring_soon": b.expiring_soon,
             "expiring_soon_until": b.expiring_soon_until}
        )


class PricesView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_prices",
        summary="Price a cart at this store (online tills)",
        description=(
            "The cart priced by the one pricing engine in this till's context: this store (its price lists, its "
            f"promotions, its time zone), the tills' channel (`{settings.PRICING_TILL_CHANNEL}` in price lists' and "
            "promotions' `channels`), the member's tier and caps, the codes, the time (`at`, default now). The answer "
            "is the breakdown the website's quote (`POST /api/v1/pricing/quote/`) gives: the same cart in the same "
            "context gets the same prices. Nothing is reserved or consumed: codes are taken when the receipt is "
            "synced. A code that cannot be used is a 422 with its own `code` (`code_unknown`, `code_expired`, "
            "`code_used_up`, `code_not_yours`, `code_out_of_scope`)."
        ),
        request=io.PriceInput,
        responses={
            200: pricing_io.PricedOutput, **ERRORS,
            400: OpenApiResponse(description="Invalid input (`invalid`, `malformed_request`, `invalid_phone`)"),
            422: OpenApiResponse(description="`unknown_sku` or a code's own error"),
        },
        examples=[
            ex.request("Two shirts and a hat, a member, a coupon code", ex.PRICE_REQUEST),
            ex.response("The breakdown: price list, promotions, the code", ex.PRICE_ANSWER),
            ex.response("A single-use code already used", ex.PRICE_CODE_USED, 422),
        ],
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.PriceInput, request.data)
        return Response(services.till_price(
            store=self.store, lines=[(line["sku"], line["qty"]) for line in q["lines"]],
            member_phone=q.get("member_phone") or None, codes=q.get("codes"), at=q.get("at"),
        ))


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match against our strong ETag (a weak comparison, as RFC 9110 asks for this header)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class PricingSnapshotView(PosView):
    @extend_schema(
        tags=TAG,
        operation_id="pos_pricing_snapshot",
        summary="The pricing policy for this store's offline tills (versioned, signed)",
        description=(
            "What a till needs to price without the server, exactly as the server does: the product prices "
            "(`policy.base_prices`), the price lists and promotions that can apply at this store for the tills' "
            "channel and have not ended, and the store's `timezone`. Served to store keys only. Evaluate it with "
            "the rules of orders/pricing/README.md (the reference is orders.pricing.engine: `policy_from_json` of "
            "`policy`, then `price_cart` with channel `channel`, store `store`, time zone `timezone`); the answer "
            "equals this store's price call for the same cart, member tier and codes. Codes are not in it (secrets, "
            "and single-use across channels): offline, a till applies the promotion a code names (`requires_code`) "
            "as the cashier picks it and reports the code on the receipt. What a till cannot know offline (codes "
            "used elsewhere since, what is left of promotions' budgets, a member's tier) is settled when its "
            "receipts sync: differences become price exceptions, never refusals.\n\n"
            "**Versions.** `version` is the policy's version and the `ETag`. Send the version you hold as `since`: "
            "while it is current the answer is `{\"version\": N, \"changed\": false}` and nothing else; or send "
            "`If-None-Match: \"N\"` for a 304. Any other `since` (or none) gets the whole snapshot.\n\n"
            "**Integrity.** `signature` is `v1=` and the hex HMAC-SHA256 of the body without `signature`, in "
            "canonical form (UTF-8 JSON, keys sorted at every level, no whitespace, non-ASCII characters unescaped), "
            "keyed with the till's own API key (the whole `prefix.secret` string it sends after `Api-Key`). A till "
            "recomputes it whenever it loads its cached copy: a mismatch means the copy was corrupted or altered, "
            "and it fetches again. The snapshot is served only over TLS to store keys; the signature protects the "
            "copy at rest, not the connection. The example below is signed with the key "
            f"`{ex.SNAPSHOT_EXAMPLE_KEY}`."
        ),
        parameters=[OpenApiParameter("since", int, required=False, description="The version the till holds")],
        responses={
            200: io.SnapshotOutput,
            304: OpenApiResponse(description="If-None-Match names the current version: keep your copy"),
            **ERRORS,
        },
        examples=[
            ex.response("The whole snapshot (a till without one, or an older version)", ex.SNAPSHOT),
            ex.response("?since= the current version: nothing changed", ex.SNAPSHOT_UNCHANGED),
        ],
    )
    def get(self, request: Request) -> Response:
        since = request.query_params.get("since")
        if since is not None:
            if not since.isdigit() or len(since) > 18:
                raise InvalidInput("since must be a policy version (a whole number).", details={"since": since})
            since = int(since)
        version = selectors.pricing_version()
        if _etag_matches(request.headers.get("If-None-Match"), f'"{version}"'):
            answer = Response(status=status.HTTP_304_NOT_MODIFIED)
        elif since == version:
            answer = Response({"version": version, "changed": False})
        else:
            body = selectors.pricing_snapshot(store=self.store, at=timezone.now())
            body["signature"] = selectors.snapshot_signature(body, key=key_from_request(request) or "")
            version = body["version"]
            answer = Response(body)
        answer["ETag"] = f'"{version}"'
        # Per store (and signed per key): a shared cache must not keep it; the till revalidates with the version.
        answer["Cache-Control"] = "private, no-cache"
        answer["Vary"] = "Authorization"
        return answer
