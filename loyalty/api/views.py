"""The website's loyalty API (sales channel key): members, balances, history, and points as a checkout tender.

Views parse, call one selector or service, render. A phone in the path may be in any common format (URL-encode a
leading '+' as %2B or leave it out: 0901234567 works)."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty import conf, selectors, services
from loyalty.api import serializers as io
from loyalty.models import Member
from o2o.idempotency import run_once

ERRORS = {
    400: OpenApiResponse(description="invalid_phone, invalid_amount or invalid input"),
    401: OpenApiResponse(description="Missing or bad key"),
}
NOT_FOUND = {404: OpenApiResponse(description="unknown_member")}
PHONE = OpenApiParameter("phone", str, OpenApiParameter.PATH, description="The member's phone, any common format.")
HOLD_ID = OpenApiParameter("hold_id", int, OpenApiParameter.PATH, description="The redemption (hold) id.")


def _actor(request: Request) -> str:
    return f"channel:{request.auth.channel.code}"


def _member_body(member: Member) -> dict:
    return io.MemberOutput(
        {
            "phone": member.phone,
            "name": member.name,
            "email": member.email,
            "created_at": member.created_at,
            "tier": selectors.tier_progress(member=member),
            "balance": selectors.balance(member=member),
        }
    ).data


class MembersView(APIView):
    @extend_schema(
        operation_id="loyalty_member_lookup",
        summary="Find a member by phone number",
        parameters=[io.PhoneQuery],
        responses={200: io.MemberOutput, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        query = io.PhoneQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = selectors.member_by_phone(query.validated_data["phone"])
        return Response(_member_body(member))

    @extend_schema(
        operation_id="loyalty_member_sign_up",
        summary="Sign up (or find) the member behind a phone number",
        description="Idempotent by phone: 201 when the member was created, 200 when it already existed. A blank "
        "name or email is filled in; existing ones are kept.",
        request=io.SignUpInput,
        responses={201: io.MemberOutput, 200: io.MemberOutput, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = io.SignUpInput(data=request.data)
        body.is_valid(raise_exception=True)
        q = body.validated_data
        member, created = services.get_or_create_member(
            phone=q["phone"], name=q.get("name") or None, email=q.get("email") or None, channel=request.auth.channel.code
        )
        return Response(_member_body(member), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MemberDetailView(APIView):
    @extend_schema(
        operation_id="loyalty_member_get",
        summary="A member: tier, progress to the next tier, balance",
        parameters=[PHONE],
        responses={200: io.MemberOutput, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, phone: str) -> Response:
        return Response(_member_body(selectors.member_by_phone(phone)))


class MemberBalanceView(APIView):
    @extend_schema(
        operation_id="loyalty_member_balance",
        summary="Points available, pending, held, and expiring in the next 30 days",
        parameters=[PHONE],
        responses={200: io.BalanceOutput, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, phone: str) -> Response:
        member = selectors.member_by_phone(phone)
        return Response(io.BalanceOutput(selectors.balance(member=member)).data)


class MemberHistoryView(generics.ListAPIView):
    serializer_class = io.PostingOutput
    filter_backends: list = []

    def get_queryset(self):
        return selectors.history(member=selectors.member_by_phone(self.kwargs["phone"]))

    @extend_schema(
        operation_id="loyalty_member_history",
        summary="The member's postings in every channel, newest first (paginated)",
        parameters=[PHONE],
        responses={200: io.PostingOutput(many=True), **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class RedemptionsView(APIView):
    @extend_schema(
        operation_id="loyalty_redemption_hold",
        summary="Hold points as a tender at checkout",
        description="Needs an `Idempotency-Key` header. Capture the hold when the order is placed, void it on "
        "cancel; it expires after `ttl_seconds` (default LOYALTY_HOLD_TTL_SECONDS, 900 s), and an expired hold "
        "cannot be captured.",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
        request=io.RedemptionInput,
        responses={
            201: io.RedemptionOutput,
            **ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(description="insufficient_points"),
            422: OpenApiResponse(description="The key was used with another body"),
        },
    )
    def post(self, request: Request) -> Response:
        body = io.RedemptionInput(data=request.data)
        body.is_valid(raise_exception=True)
        q = body.validated_data
        channel = request.auth.channel.code
        key = request.headers.get("Idempotency-Key")

        def action():
            member = selectors.member_by_phone(q["phone"])
            now = timezone.now()
            ttl = timedelta(seconds=q["ttl_seconds"]) if q.get("ttl_seconds") else conf.hold_ttl()
            hold = services.hold_redemption(
                member=member,
                points=q["points"],
                expires_at=now + ttl,
                now=now,
                source=services.PostingSource(channel=channel, reference=q.get("reference", ""), actor=_actor(request)),
                idempotency_key=f"channel:{channel}:hold:{key}",
            )
            return status.HTTP_201_CREATED, io.RedemptionOutput(hold).data

        code, payload, _ = run_once(
            scope=f"channel:{request.auth.channel_id}:loyalty.redemptions", key=key, payload=request.data, action=action
        )
        return Response(payload, status=code)


class RedemptionDetailView(APIView):
    @extend_schema(
        operation_id="loyalty_redemption_get",
        summary="A redemption hold and its status",
        parameters=[HOLD_ID],
        responses={200: io.RedemptionOutput, 404: OpenApiResponse(description="redemption_not_found")},
    )
    def get(self, request: Request, hold_id: int) -> Response:
        hold = selectors.hold_for_channel(hold_id=hold_id, channel=request.auth.channel.code)
        return Response(io.RedemptionOutput(hold).data)


class RedemptionCaptureView(APIView):
    @extend_schema(
        operation_id="loyalty_redemption_capture",
        summary="Capture a held redemption (the order was placed)",
        description="Safe to retry: capturing a captured hold answers the same.",
        parameters=[HOLD_ID],
        request=io.CaptureInput,
        responses={
            200: io.RedemptionOutput,
            **ERRORS,
            404: OpenApiResponse(description="redemption_not_found"),
            409: OpenApiResponse(description="redemption_not_held (voided or expired)"),
        },
    )
    def post(self, request: Request, hold_id: int) -> Response:
        body = io.CaptureInput(data=request.data)
        body.is_valid(raise_exception=True)
        hold = selectors.hold_for_channel(hold_id=hold_id, channel=request.auth.channel.code)
        services.capture_redemption(
            hold=hold,
            reference=body.validated_data.get("reference", ""),
            source=services.PostingSource(channel=hold.channel, actor=_actor(request)),
        )
        hold.refresh_from_db()
        return Response(io.RedemptionOutput(hold).data)


class RedemptionVoidView(APIView):
    @extend_schema(
        operation_id="loyalty_redemption_void",
        summary="Void a held redemption (cancelled checkout); the points go back",
        description="Safe to retry: voiding a voided hold answers the same.",
        parameters=[HOLD_ID],
        request=io.VoidInput,
        responses={
            200: io.RedemptionOutput,
            **ERRORS,
            404: OpenApiResponse(description="redemption_not_found"),
            409: OpenApiResponse(description="redemption_not_held (already captured)"),
        },
    )
    def post(self, request: Request, hold_id: int) -> Response:
        body = io.VoidInput(data=request.data)
        body.is_valid(raise_exception=True)
        hold = selectors.hold_for_channel(hold_id=hold_id, channel=request.auth.channel.code)
        hold = services.void_redemption(hold=hold, reason=body.validated_data["reason"], actor=_actor(request))
        return Response(io.RedemptionOutput(hold).data)
