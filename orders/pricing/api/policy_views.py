"""Head office's pricing-policy API, under /api/v1/pricing/policy/: a retailer's ERP or merchandising tool pushes
promotions, price lists and their rows, and generates campaign codes, with the admin's checks. Views parse, call one
service of orders.pricing.policy (or a one-line read), render.

Who: Django users (head office staff, e.g. a technical user in the "Head office" group) with HTTP Basic or a session,
and the model permissions the admin asks for (view, add, change, delete of promotions, price lists and their rows,
add of codes). The sales channels' and stores' API keys are refused (403): the commercial policy is not theirs."""

import io as _io
from typing import Any

from django.db.models import Count, F
from django.utils.dateparse import parse_datetime
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission, DjangoModelPermissions
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from o2o.api_keys import key_from_request
from o2o.idempotency import run_once
from orders.pricing import engine, policy
from orders.pricing.api import policy_serializers as io
from orders.pricing.forms import write_codes_csv
from orders.pricing.models import Code, PolicyVersion, PriceList, PriceListRow, Promotion

TAG = "Pricing policy"
AUTH = (
    "\n\n**Who:** head office staff, as a Django user with HTTP Basic (`Authorization: Basic …`) or an admin session "
    "(with its CSRF token for writes), holding the model permission named here (the \"Head office\" group has them "
    "all). Sales channel and store API keys are refused with 403."
)
IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Optional: the same key and body answers the first response again and writes nothing; another body "
    "with the same key is 422 idempotency_key_reused.",
)
AUTH_ERRORS = {
    401: OpenApiResponse(description="not_authenticated, invalid_credentials (HTTP Basic)"),
    403: OpenApiResponse(description="forbidden: the user lacks the permission, or an API key was sent"),
}
NOT_FOUND = {404: OpenApiResponse(description="not_found: no promotion or price list with this code")}
API_KEYS_REFUSED = ("The pricing policy API is for head office staff (HTTP Basic or session), not for sales channel "
                    "or store API keys.")


class PolicyPermissions(DjangoModelPermissions):
    """The admin's model permissions: reading needs `view` too (DRF's default asks nothing to read)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class RowsPermissions(PolicyPermissions):
    """Setting a price list's rows is changing the list and adding, changing and deleting its rows."""

    def get_required_permissions(self, method: str, model_cls) -> list[str]:
        if method == "PUT":
            return ["pricing.change_pricelist", "pricing.add_pricelistrow", "pricing.change_pricelistrow",
                    "pricing.delete_pricelistrow"]
        return super().get_required_permissions(method, model_cls)


class CanReadPolicy(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated
                    and (user.has_perm("pricing.view_promotion") or user.has_perm("pricing.view_pricelist")))


class PolicyView(GenericAPIView):
    authentication_classes = [BasicAuthentication, SessionAuthentication]
    permission_classes = [PolicyPermissions]
    lookup_field = "code"
    lookup_url_kwarg = "code"

    def perform_authentication(self, request: Request) -> None:
        # After content negotiation (an error answers in the format asked for), before the permissions: an API key
        # is not a missing login (401) but a caller this API is not for.
        if key_from_request(request) is not None:
            raise PermissionDenied(API_KEYS_REFUSED)
        super().perform_authentication(request)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, AuthenticationFailed):  # the shared handler names API keys; here it is a password
            response.data["code"] = "invalid_credentials"
        return response

    def idempotent(self, request: Request, what: str, action, payload: Any = None) -> Response:
        """Run a creating `action` (returning (status, body)) once per Idempotency-Key, when one is sent."""
        key = request.headers.get("Idempotency-Key")
        if key is None:
            code, body = action()
        else:
            code, body, _ = run_once(scope=f"user:{request.user.pk}:pricing.policy.{what}", key=key,
                                     payload=request.data if payload is None else payload, action=action)
        return Response(body, status=code)

    def list_response(self, queryset) -> Response:
        page = self.paginate_queryset(self.filter_queryset(queryset))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- filters ----------------------------------------------------------------------------------------------------------


class _PolicyFilter(filters.FilterSet):
    active = filters.BooleanFilter(field_name="is_active", help_text="true: switched on; false: switched off.")
    running_at = filters.IsoDateTimeFilter(
        method="in_force_at",
        help_text="In force at this time (ISO 8601): switched on and within its dates. Weekdays and hours are each "
        "store's local time: the engine checks them when pricing.",
    )
    store_group = filters.CharFilter(field_name="store_group__code", help_text="A store group's code.")

    def in_force_at(self, queryset, name, at):
        return policy.in_force_at(queryset, at)


