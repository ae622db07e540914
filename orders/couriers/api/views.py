"""Courier webhooks: `/api/v1/webhooks/couriers/<provider>/`. The signature is the authentication.

Order of checks, nothing written before the last: known provider (404) → body size (413, before reading it) →
O2O-Signature over the raw body, constant time, ±300 s (401) → JSON object (400) → the provider's fields (400) →
stored under (provider, event id) unique: a replay answers 200 `duplicate` and changes nothing.
"""

import json

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from o2o import signing
from orders.couriers import services
from orders.couriers.api import serializers as io
from orders.couriers.exceptions import MalformedPayload, PayloadTooLarge
from orders.couriers.providers import get_provider


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(io.ErrorOutput, description=description)


class CourierWebhookView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []  # the raw body is verified before anything parses it

    @extend_schema(
        operation_id="courier_webhook",
        summary="A courier provider's status event (signed)",
        description=(
            "Providers: `local`, `ahamove`, `lalamove` (as enabled). The body is the provider's own JSON payload, "
            "at most 1 MB. `O2O-Signature: t=<unix>,v1=<hex>` with v1 = HMAC-SHA256(provider secret, "
            '"<t>.<raw body>"); several v1 values are accepted while a secret rotates; t must be within 300 s. '
            "Each event id is accepted once: a replay is acknowledged (`duplicate`) and ignored. Events that would "
            "move a delivery backwards are recorded, not applied."
        ),
        auth=[],
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter("O2O-Signature", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("provider", str, OpenApiParameter.PATH, enum=["local", "ahamove", "lalamove"]),
        ],
        responses={
            200: io.WebhookAck,
            400: _error("malformed_payload (not a JSON object) or invalid_courier_event (a field is missing)"),
            401: _error("invalid_signature: missing, malformed, stale or wrong"),
            404: _error("unknown_provider"),
            413: _error("payload_too_large"),
        },
    )
    def post(self, request: Request, provider: str) -> Response:
        adapter = get_provider(provider)
        limit = settings.O2O_COURIER_WEBHOOK_MAX_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(details={"max_bytes": limit})
        raw = request.body
        if len(raw) > limit:
            raise PayloadTooLarge(details={"max_bytes": limit})
        signing.verify(request.headers.get(signing.HEADER), raw, adapter.secrets())
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedPayload(details={"error": str(exc)[:200]}) from exc
        if not isinstance(payload, dict):
            raise MalformedPayload()
        outcome = services.apply_courier_event(provider=adapter.name, payload=payload)
        if outcome.duplicate:
            return Response({"status": "duplicate", "event_id": outcome.event_id, "applied": False, "note": outcome.note})
        return Response({
            "status": "applied" if outcome.applied else "recorded",
            "event_id": outcome.event_id,
            "applied": outcome.applied,
            "note": outcome.note,
        })
