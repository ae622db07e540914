"""The website's pricing API (sales channel key): a cart's price here and now, and vouchers bought with points.
Views parse, call one service or selector, render."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.exceptions import UnknownStore
from inventory.models import Store
from loyalty import selectors as loyalty_selectors
from loyalty.phones import normalize_phone
from o2o.idempotency import run_once
from orders.pricing import services, vouchers
from orders.pricing.api import serializers as io

ERRORS = {400: OpenApiResponse(description="Invalid input, invalid_phone"),
          401: OpenApiResponse(description="Missing or bad key")}


def _actor(request: Request) -> str:
    return f"channel:{request.auth.channel.code}"


def _store(code: str | None) -> Store | None:
    if code is None:
        return None
    store = Store.objects.filter(code=code, is_active=True).first()
    if store is None:
        raise UnknownStore(details={"store": code})
    return store


class QuoteView(APIView):
    @extend_schema(
        operation_id="pricing_quote",
        summary="Price a cart here and now: each line's price, each discount and why, the codes",
        description=(
            "The one price policy, as the tills and the order placement apply it: the price that wins for each SKU "
            "(price lists by channel, store group and period), then the promotions in force (stackable together, or "
            "one exclusive alone, whichever gives the customer more) and the codes given. With `store`, that "
            "store's prices and promotions; without, the chain-wide ones. With `member_phone`, the member's tier "
            "and per-member promotions. `at` prices at another time (a preview). No delivery fee here: the promise "
            "options (POST /promises/) carry theirs."
        ),
        request=io.QuoteInput,
        responses={
            200: io.PricedOutput,
            **ERRORS,
            404: OpenApiResponse(description="unknown_store"),
            422: OpenApiResponse(
                description="unknown_sku, code_unknown, code_expired, code_used_up, code_not_yours, code_out_of_scope"
            ),
        },
        examples=[
            OpenApiExample("Three shirts and a hat with a coupon", value=io.QUOTE_REQUEST, request_only=True),
            OpenApiExample("Priced", value=io.QUOTE_RESPONSE, response_only=True, status_codes=["200"]),
        ],
    )
    def post(self, request: Request) -> Response:
        body = io.QuoteInput(data=request.data)
        body.is_valid(raise_exception=True)
        q = body.validated_data
        member_phone = normalize_phone(q["member_phone"]) if q.get("member_phone") else None
        priced = services.price(
            channel=request.auth.channel.code, lines=q["lines"], store=_store(q.get("store")),
            member_phone=member_phone, codes=q.get("codes") or [], at=q.get("at"),
        )
        return Response(services.priced_json(priced))


class VouchersView(APIView):
    @extend_schema(
        operation_id="pricing_voucher_list",
        summary="A member's vouchers bought with points that can still be used (unused, not expired)",
        parameters=[OpenApiParameter("phone", str, required=True, description="The member's phone, any format.")],
        responses={200: io.VoucherOutput(many=True), **ERRORS, 404: OpenApiResponse(description="unknown_member")},
    )
    def get(self, request: Request) -> Response:
        query = io.VoucherQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = loyalty_selectors.member_by_phone(query.validated_data["phone"])
        return Response(io.VoucherOutput(vouchers.vouchers_of(member=member), many=True).data)

    @extend_schema(
        operation_id="pricing_voucher_buy",
        summary="Buy a voucher with points: a single-use code worth points × the point value, online and at any till",
        description=(
            "The points leave the member's available balance at once (a loyalty posting of kind `voucher`). The "
            "code is the member's only: give it in `codes` at checkout (quote, promise, order) or at a till. Needs an "
            "`Idempotency-Key` header: the same key and body returns the same voucher."
        ),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
        request=io.VoucherInput,
        responses={
            201: io.VoucherBoughtOutput,
            **ERRORS,
            404: OpenApiResponse(description="unknown_member"),
            409: OpenApiResponse(description="insufficient_points"),
            422: OpenApiResponse(description="idempotency_key_reused"),
        },
    )
    def post(self, request: Request) -> Response:
        body = io.VoucherInput(data=request.data)
        body.is_valid(raise_exception=True)
        q = body.validated_data
        channel = request.auth.channel.code
        key = request.headers.get("Idempotency-Key")

        def action():
            member = loyalty_selectors.member_by_phone(q["phone"])
            code = vouchers.buy_voucher(
                member=member, points=q["points"], channel=channel, idempotency_key=f"channel:{channel}:voucher:{key}",
                actor=_actor(request), now=timezone.now(),
            )
            answer = io.VoucherOutput(code).data
            answer["balance"] = io.BalanceOutput(loyalty_selectors.balance(member=member)).data
            return status.HTTP_201_CREATED, answer

        code, payload, _ = run_once(
            scope=f"channel:{request.auth.channel_id}:pricing.vouchers", key=key, payload=request.data, action=action
        )
        return Response(payload, status=code)
