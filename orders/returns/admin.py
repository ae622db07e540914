"""Operations admin for returns: each return with its lines, refunds and routing decision (read-only), and the
inspection of quarantined units: write off, or back on sale, through orders.returns.services."""

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from o2o.domain_errors import DomainError
from orders.returns import services
from orders.returns.models import Disposition, Refund, Return, ReturnLine, ReturnRoutingDecision


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReturnLineInline(ReadOnlyMixin, admin.TabularInline):
    model = ReturnLine
    extra = 0
    fields = ["product", "qty", "condition", "refund_vnd", "disposition", "disposition_at"]
    readonly_fields = fields


class RefundInline(ReadOnlyMixin, admin.TabularInline):
    model = Refund
    extra = 0
    fields = ["tender", "amount_vnd", "points", "created_at"]
    readonly_fields = fields


class RoutingInline(ReadOnlyMixin, admin.StackedInline):
    model = ReturnRoutingDecision
    extra = 0
    fields = ["plan_status", "solve_ms", "reason", "candidates_table"]
    readonly_fields = fields

    @admin.display(description="candidates")
    def candidates_table(self, obj):
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((c["store"], c["distance_km"], c.get("shortage") or "—", c["fills"], c["score"],
              ("✔ " if c["chosen"] else "") + c.get("note", "")) for c in obj.candidates),
        )
        if not obj.candidates:
            return "—"
        return format_html(
            "<table><tr><th>store</th><th>km</th><th>short of target</th><th>fills</th><th>score</th><th></th></tr>"
            "{}</table>", rows
        )


@admin.register(Return)
class ReturnAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["number", "status", "opened_via", "order", "receipt", "receiving_store", "refund_vnd",
                    "refund_money_vnd", "points_given_back", "points_reversed", "created_at"]
    list_filter = ["status", "opened_via", "receiving_store"]
    search_fields = ["number", "order__number", "receipt__receipt_id"]
    list_select_related = ["order", "receipt", "receiving_store"]
    inlines = [ReturnLineInline, RefundInline, RoutingInline]

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


@admin.register(ReturnLine)
class QuarantineAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Returned units, filterable to what waits for inspection; the actions decide what happens to them."""

    list_display = ["ret", "product", "qty", "condition", "disposition", "store", "disposition_at"]
    list_filter = ["disposition", "condition", "ret__receiving_store"]
    search_fields = ["ret__number", "product__sku"]
    list_select_related = ["ret__receiving_store", "product"]
    actions = ["write_off", "back_on_sale"]

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    @admin.display(description="store")
    def store(self, obj):
        return obj.ret.receiving_store.code

    def _dispose(self, request, queryset, *, write_off: bool) -> None:
        done = 0
        for line in queryset.filter(disposition=Disposition.QUARANTINED).order_by("pk"):
            try:
                services.dispose_quarantined(line=line, write_off=write_off, actor=f"staff:{request.user.username}")
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{line}: {exc.message}", messages.ERROR)
        skipped = queryset.exclude(disposition__in=[Disposition.WRITTEN_OFF, Disposition.RELEASED]).count()
        what = "written off" if write_off else "back on sale"
        self.message_user(request, f"{done} quarantined line(s) {what}; {skipped} not quarantined left as they were.")

    @admin.action(description="Write off the quarantined units (after inspection)")
    def write_off(self, request, queryset):
        self._dispose(request, queryset, write_off=True)

    @admin.action(description="Put the quarantined units back on sale (after inspection)")
    def back_on_sale(self, request, queryset):
        self._dispose(request, queryset, write_off=False)