class PromotionFilter(_PolicyFilter):
    kind = filters.ChoiceFilter(choices=[(k, k) for k in engine.Kind.ALL])
    campaign = filters.CharFilter(help_text="The campaign, exactly.")

    class Meta:
        model = Promotion
        fields: list[str] = []


class PriceListFilter(_PolicyFilter):
    class Meta:
        model = PriceList
        fields: list[str] = []


# --- promotions -------------------------------------------------------------------------------------------------------

PROMOTION_REFUSALS = {
    400: OpenApiResponse(description="invalid: a field of the wrong type or shape, a negative amount or count"),
    409: OpenApiResponse(description="already_exists: the code is taken"),
    422: OpenApiResponse(
        description="invalid_promotion, details per field: dates reversed, a percent over 100, a discount larger "
        "than a SKU's (or a category's cheapest product's) price or than the spend it requires, a bundle at or above "
        "its parts' price or listing a SKU twice, unknown SKUs, channels or tiers, a budget below what it already "
        "gave; idempotency_key_reused"
    ),
}


class PromotionsView(PolicyView):
    queryset = Promotion.objects.select_related("store_group").order_by("code")
    serializer_class = io.PromotionSerializer
    filterset_class = PromotionFilter

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_list", summary="Promotions, filtered",
        description="Every promotion with its scope, period, budget and counters (uses, discount given), by code."
        + AUTH + " Permission: `pricing.view_promotion`.",
        responses={200: io.PromotionSerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return self.list_response(self.get_queryset())

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_create", summary="Create a promotion",
        description="Checked as the admin checks it (orders.pricing.services.check_promotion); the policy's version "
        "moves in the same transaction, so quotes and tills' snapshots take it at once. Fields left out take their "
        "defaults (every channel, store, tier, day; no budget)." + AUTH + " Permission: `pricing.add_promotion`.",
        parameters=[IDEMPOTENCY], request=io.PromotionSerializer,
        responses={201: io.PromotionSerializer, **AUTH_ERRORS, **PROMOTION_REFUSALS},
        examples=[OpenApiExample("Buy 2 shirts, get the 3rd free", value=io.PROMOTION_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)

        def action():
            return status.HTTP_201_CREATED, self.get_serializer(policy.create_promotion(data=body.validated_data)).data

        return self.idempotent(request, "promotions", action)


class PromotionView(PolicyView):
    queryset = Promotion.objects.select_related("store_group")
    serializer_class = io.PromotionSerializer

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_retrieve", summary="A promotion",
        description="Permission: `pricing.view_promotion`." + AUTH,
        responses={200: io.PromotionSerializer, **AUTH_ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_update", summary="Replace a promotion",
        description="Every field as given; the ones left out go back to their defaults. The code stays (a different "
        "`code` in the body is 400). The version moves only if something changed." + AUTH
        + " Permission: `pricing.change_promotion`.",
        request=io.PromotionSerializer,
        responses={200: io.PromotionSerializer, **AUTH_ERRORS, **NOT_FOUND, **PROMOTION_REFUSALS},
    )
    def put(self, request: Request, code: str) -> Response:
        return self._change(request, code, partial=False)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_partial_update", summary="Change some of a promotion",
        description="Only the fields given change; the whole promotion is checked again." + AUTH
        + " Permission: `pricing.change_promotion`.",
        request=io.PromotionSerializer,
        responses={200: io.PromotionSerializer, **AUTH_ERRORS, **NOT_FOUND, **PROMOTION_REFUSALS},
    )
    def patch(self, request: Request, code: str) -> Response:
        return self._change(request, code, partial=True)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_destroy", summary="Delete a promotion never used",
        description="A promotion with codes or results is kept for its history: 409 in_use (switch it off with "
        "`is_active: false`)." + AUTH + " Permission: `pricing.delete_promotion`.",
        responses={204: None, **AUTH_ERRORS, **NOT_FOUND, 409: OpenApiResponse(description="in_use")},
    )
    def delete(self, request: Request, code: str) -> Response:
        policy.delete_promotion(code=code)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _change(self, request: Request, code: str, *, partial: bool) -> Response:
        body = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        promo = policy.update_promotion(code=code, data=body.validated_data, partial=partial)
        return Response(self.get_serializer(promo).data)


# --- codes ------------------------------------------------------------------------------------------------------------


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode(self.charset) if isinstance(data, str) else data


