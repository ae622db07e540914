"""The returns API. The website (sales-channel key) asks for courier collections of its orders and follows them; a
store's till (store key) takes returns of anything bought anywhere and receives collected parcels routed to it.
Views parse, call one service or selector, render. A store sees only returns it received; a channel only returns
of its own orders."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.geocoding import locate
from o2o.idempotency import request_fingerprint, run_once
from o2o.pagination import StrictLimitOffsetPagination
from orders.pos import services as pos_services
from orders.pos.api import examples as ex
from orders.pos.api import serializers as pos_io
from orders.pos.api import views as pos_views
from orders.pos.auth import IsStoreTill, StoreKeyAuthentication
from orders.returns import selectors, services
from orders.returns.api import serializers as io
from orders.returns.models import Condition

TAG_WEB = ["returns"]
TAG_POS = ["POS"]
IDEMPOTENCY_HEADER = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)
ERRORS = {
    400: OpenApiResponse(description="Invalid input (`invalid`, `malformed_request`)"),
    401: OpenApiResponse(description="Missing or bad key"),
    404: OpenApiResponse(description="`purchase_not_found`, `return_not_found`"),
}
REFUSED = {
    409: OpenApiResponse(description="`return_exceeds_purchase`, `not_handed_over`, `receipt_voided`, `return_not_open`"),
    422: OpenApiResponse(
        description="`return_window_closed`, `not_returnable`, `other_store_receipt_refused`, "
        "`store_not_accepting_returns`, `no_receiving_store`, `unknown_sku`, `idempotency_key_reused`"
    ),
}


def _items(lines: list[dict]) -> list[services.ReturnItem]:
    return [services.ReturnItem(sku=x["sku"], qty=x["qty"], condition=x["condition"]) for x in lines]


def _validated(serializer_class, data):
    body = serializer_class(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data


def _page(view: APIView, request: Request, queryset) -> Response:
    # These lists filter on nothing: a parameter the client thinks filters them must not silently return everything.
    unknown = sorted(set(request.query_params) - {"limit", "offset"})
    if unknown:
        raise ValidationError({"query": [f"Unknown query parameters: {', '.join(unknown)[:200]}."]})
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(io.ReturnOutput(page, many=True).data)


# --- the website --------------------------------------------------------------------------------------------------


class ReturnsView(APIView):
    pagination_class = StrictLimitOffsetPagination  # also how the schema documents the list as a page
    @extend_schema(tags=TAG_WEB, operation_id="return_list", summary="Returns of the channel's orders, newest first",
                   responses={200: io.ReturnOutput(many=True), 401: ERRORS[401]})
    def get(self, request: Request) -> Response:
        return _page(self, request, selectors.returns_of_channel(channel=request.auth.channel))

    @extend_schema(
        tags=TAG_WEB,
        operation_id="return_open_collection",
        summary="Ask for a courier collection of goods of a delivered or collected order",
        description=(
            "The return router picks the receiving store (nearest that accepts returns, preferring one short of the "
            "SKU when it is only a little further); the answer shows the decision. Needs an `Idempotency-Key`: the "
            "same key and body returns the first answer, another body is a 422."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=io.CollectionReturnInput,
        responses={201: io.ReturnOutput, **ERRORS, **REFUSED},
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.CollectionReturnInput, request.data)
        channel = request.auth.channel

        def action():
            where = q["collection"]
            place = locate(lat=where.get("lat"), lon=where.get("lon"), address=where.get("address"))
            ret = services.open_collection(
                channel=channel, order_number=q["order"], items=_items(q["lines"]), lat=place.lat, lon=place.lon,
                address=where.get("address", ""), reason=q["reason"], actor=f"channel:{channel.code}",
            )
            return status.HTTP_201_CREATED, io.ReturnOutput(selectors.return_for_channel(channel=channel,
                                                                                        number=ret.number)).data

        code, body, _ = run_once(scope=f"channel:{channel.pk}:returns.open", key=request.headers.get("Idempotency-Key"),
                                 payload=request.data, action=action)
        return Response(body, status=code)


class ReturnDetailView(APIView):
    @extend_schema(tags=TAG_WEB, operation_id="return_detail", summary="One return with its refund and routing",
                   responses={200: io.ReturnOutput, 401: ERRORS[401], 404: ERRORS[404]})
    def get(self, request: Request, number: str) -> Response:
        return Response(io.ReturnOutput(selectors.return_for_channel(channel=request.auth.channel, number=number)).data)


class ReturnCancelView(APIView):
    @extend_schema(tags=TAG_WEB, operation_id="return_cancel", request=None,
                   summary="Cancel a collection not yet received (idempotent)",
                   responses={200: io.ReturnOutput, 401: ERRORS[401], 404: ERRORS[404], 409: REFUSED[409]})
    def post(self, request: Request, number: str) -> Response:
        channel = request.auth.channel
        services.cancel_return(channel=channel, number=number, actor=f"channel:{channel.code}")
        return Response(io.ReturnOutput(selectors.return_for_channel(channel=channel, number=number)).data)


# --- the tills ----------------------------------------------------------------------------------------------------


class PosView(APIView):
    authentication_classes = [StoreKeyAuthentication]
    permission_classes = [IsStoreTill]

    @property
    def store(self):
        return self.request.auth.store

    @property
    def actor(self) -> str:
        return f"pos:{self.store.code}:{self.request.auth.name}"

    @property
    def till_actor(self) -> str:
        return pos_services.till_actor(self.store, self.request.auth.name)


class PosReturnsView(PosView):
    pagination_class = StrictLimitOffsetPagination
    @extend_schema(tags=TAG_POS, operation_id="pos_return_list", summary="Returns received (or to be received) here",
                   responses={200: io.ReturnOutput(many=True), 401: ERRORS[401]})
    def get(self, request: Request) -> Response:
        return _page(self, request, selectors.returns_received_at(store=self.store))

    @extend_schema(
        tags=TAG_POS,
        operation_id="pos_return_create",
        summary="Take a return at this till: an online order or a receipt of any store",
        description=(
            "Opened, received and refunded at once: resellable units back on sale here, damaged ones quarantined "
            "here; the refund split by tender (money per original tender, points given back), earned points "
            "reversed in proportion. Needs an `Idempotency-Key`."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=io.TillReturnInput,
        responses={201: io.ReturnOutput, **ERRORS, **REFUSED},
    )
    def post(self, request: Request) -> Response:
        q = _validated(io.TillReturnInput, request.data)
        store = self.store

        def action():
            receipt = q.get("receipt") or {}
            ret = services.return_at_store(
                store=store, items=_items(q["lines"]), reason=q["reason"], actor=self.actor,
                order_number=q.get("order"), receipt_store=receipt.get("store"), receipt_id=receipt.get("receipt_id"),
            )
            return status.HTTP_201_CREATED, io.ReturnOutput(selectors.return_for_store(store=store,
                                                                                      number=ret.number)).data

        code, body, _ = run_once(scope=f"store:{store.pk}:returns.open", key=request.headers.get("Idempotency-Key"),
                                 payload=request.data, action=action)
        return Response(body, status=code)


class PosReturnDetailView(PosView):
    @extend_schema(tags=TAG_POS, operation_id="pos_return_detail", summary="A return received here",
                   responses={200: io.ReturnOutput, 401: ERRORS[401], 404: ERRORS[404]})
    def get(self, request: Request, number: str) -> Response:
        return Response(io.ReturnOutput(selectors.return_for_store(store=self.store, number=number)).data)


class PosReturnReceiveView(PosView):
    @extend_schema(
        tags=TAG_POS, operation_id="pos_return_receive",
        summary="Receive a collected parcel routed to this store (idempotent: 200 when already received)",
        request=io.ReceiveInput, responses={201: io.ReturnOutput, 200: io.ReturnOutput, **ERRORS, **REFUSED},
    )
    def post(self, request: Request, number: str) -> Response:
        q = _validated(io.ReceiveInput, request.data)
        conditions = {line["sku"]: line["condition"] for line in q.get("lines", [])}
        _, replayed = services.receive_return(store=self.store, number=number, actor=self.actor, conditions=conditions)
        body = io.ReturnOutput(selectors.return_for_store(store=self.store, number=number)).data
        return Response(body, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)


class ReceiptRefundView(PosView):
    """The selling till's refund of its own receipt: the till contract's endpoint, served by the returns door."""

    @extend_schema(
        tags=TAG_POS,
        operation_id="pos_receipt_refund",
        summary="Refund goods of a receipt of this store (idempotent per refund id)",
        description="Units back on hand (or quarantined if not resellable); earned points reversed and redeemed "
        "points given back in proportion to the value refunded. 201 when applied, 200 for a replay.",
        request=pos_io.RefundInput,
        responses={
            201: pos_io.TillRefundOutput, 200: pos_io.TillRefundOutput, **pos_views.ERRORS, **pos_views.NOT_FOUND, **pos_views.REUSED,
            409: OpenApiResponse(description="`refund_exceeds_sale`, `receipt_voided`"),
        },
        examples=[
            ex.request("One unit back, damaged", ex.REFUND_REQUEST),
            ex.response("Refunded (quarantined), points in proportion", ex.REFUND_RESULT, 201),
            ex.response("The same refund again", ex.REFUND_RESULT, 200),
            ex.not_found(),
        ],
    )
    def post(self, request: Request, receipt_id: str) -> Response:
        q = _validated(pos_io.RefundInput, request.data)
        result, replayed = services.refund_till_receipt(
            store=self.store, receipt_id=receipt_id, refund_id=q["refund_id"],
            items=[services.ReturnItem(sku=line["sku"], qty=line["qty"],
                                      condition=Condition.RESELLABLE if line["resellable"] else Condition.DAMAGED)
                   for line in q["lines"]],
            content_hash=request_fingerprint(request.data), actor=self.till_actor,
        )
        return Response(result, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)
