"""Operations admin for orders: each store's queue with actions for the fulfilment transitions (through
orders.services), and each order with its lines, fulfillments and routing decisions (candidates, scores, reason).
Everything is read-only here except the actions; no business rule lives in this module."""

from zoneinfo import ZoneInfo

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from inventory.admin import StoreFilter, format_vnd
from o2o.domain_errors import DomainError
from o2o.staff.scope import StoreScopedAdmin, restrict, scoped_stores
from orders import board, services
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Order,
    OrderLine,
    OrderStatus,
    RoutingDecision,
)

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

    def get_queryset(self, request):
        # A split order shows only the parts done by the viewer's stores.
        return restrict(super().get_queryset(request), request, ("store",))

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
class OrderAdmin(StoreScopedAdmin, ReadOnlyMixin, admin.ModelAdmin):
    store_scope_fields = ("fulfillments__store",)
    store_scope_multi = True
    list_display = ["number", "channel", "method", "status", "customer_name", "customer_phone", "total", "created_at"]
    list_filter = ["status", "method", "channel"]
    search_fields = ["=number", "=customer_phone"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, FulfillmentInline, RoutingDecisionInline]
    actions = ["cancel_orders"]
    list_select_related = ["channel"]
    show_full_result_count = False

    @admin.display(description="total", ordering="total_vnd")
    def total(self, obj: Order) -> str:
        return format_vnd(obj.total_vnd)

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

    def get_urls(self):
        board = path("board/", self.admin_site.admin_view(self.board_view), name="orders_order_board")
        return [board, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "board_url": reverse("admin:orders_order_board")}
        return super().changelist_view(request, extra_context)

    def board_view(self, request: HttpRequest) -> HttpResponse:
        """The network board of the viewer's stores (head office: the whole chain)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        data = board.network_board(stores=scoped_stores(request))
        peak = max(data.per_hour) or 1
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Network board",
            "subtitle": None,
            "board": data,
            "map": board.svg_map(data),
            "hours": [
                {"hour": h, "n": n, "x": h * 20, "y": 130 - round(120 * n / peak), "height": round(120 * n / peak),
                 "label": h % 3 == 0}
                for h, n in enumerate(data.per_hour)
            ],
            "order_statuses": [(label, data.orders_by_status.get(value, 0)) for value, label in OrderStatus.choices],
            "fulfillment_statuses": [
                (label, data.fulfillments_by_status.get(value, 0)) for value, label in FulfillmentStatus.choices
            ],
            "queue_url": reverse("admin:orders_fulfillment_queue"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/orders/order/board.html", context)


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
class FulfillmentAdmin(StoreScopedAdmin, ReadOnlyMixin, admin.ModelAdmin):
    """Every fulfillment of the viewer's stores, with bulk actions; the store queue (queue_view) is the day's screen."""

    list_display = ["id", "order_link", "store", "method", "status", "promised_by", "lines_summary", "pickup"]
    list_filter = ["status", "method", StoreFilter]
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

    # --- the store queue ---------------------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("queue/", wrap(self.queue_view), name="orders_fulfillment_queue"),
            path("<path:object_id>/move/", wrap(self.move_view), name="orders_fulfillment_move"),
            path("<path:object_id>/short-pick/", wrap(self.short_pick_view), name="orders_fulfillment_short_pick"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "queue_url": reverse("admin:orders_fulfillment_queue")}
        return super().changelist_view(request, extra_context)

    def _actor(self, request: HttpRequest) -> str:
        return f"staff:{request.user.get_username()}"

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        """What the store has to do now, soonest promise first, with the next steps as buttons."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        stores = list(scoped_stores(request).order_by("code").only("pk", "code", "name", "timezone"))
        store_id = request.GET.get("store", "")
        rows = self.get_queryset(request).filter(status__in=QUEUE_STATUSES)
        if store_id.isdigit():
            rows = rows.filter(store_id=int(store_id))
        now = timezone.now()
        can_change = self.has_change_permission(request)
        queue = []
        for f in rows.order_by("promised_by", "pk")[:QUEUE_LIMIT]:
            left = f.promised_by - now
            queue.append({
                "f": f,
                "late": left.total_seconds() < 0,
                "time_left": _duration(left),
                "lines": _lines(f),
                "moves": [(to, QUEUE_BUTTONS[to]) for to in services.allowed_transitions(f) if to in QUEUE_BUTTONS]
                if can_change else [],
                "can_short_pick": can_change and f.status in (S.ASSIGNED, S.PICKING),
            })
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Store queue",
            "subtitle": None,
            "stores": stores,
            "store_id": store_id,
            "queue": queue,
            "now": now,
            "limit": QUEUE_LIMIT,
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/orders/fulfillment/queue.html", context)
        shown = [s for s in stores if str(s.pk) == store_id] or (stores if len(stores) == 1 else [])
        # Times in the store's own time zone when one store is shown (the site's otherwise).
        with timezone.override(ZoneInfo(shown[0].timezone) if shown else timezone.get_current_timezone()):
            return response.render()

    def move_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One click in the queue: one transition through orders.services, by this staff member."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        f = self.get_object(request, unquote(object_id))  # another store's fulfillment: 404
        to = request.POST.get("to", "")
        try:
            services.transition_fulfillment(fulfillment=f.pk, to=to, actor=self._actor(request))
        except DomainError as exc:
            self.message_user(request, f"#{f.pk}: {exc.message}", messages.ERROR)
        else:
            self.log_change(request, f, f"{f.status} → {to}")
            self.message_user(request, f"#{f.pk} ({f.order.number}) → {FulfillmentStatus(to).label}.", messages.SUCCESS)
        return HttpResponseRedirect(_back_to_queue(request, f))

    def short_pick_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The picker found fewer units: enter what was found per line; orders.services re-routes the rest."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        f = self.get_object(request, unquote(object_id))
        lines = list(f.lines.select_related("product").order_by("pk"))
        errors: list[str] = []
        if request.method == "POST":
            found: dict[int, int] = {}
            for line in lines:
                raw = request.POST.get(f"found_{line.pk}", "").strip()
                if raw == "":
                    continue
                if not raw.isdigit() or int(raw) > line.units:
                    errors.append(f"{line.product.sku}: enter a whole number from 0 to {line.units}.")
                    continue
                found[line.product_id] = int(raw)
            if not errors:
                try:
                    new = services.report_short_pick(fulfillment=f.pk, found=found, actor=self._actor(request))
                except DomainError as exc:
                    errors.append(exc.message)
                else:
                    summary = ", ".join(f"{line.product.sku} {found[line.product_id]}/{line.units}"
                                        for line in lines if line.product_id in found)
                    self.log_change(request, f, f"Short pick: found {summary or 'everything'}")
                    rerouted = f" Re-routed to {len(new)} other fulfillment(s)." if new else ""
                    self.message_user(request, f"#{f.pk}: short pick recorded ({summary}).{rerouted}", messages.SUCCESS)
                    return HttpResponseRedirect(_back_to_queue(request, f))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Short pick: fulfillment #{f.pk} ({f.order.number})",
            "subtitle": None,
            "original": f,
            "lines": [(line, request.POST.get(f"found_{line.pk}", "")) for line in lines],
            "errors": errors,
            "queue_url": _back_to_queue(request, f),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/orders/fulfillment/short_pick.html", context)


# Statuses the store still has work on, and the buttons it gets (cancelling stays a deliberate bulk action).
QUEUE_STATUSES = (S.ASSIGNED, S.PICKING, S.PACKED, S.READY_FOR_PICKUP)
QUEUE_BUTTONS = {
    S.PICKING: "Start picking",
    S.PACKED: "Packed",
    S.READY_FOR_PICKUP: "Ready for pickup",
    S.HANDED_TO_COURIER: "Handed to courier",
    S.COLLECTED: "Collected",
    S.NOT_COLLECTED: "Not collected",
}
QUEUE_LIMIT = 200


def _duration(delta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    text = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    return f"late by {text}" if delta.total_seconds() < 0 else text


def _back_to_queue(request: HttpRequest, f: Fulfillment) -> str:
    return reverse("admin:orders_fulfillment_queue") + f"?store={f.store_id}"
import orders.couriers.admin  # noqa: E402,F401  - registers the courier screens (orders.couriers is not an app of its own)