class PromotionCodesView(PolicyView):
    queryset = Code.objects.none()  # the permission asked: pricing.add_code, as the admin's action
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_promotion_codes",
        summary="Generate codes for a promotion (JSON, or CSV with Accept: text/csv)",
        description="`count` new random codes (letters and digits that cannot be misread, after the `prefix`), each "
        "usable `max_uses` times (1: single-use), until `expires_at`, for a campaign. With `Accept: text/csv` the "
        "answer is the admin's codes export (code, promotion, campaign, max_uses, uses, expires_at, member). Send an "
        "`Idempotency-Key`: a retry with the same key answers the same codes instead of a second batch." + AUTH
        + " Permission: `pricing.add_code`.",
        parameters=[IDEMPOTENCY], request=io.GenerateCodesInput,
        responses={
            (201, "application/json"): io.GeneratedCodesOutput,
            (201, "text/csv"): OpenApiTypes.STR,
            **AUTH_ERRORS, **NOT_FOUND,
            422: OpenApiResponse(description="idempotency_key_reused"),
        },
    )
    def post(self, request: Request, code: str) -> Response:
        body = io.GenerateCodesInput(data=request.data)
        body.is_valid(raise_exception=True)
        q = body.validated_data

        def action():
            promo, made = policy.generate_codes(code=code, count=q["count"], prefix=q["prefix"],
                                                campaign=q["campaign"], max_uses=q["max_uses"],
                                                expires_at=q["expires_at"])
            answer = {"promotion": promo.code, "campaign": q["campaign"] or promo.campaign,
                      "max_uses": q["max_uses"], "expires_at": q["expires_at"], "count": len(made),
                      "codes": sorted(c.code for c in made)}
            return status.HTTP_201_CREATED, io.GeneratedCodesOutput(answer).data

        response = self.idempotent(request, "codes", action, payload={"promotion": code, **request.data})
        if request.accepted_renderer.format == "csv":
            response.data = _codes_csv(response.data)
            response["Content-Disposition"] = f'attachment; filename="codes-{code}.csv"'
        return response

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        # An error is JSON whatever was asked for: a CSV of an error body would be nonsense.
        renderer = getattr(request, "accepted_renderer", None)
        if renderer is not None and renderer.format == "csv" and not isinstance(response.data, str | None):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


def _codes_csv(answer: dict) -> str:
    """The answer's codes as the admin exports them (the same writer), from the answer itself: a replay gives the
    codes of the first call."""
    promotion = Promotion(code=answer["promotion"])
    expires = parse_datetime(answer["expires_at"]) if answer["expires_at"] else None
    out = _io.StringIO()
    write_codes_csv((Code(code=text, promotion=promotion, campaign=answer["campaign"], max_uses=answer["max_uses"],
                          uses=0, expires_at=expires) for text in answer["codes"]), out)
    return out.getvalue()


# --- price lists ------------------------------------------------------------------------------------------------------

PRICE_LIST_REFUSALS = {
    400: OpenApiResponse(description="invalid: a field of the wrong type or shape"),
    409: OpenApiResponse(description="already_exists: the code is taken"),
    422: OpenApiResponse(description="invalid_price_list, details per field: dates reversed, unknown channels; "
                                     "idempotency_key_reused"),
}


def _price_lists():
    return PriceList.objects.select_related("store_group").annotate(n_rows=Count("rows")).order_by("code")


