"""Operations admin for orders: each store's queue with actions for the fulfilment transitions (through
orders.services), and each order with its lines, fulfillments and routing decisions (candidates, scores, reason).
Everything is read-only here except the actions; no business rule lives in this module."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from o2o.domain_errors import DomainError
from orders import services
from orders.models import Fulfillment, FulfillmentLine, FulfillmentStatus, Order, OrderLine, RoutingDecision

S = FulfillmentStatus


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + list(getattr(self, "extra_readonly", ()))


class OrderLineInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False


class FulfillmentInline(ReadOnlyMixin, admin.TabularInline):
    model = Fulfillment
    extra = 0
    can_delete = False
    fields = ["link", "store", "round", "status", "promised_by", "lines_summary", "pickup"]
    extra_readonly = ("link", "lines_summary", "pickup")

    @admin.display(description="fulfillment")
    def link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:orders_fulfillment_change", args=[obj.pk]), obj.pk)

    @admin.display(description="lines")
    def lines_summary(self, obj):
        return _lines(obj)

    @admin.display(description="pickup code")
    def pickup(self, obj):
        code = getattr(obj, "pickup_code", None) if hasattr(obj, "pickup_code") else None
        return f"{code.code}{'' if code.is_live else ' (retired)'}" if code else "—"


class RoutingDecisionInline(ReadOnlyMixin, admin.StackedInline):
    model = RoutingDecision
    extra = 0
    can_delete = False
    fields = ["kind", "created_at", "plan_status", "solve_ms", "applied", "reason", "candidates_table"]
    extra_readonly = ("candidates_table",)

    @admin.display(description="candidates")
    def candidates_table(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    ("★ " if c.get("chosen") else "") + c.get("store", ""),
                    c.get("distance_km"),
                    ", ".join(f"{k}: {v}" for k, v in c.get("stock", {}).items()),
                    "yes" if c.get("whole_cart") else "no",
                    c.get("capacity"),
                    c.get("score"),
                    c.get("note", ""),
                )
                for c in obj.candidates or []
            ),
        )
        return format_html(
            "<table><tr><th>store</th><th>km</th><th>stock</th><th>whole cart</th><th>capacity</th>"
            "<th>score</th><th>why</th></tr>{}</table>",
            rows,
        )


def _lines(f: Fulfillment) -> str:
    return ", ".join(
        f"{line.product.sku} × {line.qty}" + (f" (picked {line.picked_qty})" if line.picked_qty is not None else "")
        for line in f.lines.all()
    )


@admin.register(Order)
class OrderAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["number", "channel", "method", "status", "customer_name", "customer_phone", "total_vnd", "created_at"]
    list_filter = ["status", "method", "channel"]
    search_fields = ["=number", "=customer_phone"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, FulfillmentInline, RoutingDecisionInline]
    actions = ["cancel_orders"]
    list_select_related = ["channel"]
    show_full_result_count = False

    @admin.action(description="Cancel the selected orders (releases their stock)")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]):
        for order in queryset:
            try:
                services.cancel_order(order=order, actor=f"staff:{request.user.get_username()}")
            except DomainError as exc:
                self.message_user(request, f"{order.number}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{order.number} cancelled.", messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_order")


def _transition_action(to: str, label: str):
    def action(modeladmin, request: HttpRequest, queryset: QuerySet[Fulfillment]):
        done = 0
        for f in queryset.order_by("pk"):
            try:
                services.transition_fulfillment(fulfillment=f.pk, to=to, actor=f"staff:{request.user.get_username()}")
                done += 1
            except DomainError as exc:
                modeladmin.message_user(request, f"#{f.pk}: {exc.message}", messages.ERROR)
        if done:
            modeladmin.message_user(request, f"{done} fulfillment(s) → {to}.", messages.SUCCESS)

    action.__name__ = f"to_{to}"
    return admin.action(description=label)(action)


class FulfillmentLineInline(ReadOnlyMixin, admin.TabularInline):
    model = FulfillmentLine
    extra = 0
    can_delete = False


@admin.register(Fulfillment)
class FulfillmentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The store queue: filter by store (search its code) and status; act on the selected fulfillments."""

    list_display = ["id", "order_link", "store", "method", "status", "promised_by", "lines_summary", "pickup"]
    list_filter = ["status", "method"]
    search_fields = ["=store__code", "=order__number", "=pickup_code__code"]
    list_select_related = ["order", "store", "pickup_code"]
    ordering = ["promised_by", "id"]
    inlines = [FulfillmentLineInline]
    show_full_result_count = False
    extra_readonly = ("order_link", "lines_summary", "pickup")
    actions = [
        _transition_action(S.PICKING, "Start picking"),
        _transition_action(S.PACKED, "Mark packed"),
        _transition_action(S.READY_FOR_PICKUP, "Ready for pickup (pickup orders)"),
        _transition_action(S.COLLECTED, "Collected by the customer"),
        _transition_action(S.NOT_COLLECTED, "Not collected (release stock)"),
        _transition_action(S.HANDED_TO_COURIER, "Handed to courier (delivery orders)"),
        _transition_action(S.DELIVERED, "Delivered"),
        _transition_action(S.DELIVERY_FAILED, "Delivery failed (goods back in store)"),
        _transition_action(S.CANCELLED, "Cancel this fulfillment (release stock)"),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("lines__product")

    @admin.display(description="order", ordering="order__number")
    def order_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order.number)

    @admin.display(description="lines")
    def lines_summary(self, obj):
        return _lines(obj)

    @admin.display(description="pickup code")
    def pickup(self, obj):
        code = getattr(obj, "pickup_code", None) if hasattr(obj, "pickup_code") else None
        return code.code if code and code.is_live else "—"

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_fulfillment")
import orders.couriers.admin  # noqa: E402,F401  - registers the courier screens (orders.couriers is not an app of its own)
