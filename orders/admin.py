"""Operations admin for orders: each store's queue with actions for the fulfilment transitions (through
orders.services), and each order with its lines, fulfillments and routing decisions (candidates, scores, reason).
Everything is read-only here except the actions; no business rule lives in this module.

Each order also has a routing page (routing_view): every routing decision in time order with its candidates, scores
and reason, and a re-route form for staff with orders.reroute_order."""

import uuid
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from inventory.admin import StoreFilter, format_vnd
from inventory.models import Stock, TakenReservation
from inventory.staff.scope import ALL, StoreScopedAdmin, restrict, scoped_stores, store_ids_for
from o2o.domain_errors import DomainError
from orders import board, services
from orders.models import (
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    Order,
    OrderLine,
    OrderStatus,
    RoutingDecision,
    RoutingKind,
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

    @admin.display(description=_("fulfillment"))
    def link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:orders_fulfillment_change", args=[obj.pk]), obj.pk)

    @admin.display(description=_("lines"))
    def lines_summary(self, obj):
        return _lines(obj)

    @admin.display(description=_("pickup code"))
    def pickup(self, obj):
        code = getattr(obj, "pickup_code", None) if hasattr(obj, "pickup_code") else None
        if not code:
            return "—"
        return code.code if code.is_live else _("%(code)s (retired)") % {"code": code.code}


class RoutingDecisionInline(ReadOnlyMixin, admin.StackedInline):
    model = RoutingDecision
    extra = 0
    can_delete = False
    fields = ["kind", "cause", "created_at", "plan_status", "solve_ms", "applied", "reason", "candidates_table"]
    extra_readonly = ("candidates_table",)

    @admin.display(description=_("candidates"))
    def candidates_table(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    ("★ " if c.get("chosen") else "") + c.get("store", ""),
                    c.get("distance_km"),
                    ", ".join(f"{k}: {v}" for k, v in c.get("stock", {}).items()),
                    _("yes") if c.get("whole_cart") else _("no"),
                    c.get("capacity"),
                    c.get("score"),
                    candidate_note(c.get("note", "")),
                )
                for c in obj.candidates or []
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            _("store"), _("km"), _("stock"), _("whole cart"), _("capacity"), _("score"), _("why"),
            rows,
        )


# The router's notes on each candidate (orders.routing_input.candidate_summary), as operations read them.
CANDIDATE_NOTES = {
    "chosen": _("chosen"),
    "lacks stock for the whole cart": _("lacks stock for the whole cart"),
    "no picking capacity in the slot": _("no picking capacity in the slot"),
    "farther / costlier": _("farther / costlier"),
}


def candidate_note(note: str) -> str:
    return CANDIDATE_NOTES.get(note, note)


def _lines(f: Fulfillment) -> str:
    return ", ".join(
        f"{line.product.sku} × {line.qty}"
        + (_(" (picked %(n)s)") % {"n": line.picked_qty} if line.picked_qty is not None else "")
        for line in f.lines.all()
    )


class RerouteForm(forms.Form):
    # One key per rendered form: a double click or a resubmitted POST replays the first re-route instead of moving
    # the order a second time (orders.services.reroute_order keeps the key on its routing decision).
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=200)
    reason = forms.CharField(
        label=_("Reason"), max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Why the order moves (kept on the routing decision and sent to the sales channel)."),
    )
    avoid_current = forms.BooleanField(
        label=_("Avoid the current store(s)"), required=False,
        help_text=_("Otherwise the router may keep the order where it is, and then nothing changes."),
    )