class PriceListsView(PolicyView):
    serializer_class = io.PriceListSerializer
    filterset_class = PriceListFilter

    def get_queryset(self):
        return _price_lists()

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_list", summary="Price lists, filtered",
        description="Every price list with its scope, period and number of rows, by code." + AUTH
        + " Permission: `pricing.view_pricelist`.",
        responses={200: io.PriceListSerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return self.list_response(self.get_queryset())

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_create", summary="Create a price list (without rows)",
        description="Its prices then come with PUT …/price-lists/{code}/rows/. Precedence when several lists price a "
        "SKU: a list scoped to stores over a chain-wide one, to channels over every channel, then the higher "
        "priority, the later start, the code." + AUTH + " Permission: `pricing.add_pricelist`.",
        parameters=[IDEMPOTENCY], request=io.PriceListSerializer,
        responses={201: io.PriceListSerializer, **AUTH_ERRORS, **PRICE_LIST_REFUSALS},
        examples=[OpenApiExample("Hà Nội's stores", value=io.PRICE_LIST_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)

        def action():
            made = policy.create_price_list(data=body.validated_data)
            return status.HTTP_201_CREATED, self.get_serializer(_price_lists().get(pk=made.pk)).data

        return self.idempotent(request, "price-lists", action)


class PriceListView(PolicyView):
    serializer_class = io.PriceListSerializer

    def get_queryset(self):
        return _price_lists()

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_retrieve", summary="A price list",
        description="Permission: `pricing.view_pricelist`." + AUTH,
        responses={200: io.PriceListSerializer, **AUTH_ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_update", summary="Replace a price list's scope and period",
        description="Every field as given, the others back to their defaults; its rows stay. The code stays."
        + AUTH + " Permission: `pricing.change_pricelist`.",
        request=io.PriceListSerializer,
        responses={200: io.PriceListSerializer, **AUTH_ERRORS, **NOT_FOUND, **PRICE_LIST_REFUSALS},
    )
    def put(self, request: Request, code: str) -> Response:
        return self._change(request, code, partial=False)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_partial_update", summary="Change some of a price list",
        description="Only the fields given change." + AUTH + " Permission: `pricing.change_pricelist`.",
        request=io.PriceListSerializer,
        responses={200: io.PriceListSerializer, **AUTH_ERRORS, **NOT_FOUND, **PRICE_LIST_REFUSALS},
    )
    def patch(self, request: Request, code: str) -> Response:
        return self._change(request, code, partial=True)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_destroy", summary="Delete a price list and its rows",
        description="Permission: `pricing.delete_pricelist`." + AUTH,
        responses={204: None, **AUTH_ERRORS, **NOT_FOUND},
    )
    def delete(self, request: Request, code: str) -> Response:
        policy.delete_price_list(code=code)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _change(self, request: Request, code: str, *, partial: bool) -> Response:
        body = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        changed = policy.update_price_list(code=code, data=body.validated_data, partial=partial)
        return Response(self.get_serializer(_price_lists().get(pk=changed.pk)).data)


class PriceListRowsView(PolicyView):
    permission_classes = [RowsPermissions]
    queryset = PriceList.objects.all()

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_rows", summary="A price list's rows, by SKU",
        description="Permission: `pricing.view_pricelist`." + AUTH,
        responses={200: io.PriceRowSerializer(many=True), **AUTH_ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, code: str) -> Response:
        price_list = self.get_object()
        rows = (PriceListRow.objects.filter(price_list=price_list).annotate(sku=F("product__sku"))
                .order_by("sku").values("sku", "price_vnd"))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(io.PriceRowSerializer(page, many=True).data)

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_price_list_rows_put", summary="Set a price list's prices in bulk",
        description=f"Up to {policy.MAX_ROWS} rows in one transaction: a SKU already listed gets its new price, a new "
        "one a row; with `replace: true` the rows of the SKUs not given are deleted (`rows: []` empties the list). "
        "Counted back: created, updated, unchanged, deleted. Unknown SKUs refuse the whole request (422 unknown_sku "
        "with the list); a negative price, a SKU given twice or too many rows is 400 with the rows at fault. The "
        "policy's version moves once, only if a row changed." + AUTH + " Permissions: `pricing.change_pricelist` "
        "and `pricing.add_pricelistrow`, `change_pricelistrow`, `delete_pricelistrow`.",
        request=io.PriceRowsInput,
        responses={
            200: io.PriceRowsOutput, **AUTH_ERRORS, **NOT_FOUND,
            400: OpenApiResponse(description="invalid: details.rows names each row at fault by its index"),
            422: OpenApiResponse(description="unknown_sku: details.skus lists them"),
        },
        examples=[OpenApiExample("Two prices", value=io.ROWS_EXAMPLE, request_only=True)],
    )
    def put(self, request: Request, code: str) -> Response:
        self.get_object()  # 404 before reading 20,000 rows
        body = io.PriceRowsInput(data=request.data)
        body.is_valid(raise_exception=True)
        result = policy.put_price_list_rows(code=code, prices=body.validated_data["rows"],
                                            replace=body.validated_data["replace"])
        return Response(io.PriceRowsOutput(result).data)


# --- the policy's version ---------------------------------------------------------------------------------------------


class PolicyVersionView(PolicyView):
    permission_classes = [CanReadPolicy]

    @extend_schema(
        tags=[TAG], operation_id="pricing_policy_version", summary="The policy's version",
        description="Raised by every change to prices, promotions, codes and fees (from the admin or this API): a "
        "tool that mirrors the policy compares it to know whether to read again." + AUTH
        + " Permission: `pricing.view_promotion` or `pricing.view_pricelist`.",
        responses={200: io.PolicyVersionOutput, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        row = PolicyVersion.objects.filter(pk=1).values("version", "changed_at").first()
        return Response(io.PolicyVersionOutput(row or {"version": 0, "changed_at": None}).data)
