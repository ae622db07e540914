"""The website's store and availability API (sales channel key). Views parse, call one selector or service, render.

Stores near a point, cart availability and network ATP read the replica when one is configured (o2o/replicas.py):
a second or two of lag is harmless there, since a promise and a placement read the primary and placement re-checks
under lock. Holds write, and read the primary."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory import selectors, services
from inventory.api import serializers as io
from inventory.exceptions import ReservationNotFound, UnknownStore
from inventory.geocoding import locate
from inventory.models import Store
from o2o import replicas
from o2o.idempotency import run_once

ERRORS = {400: OpenApiResponse(description="Invalid input"), 401: OpenApiResponse(description="Missing or bad key")}


def _actor(request: Request) -> str:
    return f"channel:{request.auth.channel.code}"


class StoresNearView(APIView):
    @extend_schema(
        operation_id="stores_near",
        summary="Stores near a point or an address, nearest first",
        parameters=[io.PointInput],
        responses={200: io.StoresNearOutput, **ERRORS, 404: OpenApiResponse(description="Address not found")},
    )
    def get(self, request: Request) -> Response:
        query = io.PointInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        place = locate(lat=q.get("lat"), lon=q.get("lon"), address=q.get("address"))
        stores = replicas.read(
            lambda using: selectors.stores_near(
                lat=place.lat, lon=place.lon, radius_km=q["radius_km"], service=q.get("service"), limit=q["limit"],
                using=using,
            )
        )
        return Response(io.StoresNearOutput({"point": place, "stores": stores}).data)


class CartAvailabilityView(APIView):
    @extend_schema(
        operation_id="cart_availability",
        summary="Availability of a cart at the stores near a point",
        description="Per store, the units of each SKU sellable online and whether the store can serve the whole cart.",
        request=io.CartAvailabilityInput,
        responses={200: io.CartAvailabilityOutput, **ERRORS, 422: OpenApiResponse(description="Unknown SKU")},
    )
    def post(self, request: Request) -> Response:
        q = io.plain_cart_availability_input(request.data)
        if q is None:
            body = io.CartAvailabilityInput(data=request.data)
            body.is_valid(raise_exception=True)
            q = body.validated_data
        place = locate(lat=q.get("lat"), lon=q.get("lon"), address=q.get("address"))
        stores = replicas.read(
            lambda using: selectors.cart_availability(
                lat=place.lat,
                lon=place.lon,
                lines=q["lines"],
                radius_km=q["radius_km"],
                service=q.get("service"),
                limit=q["limit"],
                only_whole_cart=q["only_whole_cart"],
                using=using,
            )
        )
        return Response(io.cart_availability_payload(place=place, lines=q["lines"], stores=stores))


class NetworkAtpView(APIView):
    @extend_schema(
        operation_id="network_atp",
        summary="Network-wide available-to-promise per SKU (for product listing pages)",
        parameters=[
            OpenApiParameter("sku", str, many=True, required=True, description="Repeat for several SKUs (up to 200)"),
            OpenApiParameter("service", str, enum=list(selectors.SERVICES), required=False),
        ],
        responses={200: io.NetworkAtpEntry(many=True), **ERRORS, 422: OpenApiResponse(description="Unknown SKU")},
    )
    def get(self, request: Request) -> Response:
        raw = {"sku": [s for value in request.query_params.getlist("sku") for s in value.split(",") if s]}
        if "service" in request.query_params:
            raw["service"] = request.query_params["service"]
        query = io.NetworkAtpInput(data=raw)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        totals = replicas.read(
            lambda using: selectors.network_atp(skus=q["sku"], channel_service=q.get("service"), using=using)
        )
        return Response([{"sku": sku, **figures} for sku, figures in totals.items()])


class HoldsView(APIView):
    @extend_schema(
        operation_id="hold_create",
        summary="Hold a cart's units at one store during checkout",
        description="Needs an `Idempotency-Key` header. The hold stops counting when it expires.",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
        request=io.HoldInput,
        responses={
            201: io.HoldOutput,
            **ERRORS,
            409: OpenApiResponse(description="insufficient_stock"),
            422: OpenApiResponse(description="Unknown SKU, or the key was used with another body"),
        },
    )
    def post(self, request: Request) -> Response:
        body = io.HoldInput(data=request.data)
        body.is_valid(raise_exception=True)
        q = body.validated_data

        def action():
            store = Store.objects.filter(code=q["store"], is_active=True).first()
            if store is None:
                raise UnknownStore(details={"store": q["store"]})
            products = selectors.products_by_sku(q["lines"].keys())
            hold = services.hold_stock(
                store=store,
                quantities={products[sku]: qty for sku, qty in q["lines"].items()},
                ttl_seconds=q["ttl_seconds"],
                actor=_actor(request),
                channel=request.auth.channel,  # the website holding them, told if a store event takes them
            )
            out = {
                "reference": hold.reference,
                "store": store.code,
                "expires_at": hold.expires_at,
                "lines": [{"sku": sku, "qty": qty} for sku, qty in q["lines"].items()],
            }
            return status.HTTP_201_CREATED, io.HoldOutput(out).data

        code, payload, _ = run_once(
            scope=f"channel:{request.auth.channel_id}:holds",
            key=request.headers.get("Idempotency-Key"),
            payload=request.data,
            action=action,
        )
        return Response(payload, status=code)


class HoldDetailView(APIView):
    @extend_schema(
        operation_id="hold_release",
        summary="Release a checkout hold (idempotent)",
        responses={204: None, 404: OpenApiResponse(description="No live hold with this reference")},
    )
    def delete(self, request: Request, reference: str) -> Response:
        if not reference.startswith("hold:"):
            raise ReservationNotFound(details={"reference": reference})
        # Releasing a hold twice, or one that already expired, is harmless: the answer is the same.
        services.release_reservations(reference=reference, actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
