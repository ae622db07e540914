"""The courier desk: deliveries (SLA state in colour and as a filter: at risk, escalated), the events each provider
sent (applied or not, and why), and packed delivery fulfillments waiting for a courier. Actions (re-dispatch,
escalate, delivery failed, returned to the store, dispatch) call orders.couriers.services."""

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from o2o.domain_errors import DomainError
from orders.couriers import services
from orders.couriers.models import CourierEvent, Delivery, DeliveryStatus, FulfillmentAwaitingCourier, SlaState
from orders.couriers.providers import provider_names
from orders.models import FulfillmentStatus, Method


class ReadOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _staff(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


class CourierEventInline(ReadOnly, admin.TabularInline):
    model = CourierEvent
    fields = ["received_at", "event_id", "provider_status", "status", "applied", "note"]
    readonly_fields = fields
    extra = 0
    ordering = ["id"]


SLA_COLOURS = {SlaState.OK: "#2e7d32", SlaState.AT_RISK: "#ef6c00", SlaState.ESCALATED: "#c62828"}
STATUS_COLOURS = {DeliveryStatus.DELIVERED: "#2e7d32", DeliveryStatus.FAILED: "#c62828",
                  DeliveryStatus.RETURNED: "#6a1b9a", DeliveryStatus.CANCELLED: "#757575"}


def _badge(text: str, colour: str):
    return format_html('<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</span>',
                       colour, text)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, admin.ModelAdmin):
    """SLA state in colour (green on time, orange at risk, red escalated) with the watch's note; filter on it. The
    actions go through orders.couriers.services, as a courier's webhook would."""

    list_display = ["id", "fulfillment_link", "provider", "external_id", "status_badge", "sla_badge", "sla_note",
                    "attempt", "courier_name", "requested_at", "status_changed_at"]
    list_filter = ["sla_state", "status", "provider"]
    search_fields = ["=external_id", "=fulfillment__order__number", "courier_phone"]
    list_select_related = ["fulfillment__order"]
    readonly_fields = ["fulfillment_link"]
    inlines = [CourierEventInline]
    show_full_result_count = False
    actions = ["redispatch", "escalate", "record_failed", "confirm_returned"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="fulfillment", ordering="fulfillment")
    def fulfillment_link(self, obj: Delivery):
        url = reverse("admin:orders_fulfillment_change", args=[obj.fulfillment_id])
        return format_html('<a href="{}">#{} ({})</a>', url, obj.fulfillment_id, obj.fulfillment.order.number)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery):
        colour = STATUS_COLOURS.get(obj.status)
        return _badge(obj.get_status_display(), colour) if colour else obj.get_status_display()

    @admin.display(description="SLA", ordering="sla_state")
    def sla_badge(self, obj: Delivery):
        return _badge(obj.get_sla_state_display(), SLA_COLOURS.get(obj.sla_state, "#757575"))

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_delivery")

    @admin.action(description="Re-dispatch: cancel and request a courier again (not picked up yet)")
    def redispatch(self, request: HttpRequest, queryset: QuerySet[Delivery]):
        for d in queryset.order_by("pk"):
            try:
                new = services.redispatch(delivery=d, reason=f"re-dispatched by {_staff(request)}")
            except DomainError as exc:
                self.message_user(request, f"#{d.pk}: {exc.message}", messages.ERROR)
                continue
            if new is None:
                self.message_user(request, f"#{d.pk}: not re-dispatched (picked up, ended, or the provider refused).",
                                  messages.WARNING)
            else:
                self.message_user(request, f"#{d.pk} → new delivery #{new.pk}.", messages.SUCCESS)

    @admin.action(description="Escalate to the store (SLA: a person takes over)")
    def escalate(self, request: HttpRequest, queryset: QuerySet[Delivery]):
        for d in queryset.order_by("pk"):
            if services.escalate(delivery=d, actor=_staff(request)):
                self.message_user(request, f"#{d.pk}: escalated.", messages.SUCCESS)
            else:
                self.message_user(request, f"#{d.pk}: not escalated (already escalated, or ended).", messages.WARNING)

    @admin.action(description="Delivery failed: the courier brings the goods back (delivery_failed)")
    def record_failed(self, request: HttpRequest, queryset: QuerySet[Delivery]):
        self._apply_each(request, queryset, lambda d: services.record_failure(
            delivery=d, actor=_staff(request), reason=f"reported failed by {_staff(request)}"))

    @admin.action(description="Goods back in the store, on sale again (returned_to_store)")
    def confirm_returned(self, request: HttpRequest, queryset: QuerySet[Delivery]):
        self._apply_each(request, queryset, lambda d: services.confirm_returned(delivery=d, actor=_staff(request)))

    def _apply_each(self, request: HttpRequest, queryset: QuerySet[Delivery], apply):
        for d in queryset.order_by("pk"):
            try:
                outcome = apply(d)
            except DomainError as exc:
                self.message_user(request, f"#{d.pk}: {exc.message}", messages.ERROR)
                continue
            if outcome.duplicate:
                self.message_user(request, f"#{d.pk}: already recorded; nothing changed.", messages.WARNING)
            else:
                level = messages.SUCCESS if outcome.applied else messages.WARNING
                self.message_user(request, f"#{d.pk}: {outcome.note or 'done'}", level)


@admin.register(CourierEvent)
class CourierEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["received_at", "provider", "event_id", "external_id", "provider_status", "status", "applied", "note"]
    list_filter = ["provider", "applied", "status"]
    search_fields = ["=event_id", "=external_id"]
    date_hierarchy = "received_at"
    show_full_result_count = False


@admin.register(FulfillmentAwaitingCourier)
class FulfillmentAwaitingCourierAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "order", "store", "promised_by", "status_changed_at", "dispatches"]
    search_fields = ["=store__code", "=order__number"]
    list_select_related = ["order", "store"]
    ordering = ["status_changed_at", "id"]
    actions = [f"dispatch_{name}" for name in ("local", "ahamove", "lalamove")]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(method=Method.DELIVERY, status=FulfillmentStatus.PACKED)

    def get_actions(self, request):
        actions = super().get_actions(request)
        enabled = set(provider_names())
        return {name: a for name, a in actions.items() if not name.startswith("dispatch_") or name[9:] in enabled}

    @admin.display(description="dispatches")
    def dispatches(self, obj):
        return obj.deliveries.count()

    def _dispatch(self, request, queryset, provider: str):
        for f in queryset.order_by("pk"):
            try:
                d = services.dispatch_fulfillment(fulfillment=f.pk, provider=provider, actor=_staff(request))
            except DomainError as exc:
                self.message_user(request, f"#{f.pk}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"#{f.pk} → {provider} {d.external_id}.", messages.SUCCESS)

    @admin.action(description="Dispatch to the local courier")
    def dispatch_local(self, request, queryset):
        self._dispatch(request, queryset, "local")

    @admin.action(description="Dispatch to Ahamove")
    def dispatch_ahamove(self, request, queryset):
        self._dispatch(request, queryset, "ahamove")

    @admin.action(description="Dispatch to Lalamove")
    def dispatch_lalamove(self, request, queryset):
        self._dispatch(request, queryset, "lalamove")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("orders.view_fulfillment")