@admin.register(Order)
class OrderAdmin(StoreScopedAdmin, ReadOnlyMixin, admin.ModelAdmin):
    store_scope_fields = ("fulfillments__store",)
    store_scope_multi = True
    list_display = [
        "number", "channel", "method", "status", "customer_name", "customer_phone", "total", "created_at", "routing",
    ]
    list_filter = ["status", "method", "channel"]
    search_fields = ["=number", "=customer_phone"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, FulfillmentInline, RoutingDecisionInline]
    actions = ["cancel_orders"]
    list_select_related = ["channel"]
    show_full_result_count = False

    @admin.display(description=_("total"), ordering="total_vnd")
    def total(self, obj: Order) -> str:
        return format_vnd(obj.total_vnd)

    @admin.display(description=_("routing"))
    def routing(self, obj: Order) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_routing", args=[obj.pk]), _("why here"))

    @admin.action(description=_("Cancel the selected orders (releases their stock)"))
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]):
        for order in queryset:
            try:
                services.cancel_order(order=order, actor=f"staff:{request.user.get_username()}")
            except DomainError as exc:
                self.message_user(request, f"{order.number}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("%(order)s cancelled.") % {"order": order.number}, messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("orders.change_order")

    def has_reroute_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.reroute_order")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("board/", wrap(self.board_view), name="orders_order_board"),
            path("<path:object_id>/routing/", wrap(self.routing_view), name="orders_order_routing"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "routing_url": reverse("admin:orders_order_routing", args=[object_id])}
        return super().change_view(request, object_id, form_url, extra_context)

    def routing_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Why the order is where it is: each routing decision with its candidates, and the re-route form."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        order = self.get_object(request, unquote(object_id))  # another store's order: 404
        may_reroute = self.has_reroute_permission(request)
        if request.method == "POST" and not (may_reroute and self._reroute_in_scope(request, order)):
            raise PermissionDenied
        refusal = services.reroute_refusal(order=order)
        if refusal is None and not self._reroute_in_scope(request, order):
            refusal = DomainError(_("Part of this order is served by stores outside your scope."))
        form = RerouteForm(request.POST or None, initial={"idempotency_key": f"admin-reroute-{uuid.uuid4()}"})
        if request.method == "POST" and form.is_valid():
            try:
                result = services.reroute_order(
                    order=order.pk,
                    reason=form.cleaned_data["reason"],
                    actor=f"staff:{request.user.get_username()}",
                    avoid_current_stores=form.cleaned_data["avoid_current"],
                    within_store_ids=self._route_within(request),
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self._reroute_message(request, order, result)
                return HttpResponseRedirect(reverse("admin:orders_order_routing", args=[order.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Routing of %(order)s") % {"order": order.number},
            "subtitle": None,
            "original": order,
            "decisions": self._decision_rows(request, order),
            "change_offers": list(order.change_offers.select_related("fulfillment__store").order_by("pk")),
            "taken": self._taken_rows(order),
            "form": form if may_reroute and (refusal is None or form.is_bound) else None,
            "may_reroute": may_reroute,
            "refusal": refusal.message if refusal is not None else None,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/orders/order/routing.html", context)

    def _reroute_in_scope(self, request: HttpRequest, order: Order) -> bool:
        """Staff move only work of their own stores: every live fulfillment of the order must be in their scope."""
        ids = store_ids_for(request.user)
        if ids is ALL:
            return True
        stores = set(order.fulfillments.exclude(status=S.CANCELLED).values_list("store_id", flat=True))
        return stores <= ids

    def _route_within(self, request: HttpRequest) -> set[int] | None:
        """The stores a staff member may move an order to: their scope (None, any store, for head office)."""
        ids = store_ids_for(request.user)
        return None if ids is ALL else set(ids)

    def _reroute_message(self, request: HttpRequest, order: Order, result: services.RerouteResult) -> None:
        stores = ", ".join(result.stores)
        if result.replayed:
            text = _("This re-route was already made (form sent twice): %(order)s is served by %(stores)s.")
            self.message_user(request, text % {"order": order.number, "stores": stores}, messages.WARNING)
        elif not result.changed:
            text = _(
                "The router kept %(order)s at %(stores)s; nothing was changed. Tick “Avoid the current store(s)” "
                "to move it."
            )
            self.message_user(request, text % {"order": order.number, "stores": stores}, messages.WARNING)
        else:
            self.log_change(request, order, f"Re-routed from {', '.join(result.from_stores)} to {stores}")
            text = _("%(order)s re-routed from %(old)s: now served by %(stores)s.")
            self.message_user(
                request, text % {"order": order.number, "old": ", ".join(result.from_stores), "stores": stores},
                messages.SUCCESS,
            )

    def _taken_rows(self, order: Order) -> list[TakenReservation]:
        """What store events took from this order's fulfillments (inventory's TakenReservation rows, by the
        reservation reference), with how each was reconciled."""
        references = [f"fulfillment:{pk}" for pk in order.fulfillments.values_list("pk", flat=True)]
        return list(
            TakenReservation.objects.filter(reference__in=references).select_related("store", "product").order_by("pk")
        )

    def _decision_rows(self, request: HttpRequest, order: Order) -> list[dict]:
        """Each decision with the fulfillments it produced: an applied decision opens the next routing round
        (placement round 1, each applied re-route or wave +1); a staff re-route names its fulfillments."""
        scope = store_ids_for(request.user)
        fulfillments = list(order.fulfillments.select_related("store").prefetch_related("lines__product").order_by("round", "pk"))
        rows = []
        round_no = 0
        for d in order.routing_decisions.order_by("created_at", "pk"):
            manual = (d.plan or {}).get("manual") if d.kind == RoutingKind.MANUAL else None
            if d.applied:
                round_no += 1
            if manual and manual.get("fulfillments"):
                produced = [f for f in fulfillments if f.pk in manual["fulfillments"]]
            else:
                produced = [f for f in fulfillments if d.applied and f.round == round_no]
            rows.append({
                "d": d,
                "manual": manual,
                "candidates": [
                    {**c, "note": candidate_note(c.get("note", "")),
                     "stock_list": sorted((c.get("stock") or {}).items())}
                    for c in d.candidates or []
                ],
                "fulfillments": [
                    {"f": f, "lines": _lines(f), "link": scope is ALL or f.store_id in scope} for f in produced
                ],
            })
        return rows

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
            "title": _("Network board"),
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
            text = ngettext("%(n)d fulfillment → %(to)s.", "%(n)d fulfillments → %(to)s.", done)
            modeladmin.message_user(request, text % {"n": done, "to": FulfillmentStatus(to).label}, messages.SUCCESS)

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
        _transition_action(S.PICKING, _("Start picking")),
        _transition_action(S.PACKED, _("Mark packed")),
        _transition_action(S.READY_FOR_PICKUP, _("Ready for pickup (pickup orders)")),
        _transition_action(S.COLLECTED, _("Collected by the customer")),
        _transition_action(S.NOT_COLLECTED, _("Not collected (release stock)")),
        _transition_action(S.HANDED_TO_COURIER, _("Handed to courier (delivery orders)")),
        _transition_action(S.DELIVERED, _("Delivered")),
        # The goods are still with the courier: stock does not move until they are back ("returned to the store").
        _transition_action(S.DELIVERY_FAILED, _("Delivery failed (goods still with the courier; stock unchanged)")),
        _transition_action(S.CANCELLED, _("Cancel this fulfillment (release stock)")),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("lines__product")

    @admin.display(description=_("order"), ordering="order__number")
    def order_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order.number)

    @admin.display(description=_("lines"))
    def lines_summary(self, obj):
        return _lines(obj)

    @admin.display(description=_("pickup code"))
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
            "title": _("Store queue"),
            "subtitle": None,
            "stores": stores,
            "store_id": store_id,
            "queue": queue,
            "now": now,
            "limit": QUEUE_LIMIT,
            "to_count": self._rows_to_count(stores, store_id),
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/orders/fulfillment/queue.html", context)
        shown = [s for s in stores if str(s.pk) == store_id] or (stores if len(stores) == 1 else [])
        # Times in the store's own time zone when one store is shown (the site's otherwise).
        with timezone.override(ZoneInfo(shown[0].timezone) if shown else timezone.get_current_timezone()):
            return response.render()

    def _rows_to_count(self, stores: list, store_id: str) -> list[Stock]:
        """The shown store's stock rows waiting for a count (the ledger lost track of the shelf: a till sold or a
        transfer sent more than it had, the shortfall; online they sell nothing until counted), so staff know what
        to count. Every store of the viewer's when none is picked."""
        ids = [s.pk for s in stores if str(s.pk) == store_id] or [s.pk for s in stores]
        return list(
            Stock.objects.filter(store_id__in=ids, needs_count=True)
            .select_related("store", "product")
            .order_by("-shortfall", "store__code", "product__sku")[:QUEUE_LIMIT]
        )

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
            text = _("#%(id)s (%(order)s) → %(status)s.")
            self.message_user(
                request, text % {"id": f.pk, "order": f.order.number, "status": FulfillmentStatus(to).label},
                messages.SUCCESS,
            )
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
                    errors.append(
                        _("%(sku)s: enter a whole number from 0 to %(max)s.") % {"sku": line.product.sku, "max": line.units}
                    )
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
                    text = _("#%(id)s: short pick recorded (%(summary)s).") % {"id": f.pk, "summary": summary}
                    if new:
                        text += " " + ngettext(
                            "Re-routed to %(n)d other fulfillment.", "Re-routed to %(n)d other fulfillments.", len(new)
                        ) % {"n": len(new)}
                    self.message_user(request, text, messages.SUCCESS)
                    return HttpResponseRedirect(_back_to_queue(request, f))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Short pick: fulfillment #%(id)s (%(order)s)") % {"id": f.pk, "order": f.order.number},
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
    S.PICKING: _("Start picking"),
    S.PACKED: _("Packed"),
    S.READY_FOR_PICKUP: _("Ready for pickup"),
    S.HANDED_TO_COURIER: _("Handed to courier"),
    S.COLLECTED: _("Collected"),
    S.NOT_COLLECTED: _("Not collected"),
}
QUEUE_LIMIT = 200


def _duration(delta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes >= 60:
        text = _("%(h)d h %(m)02d min") % {"h": minutes // 60, "m": minutes % 60}
    else:
        text = _("%(m)d min") % {"m": minutes}
    return _("late by %(time)s") % {"time": text} if delta.total_seconds() < 0 else text


def _back_to_queue(request: HttpRequest, f: Fulfillment) -> str:
    return reverse("admin:orders_fulfillment_queue") + f"?store={f.store_id}"
import orders.couriers.admin  # noqa: E402,F401  - registers the courier screens (orders.couriers is not an app of its own)
