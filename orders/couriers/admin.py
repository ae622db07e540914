"""The courier desk: deliveries (filter by SLA state: at risk, escalated), the events each provider sent (applied
or not, and why), and packed delivery fulfillments waiting for a courier. Actions call orders.couriers.services."""

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from o2o.domain_errors import DomainError
from orders.couriers import services
from orders.couriers.models import CourierEvent, Delivery, FulfillmentAwaitingCourier
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


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "fulfillment_link", "provider", "external_id", "status", "sla_state", "attempt",
                    "courier_name", "requested_at", "status_changed_at"]
    list_filter = ["sla_state", "status", "provider"]
    search_fields = ["=external_id", "=fulfillment__order__number", "courier_phone"]
    list_select_related = ["fulfillment__order"]
    readonly_fields = ["fulfillment_link"]
    inlines = [CourierEventInline]
    show_full_result_count = False
    actions = ["redispatch", "confirm_returned"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="fulfillment", ordering="fulfillment")
    def fulfillment_link(self, obj: Delivery):
        url = reverse("admin:orders_fulfillment_change", args=[obj.fulfillment_id])
        return format_html('<a href="{}">#{} ({})</a>', url, obj.fulfillment_id, obj.fulfillment.order.number)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_delivery")

    @admin.action(description="Cancel and request a courier again (not picked up yet)")
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

    @admin.action(description="Goods are back in the store (failed deliveries)")
    def confirm_returned(self, request: HttpRequest, queryset: QuerySet[Delivery]):
        for d in queryset.order_by("pk"):
            try:
                outcome = services.confirm_returned(delivery=d, actor=_staff(request))
            except DomainError as exc:
                self.message_user(request, f"#{d.pk}: {exc.message}", messages.ERROR)
                continue
            level = messages.SUCCESS if outcome.applied else messages.WARNING
            self.message_user(request, f"#{d.pk}: {outcome.note or 'returned'}", level)


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
