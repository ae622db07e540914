"""The website's promise and order API (sales channel key). Views parse, call one service or selector, render.
A channel sees only its own orders: anyone else's number is a 404."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.exceptions import InsufficientStock
from inventory.geocoding import locate
from o2o.idempotency import run_once
from o2o.pagination import StrictLimitOffsetPagination
from orders import selectors, services
from orders.api import serializers as io
from orders.loyalty_tender import LoyaltyInput
from orders.models import OrderStatus

ERRORS = {400: OpenApiResponse(description="Invalid input"), 401: OpenApiResponse(description="Missing or bad key")}
IDEMPOTENCY_HEADER = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)


def _actor(request: Request) -> str:
    return f"channel:{request.auth.channel.code}"


def _point(destination: dict | None) -> tuple[float | None, float | None, str]:
    if not destination:
        return None, None, ""
    place = locate(lat=destination.get("lat"), lon=destination.get("lon"), address=destination.get("address"))
    return place.lat, place.lon, destination.get("address") or ""


class PromisesView(APIView):
    @extend_schema(
        operation_id="promise_create",
        summary="Delivery and pickup options the chain can keep now for a cart",
        description=(
            "For a destination: express delivery within 1 h or 2 h (serving store or stores, split or not), pickup at "
            "nearby stores that can serve the whole cart (ready-by time), or a scheduled fallback. With "
            "`pickup_store`: pickup there only. Each option carries its price (`pricing`: lines, discounts, codes, "
            "delivery fee; pickup is free) for `member_phone` with `codes`. Place the order with the promise id and "
            "an option id before `expires_at` to get what it showed."
        ),
        request=io.PromiseInput,
        responses={
            201: io.PromiseOutput,
            **ERRORS,
            404: OpenApiResponse(description="Address not found"),
            409: OpenApiResponse(description="insufficient_stock: no store can serve the cart"),
            422: OpenApiResponse(
                description="unknown_sku, pickup_not_offered, unknown_store, out_of_delivery_area, code_unknown, "
                "code_expired, code_used_up, code_not_yours, code_out_of_scope (no option can use the code)"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        q = io.plain_promise_input(request.data)
        if q is None:  # not plainly valid: the serializer decides, and answers any 400
            body = io.PromiseInput(data=request.data)
            body.is_valid(raise_exception=True)
            q = body.validated_data
        lat, lon, address = _point(q.get("destination"))
        promise = services.quote_promise(
            channel=request.auth.channel, lines=q["lines"], lat=lat, lon=lon, address=address,
            pickup_store_code=q.get("pickup_store"), allow_split=q["allow_split"],
            member_phone=q.get("member_phone"), codes=q.get("codes"),
        )
        return Response(io.PromiseOutput(promise).data, status=status.HTTP_201_CREATED)


class OrdersView(APIView):
    pagination_class = StrictLimitOffsetPagination

    @extend_schema(
        operation_id="order_list",
        summary="The channel's orders, newest first",
        parameters=[OpenApiParameter("status", str, enum=list(OrderStatus.values), required=False)],
        responses={200: io.OrderOutput(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        status_filter = request.query_params.get("status")
        if status_filter is not None and status_filter not in OrderStatus.values:
            raise ValidationError({"status": [f"Must be one of: {', '.join(OrderStatus.values)}."]})
        orders = selectors.orders_of_channel(channel=request.auth.channel, status=status_filter)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(orders, request, view=self)
        return paginator.get_paginated_response(io.OrderOutput(page, many=True).data)

    @extend_schema(
        operation_id="order_place",
        summary="Place an order: reserve the stock and route it in one transaction",
        description=(
            "Needs an `Idempotency-Key` header: the same key and body returns the first answer; another body is a "
            "422. Delivery: a destination and/or a promise with one of its options. Pickup: a store code. The order "
            "is priced at placement (the member's tier, the codes, the delivery fee); placed from a promise, the price "
            "must be the option's or the answer is 409 price_changed with the new breakdown in `details.pricing` "
            "(nothing is written: quote a new promise). The answer lists one fulfillment per serving store with its "
            "lines, promise time and (pickup) the pickup code, and the price breakdown applied (`pricing`)."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=io.OrderInput,
        responses={
            201: io.OrderOutput,
            **ERRORS,
            404: OpenApiResponse(description="promise_not_found, address_not_found"),
            409: OpenApiResponse(
                description="insufficient_stock (stock moved; placed from a promise, `details.fresh_promise` is a "
                "new promise quoted now for the same cart and destination, as POST /promises/ answers it, or null "
                "with `details.fresh_promise_unavailable` saying why), promise_expired, redemption_not_held (points "
                "hold voided, expired or already used), price_changed (`details.pricing`: the price now), "
                "promotion_budget_exhausted (a capped promotion ran out while the order was placed)"
            ),
            422: OpenApiResponse(
                description="unknown_sku, pickup_not_offered, out_of_delivery_area, promise_mismatch, "
                "idempotency_key_reused, redemption_member_mismatch, points_exceed_total, code_unknown, "
                "code_expired, code_used_up, code_not_yours, code_out_of_scope"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        q = io.plain_order_input(request.data)
        if q is None:  # not plainly valid: the serializer decides, and answers any 400
            body = io.OrderInput(data=request.data)
            body.is_valid(raise_exception=True)
            q = body.validated_data

        def action():
            lat, lon, address = _point(q.get("destination"))
            order = services.place_order(
                channel=request.auth.channel, lines=q["lines"], customer_name=q["customer"]["name"],
                customer_phone=q["customer"]["phone"], method=q["method"], lat=lat, lon=lon, address=address,
                pickup_store_code=q.get("pickup_store"), promise_id=q.get("promise"), option_id=q.get("option"),
                payment_state=q["payment_state"], allow_split=q["allow_split"], actor=_actor(request),
                loyalty=LoyaltyInput(**q["loyalty"]) if "loyalty" in q else None, codes=q.get("codes"),
            )
            # The answer is built from what placement wrote (no read-back); it matches the order detail's fields.
            placed = getattr(order, "placed", None)
            if isinstance(placed, services.PlacedOrder):
                return status.HTTP_201_CREATED, io.placed_order_payload(placed)
            placed = placed or selectors.order_for_channel(
                channel=request.auth.channel, number=order.number, with_decisions=False
            )
            return status.HTTP_201_CREATED, io.represent(io.OrderOutput, placed)

        try:
            code, payload, _ = run_once(
                scope=f"channel:{request.auth.channel_id}:orders.place",
                key=request.headers.get("Idempotency-Key"),
                payload=request.data,
                action=action,
            )
        except InsufficientStock as exc:
            if q.get("promise"):
                # The promised units are gone (a store event, a faster order): quoted again now, outside the
                # placement's rolled-back transaction, so the website can show the customer what is possible.
                fresh, why = services.requote(
                    channel=request.auth.channel, promise_id=q["promise"], allow_split=q["allow_split"]
                )
                exc.details["fresh_promise"] = io.PromiseOutput(fresh).data if fresh is not None else None
                if fresh is None:
                    exc.details["fresh_promise_unavailable"] = why
            raise
        return Response(payload, status=code)


class OrderDetailView(APIView):
    @extend_schema(
        operation_id="order_detail",
        summary="One order with its fulfillments and each routing decision (candidates, scores, reason)",
        responses={200: io.OrderDetailOutput, 401: ERRORS[401], 404: OpenApiResponse(description="order_not_found")},
    )
    def get(self, request: Request, number: str) -> Response:
        order = selectors.order_for_channel(channel=request.auth.channel, number=number)
        return Response(io.OrderDetailOutput(order).data)


class OrderCancelView(APIView):
    @extend_schema(
        operation_id="order_cancel",
        summary="Cancel an order and release its stock (idempotent)",
        request=io.CancelInput,
        responses={
            200: io.OrderOutput,
            401: ERRORS[401],
            404: OpenApiResponse(description="order_not_found"),
            409: OpenApiResponse(description="order_not_cancellable: goods already left a store"),
        },
    )
    def post(self, request: Request, number: str) -> Response:
        body = io.CancelInput(data=request.data)
        body.is_valid(raise_exception=True)
        order = selectors.order_for_channel(channel=request.auth.channel, number=number, with_decisions=False)
        services.cancel_order(order=order, actor=_actor(request), reason=body.validated_data["reason"])
        order = selectors.order_for_channel(channel=request.auth.channel, number=number, with_decisions=False)
        return Response(io.OrderOutput(order).data)


class ChangeOfferAcceptView(APIView):
    @extend_schema(
        operation_id="order_change_offer_accept",
        summary="Answer a change offer: move the pickup, keep what is left, or cancel",
        description=(
            "A store event (a till sale, a count, damaged goods, a transfer) took units of a pickup order at its "
            "store; the order detail lists the open offer (`change_offers`) and the `order.change_offered` event "
            "carried it. `move`: the whole order is picked up at the offered store instead (new pickup code); "
            "`keep`: what is left, the missing units unfulfilled; `cancel`: the order is cancelled. Needs an "
            "`Idempotency-Key` header: the same key and body returns the first answer."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=io.ChangeOfferAcceptInput,
        responses={
            200: io.ChangeOfferAcceptOutput,
            **ERRORS,
            404: OpenApiResponse(description="order_not_found, change_offer_not_found"),
            409: OpenApiResponse(
                description="change_offer_not_open (answered, expired, replaced, or the pickup was collected), "
                "change_option_unavailable (the offered store can no longer serve the whole order)"
            ),
            422: OpenApiResponse(description="unknown_change_option, idempotency_key_reused"),
        },
    )
    def post(self, request: Request, number: str, offer: int) -> Response:
        body = io.ChangeOfferAcceptInput(data=request.data)
        body.is_valid(raise_exception=True)
        channel = request.auth.channel

        def action():
            order = selectors.order_for_channel(channel=channel, number=number, with_decisions=False)
            accepted = services.accept_change_offer(
                order=order, offer=offer, option=body.validated_data["option"], actor=_actor(request)
            )
            detail = selectors.order_for_channel(channel=channel, number=number)
            return status.HTTP_200_OK, io.ChangeOfferAcceptOutput({"offer": accepted, "order": detail}).data

        code, payload, _ = run_once(
            scope=f"channel:{request.auth.channel_id}:orders.change_offer",
            key=request.headers.get("Idempotency-Key"),
            payload={"order": number, "offer": offer, "body": request.data},
            action=action,
        )
        return Response(payload, status=code)
