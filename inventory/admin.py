"""Operations admin for stores, products and stock.

Stores, opening hours and products are configuration and are edited here directly. Stock, movements and
reservations are read-only: the only writes are the "Adjust stock" form and the "release" action, and both go
through inventory.services (which keeps the ledger). The stock tables hold millions of rows, so their change lists
never run a full COUNT(*), never list distinct values of a big table in a filter, and resolve searches to ids
through the small tables first so that PostgreSQL can use the indexes.
"""

import json
from datetime import datetime, time, timedelta

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import F, Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _
from import_export import fields as export_fields
from import_export import resources
from import_export.admin import ExportMixin

from inventory import selectors, services
from inventory.exceptions import StaleStockQuantity
from inventory.forms import StockAdjustmentForm
from inventory.models import (
    OpeningHours,
    Product,
    Reservation,
    Stock,
    StockImport,
    StockMovement,
    Store,
    TakenReservation,
)
from inventory.staff.scope import StoreScopedAdmin, scoped_stores
from o2o.domain_errors import DomainError
from o2o.templatetags import money

# --- helpers for big tables ----------------------------------------------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to `exact_limit` rows; past that, uses PostgreSQL's planner estimate instead of COUNT(*).

    Unfiltered lists read the table's row estimate from pg_class; filtered ones ask EXPLAIN. The page links past the
    true end of a filtered list may then show an empty page, which is the price of not counting ten million rows.
    """

    exact_limit = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        exact = queryset.order_by()[: self.exact_limit + 1].count()
        # Not a fast path with an ORM twin (inventory/fast_paths.py): the estimate is a different answer, which only
        # PostgreSQL's planner statistics can give; elsewhere the exact count is the answer.
        if exact <= self.exact_limit or connection.vendor != "postgresql":
            return exact if exact <= self.exact_limit else queryset.count()
        return max(exact, self._estimate(queryset))

    @staticmethod
    def _estimate(queryset: QuerySet) -> int:
        if not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
                )
                row = cursor.fetchone()
            return int(row[0]) if row and row[0] and row[0] > 0 else 0
        try:
            plan = queryset.order_by().explain(format="json")
        except Exception:  # noqa: BLE001 - an estimate is best effort; the exact floor is still shown
            return 0
        parsed = json.loads(plan) if isinstance(plan, str) else plan
        return int(parsed[0]["Plan"].get("Plan Rows", 0))


class ProbedDatesQuerySet(QuerySet):
    """`datetimes()` for the admin's date hierarchy without SELECT DISTINCT over the whole table: it reads the first
    and last dates (index), then asks EXISTS for each year, month or day between them (an index probe each)."""

    max_probes = 400

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        tz = tzinfo or timezone.get_current_timezone()
        starts = []
        start = _truncate(timezone.localtime(bounds["first"], tz), kind)
        while start <= bounds["last"]:
            starts.append(start)
            if len(starts) > self.max_probes:
                return super().datetimes(field_name, kind, order, tzinfo)
            start = _next_period(start, kind)
        found = [
            start
            for start in starts
            if self.filter(**{f"{field_name}__gte": start, f"{field_name}__lt": _next_period(start, kind)}).exists()
        ]
        return found[::-1] if order == "DESC" else found


def _truncate(moment: datetime, kind: str) -> datetime:
    day = moment.date()
    if kind == "year":
        day = day.replace(month=1, day=1)
    elif kind == "month":
        day = day.replace(day=1)
    return datetime.combine(day, time(0), tzinfo=moment.tzinfo)


def _next_period(start: datetime, kind: str) -> datetime:
    day = start.date()
    if kind == "year":
        day = day.replace(year=day.year + 1)
    elif kind == "month":
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    else:
        day = day + timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=start.tzinfo)


def _search_terms(search_term: str) -> list[str]:
    terms = []
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit.strip():
            terms.append(bit.strip())
    return terms


def _product_ids(term: str) -> list[int]:
    """Products whose SKU (any case) or barcode is exactly `term`."""
    return list(Product.objects.filter(Q(sku__iexact=term) | Q(barcode=term)).values_list("pk", flat=True)[:100])


def _store_ids(term: str) -> list[int]:
    return list(Store.objects.filter(code__iexact=term).values_list("pk", flat=True)[:100])


def format_vnd(amount: int | None) -> str:
    """199000 -> '199,000 ₫' in English, '199.000 ₫' in Vietnamese: grouped the way the active language writes
    numbers (o2o.templatetags.money, which the templates' |vnd filter uses too)."""
    return money.format_vnd(amount)


class StoreCityFilter(admin.SimpleListFilter):
    """City of the store, with the choices read from the store table (not from the millions of stock rows)."""

    title = _("city")
    parameter_name = "city"

    def lookups(self, request, model_admin):
        cities = scoped_stores(request).exclude(city="").order_by("city").values_list("city", flat=True).distinct()
        return [(city, city) for city in cities]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(store__in=Store.objects.filter(city=self.value()).values("pk"))
        return queryset


class LowStockFilter(admin.SimpleListFilter):
    """Rows below the store's target: on hand, or sellable online (on hand less reserved, safety and unavailable; none
    while a shortfall waits for a count), under Stock.target. Computed in SQL on the stock row, so holds that expired
    but were not yet released still count as reserved: the list errs toward showing a row, never hides one that is
    low."""

    title = _("against target")
    parameter_name = "low"

    def lookups(self, request, model_admin):
        return [("online", _("Below target (online ATP or on hand)")), ("on_hand", _("On hand below target"))]

    def queryset(self, request, queryset):
        on_hand_low = Q(on_hand__lt=F("target"))
        if self.value() == "on_hand":
            return queryset.filter(on_hand_low, target__gt=0)
        if self.value() == "online":
            atp = F("on_hand") - F("reserved") - F("safety") - F("unavailable")
            return queryset.alias(atp=atp).filter(
                on_hand_low | Q(atp__lt=F("target")) | Q(shortfall__gt=0), target__gt=0
            )
        return queryset


class StoreFilter(admin.SimpleListFilter):
    """One store. With a thousand stores the list only appears once a city is chosen (or for a small chain);
    the search box also takes a store code."""

    title = _("store")
    parameter_name = "store"
    small_chain = 30

    def lookups(self, request, model_admin):
        stores = scoped_stores(request).order_by("code")
        city = request.GET.get(StoreCityFilter.parameter_name)
        if city:
            stores = stores.filter(city=city)
        elif stores.count() > self.small_chain:
            selected = self.value()
            stores = stores.filter(pk=selected) if selected and selected.isdigit() else stores.none()
        return [(str(pk), f"{code} {name}") for pk, code, name in stores.values_list("pk", "code", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if value:
            if not value.isdigit():
                return queryset.none()
            return queryset.filter(store_id=int(value))
        return queryset


class StoreSkuColumns:
    """The store code and SKU columns of a row of one store and one product (list_select_related brings both)."""

    @admin.display(description=_("store"), ordering="store__code")
    def store_code(self, obj) -> str:
        return obj.store.code

    @admin.display(description=_("SKU"), ordering="product__sku")
    def sku(self, obj) -> str:
        return obj.product.sku


class BigTableAdmin(admin.ModelAdmin):
    """Read-only listing of a large table: no full counts, no facet counts, ids resolved before searching."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def search_q(self, term: str) -> Q:
        """The condition one search term adds (terms are ANDed, like Django's own search)."""
        return Q(product_id__in=_product_ids(term)) | Q(store_id__in=_store_ids(term))

    def get_search_results(self, request, queryset, search_term):
        for term in _search_terms(search_term):
            queryset = queryset.filter(self.search_q(term))
        return queryset, False


# --- stores and products -------------------------------------------------------------------------------------------


class OpeningHoursInline(admin.TabularInline):
    model = OpeningHours
    extra = 0
    fields = ("weekday", "opens", "closes")


class StoreServiceFilter(admin.SimpleListFilter):
    title = _("service")
    parameter_name = "service"

    def lookups(self, request, model_admin):
        return [("delivery", _("Delivery")), ("pickup", _("Pickup")), ("returns", _("Returns"))]

    def queryset(self, request, queryset):
        if self.value() in selectors.SERVICES:
            return queryset.filter(**{f"offers_{self.value()}": True})
        return queryset


@admin.register(Store)
class StoreAdmin(StoreScopedAdmin, admin.ModelAdmin):
    store_scope_fields = ("pk",)

    list_display = (
        "code",
        "name",
        "city",
        "district",
        "services",
        "delivery_radius_km",
        "picking_capacity_per_hour",
        "is_active",
        "stock_link",
    )
    list_display_links = ("code", "name")
    list_filter = ("city", StoreServiceFilter, "is_active")
    search_fields = ("code", "name", "address")
    inlines = [OpeningHoursInline]
    readonly_fields = ("stock_link",)
    fieldsets = (
        (None, {"fields": ("code", "name", "is_active", "stock_link")}),
        (_("Location"), {"fields": ("address", "district", "city", "lat", "lon", "timezone")}),
        (
            _("Services"),
            {
                "fields": (
                    "offers_delivery",
                    "offers_pickup",
                    "offers_returns",
                    "delivery_radius_km",
                    "picking_capacity_per_hour",
                )
            },
        ),
    )

    @admin.display(description=_("services"))
    def services(self, obj: Store) -> str:
        return ", ".join(obj.services) or "-"

    @admin.display(description=_("stock"))
    def stock_link(self, obj: Store) -> str:
        if not obj.pk:
            return "-"
        url = reverse("admin:inventory_stock_changelist") + f"?{StoreFilter.parameter_name}={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Stock of %(store)s") % {"store": obj.code})


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "barcode", "price", "category", "is_active")
    list_display_links = ("sku", "name")
    list_filter = ("is_active", "category")
    search_fields = ("sku", "name", "barcode")

    @admin.display(description=_("price"), ordering="price_vnd")
    def price(self, obj: Product) -> str:
        return format_vnd(obj.price_vnd)


# --- stock ---------------------------------------------------------------------------------------------------------


class StockChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        _attach_online_atp(list(self.result_list))


def _attach_online_atp(rows: list[Stock]) -> None:
    """Set `online_atp` on each row (live holds only, as the API computes it) with one query for the page."""
    if not rows:
        return
    atp = selectors.sellable_online(
        store_ids=sorted({r.store_id for r in rows}), product_ids=sorted({r.product_id for r in rows})
    )
    for row in rows:
        row.online_atp = atp.get((row.store_id, row.product_id), row.available)


def describe_domain_error(exc: DomainError) -> str:
    message = exc.message
    would_be = exc.details.get("would_be") if isinstance(exc.details, dict) else None
    if would_be:
        message += " " + _("It would leave %(levels)s.") % {
            "levels": ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in would_be.items())
        }
    if isinstance(exc, StaleStockQuantity):
        message += " " + _(
            "On hand was %(expected)s when this page was opened and is now %(on_hand)s; check the count and submit "
            "again."
        ) % {"expected": exc.details.get("expected_on_hand"), "on_hand": exc.details.get("on_hand")}
    return message


class StockResource(resources.ModelResource):
    """CSV/XLSX export of the stock list as filtered (and scoped) on screen."""

    store = export_fields.Field(attribute="store__code", column_name="store")
    sku = export_fields.Field(attribute="product__sku", column_name="sku")

    class Meta:
        model = Stock
        fields = ("store", "sku", "on_hand", "reserved", "safety", "unavailable", "shortfall", "target", "needs_count",
                  "updated_at")
        export_order = fields


class StockMovementResource(resources.ModelResource):
    store = export_fields.Field(attribute="store__code", column_name="store")
    sku = export_fields.Field(attribute="product__sku", column_name="sku")

    class Meta:
        model = StockMovement
        fields = ("created_at", "store", "sku", "reason", "delta_on_hand", "delta_reserved", "delta_safety",
                  "delta_unavailable", "delta_shortfall", "reference", "actor")
        export_order = fields


@admin.register(Stock)
class StockAdmin(StoreSkuColumns, StoreScopedAdmin, ExportMixin, BigTableAdmin):
    resource_classes = [StockResource]
    import_export_change_list_template = "admin/inventory/stock/change_list.html"  # adds the import buttons
    list_display = (
        "store_code",
        "sku",
        "product_name",
        "on_hand",
        "reserved",
        "safety",
        "unavailable",
        "shortfall",
        "available_online",
        "target",
        "needs_count",
        "updated_at",
    )
    list_display_links = ("store_code", "sku")
    list_select_related = ("store", "product")
    list_filter = (LowStockFilter, StoreCityFilter, StoreFilter, "needs_count")
    search_fields = ("product__sku", "product__barcode", "store__code")
    search_help_text = _(
        "Exact SKU, barcode or store code; several terms narrow the list (e.g. a store code and a SKU)."
    )
    fields = (
        "store",
        "product",
        "on_hand",
        "reserved",
        "safety",
        "unavailable",
        "shortfall",
        "available_online",
        "target",
        "needs_count",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description=_("product"))
    def product_name(self, obj: Stock) -> str:
        return obj.product.name

    @admin.display(description=_("available (online)"))
    def available_online(self, obj: Stock) -> int:
        if not hasattr(obj, "online_atp"):
            _attach_online_atp([obj])  # the change page: one row
        return obj.online_atp

    @admin.display(description="")
    def adjust_link(self, obj: Stock) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:inventory_stock_adjust", args=[obj.pk]), _("Adjust"))

    def get_changelist(self, request, **kwargs):
        return StockChangeList

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        if has_import_permission(request):
            extra_context["import_links"] = [
                (reverse("admin:inventory_stockimport_upload", args=[kind]), label)
                for kind, label in ((StockImport.Kind.GOODS_RECEIPTS, _("Import goods receipts")),
                                    (StockImport.Kind.COUNTS, _("Import counts")))
            ]
        if request.user.has_perm("inventory.view_stockimport"):
            extra_context["import_history_url"] = reverse("admin:inventory_stockimport_changelist")
        return super().changelist_view(request, extra_context)

    def get_list_display(self, request):
        if self.has_adjust_permission(request):
            return (*self.list_display, "adjust_link")
        return self.list_display

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_urls(self):
        adjust = path(
            "<path:object_id>/adjust/", self.admin_site.admin_view(self.adjust_view), name="inventory_stock_adjust"
        )
        return [adjust, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        if self.has_adjust_permission(request):
            extra_context["adjust_url"] = reverse("admin:inventory_stock_adjust", args=[object_id])
        return super().change_view(request, object_id, form_url, extra_context)

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Record a manual adjustment of one stock row through inventory.services."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        stock = self.get_object(request, unquote(object_id))
        if stock is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method == "POST":
            form = StockAdjustmentForm(request.POST, stock=stock)
            if form.is_valid():
                try:
                    movement = form.apply(actor=request.user.get_username())
                except DomainError as exc:
                    stock = self.get_object(request, unquote(object_id))
                    data = request.POST.copy()
                    if isinstance(exc, StaleStockQuantity):
                        data["expected_on_hand"] = str(stock.on_hand)  # resubmitting now means "I checked"
                    form = StockAdjustmentForm(data, stock=stock)
                    form.is_valid()
                    form.add_error(None, describe_domain_error(exc))
                else:
                    if movement is None:
                        summary = _("Nothing in the ledger changed (only the target, if anything).")
                    else:
                        summary = _(
                            "Recorded movement #%(pk)s (%(reason)s): on hand %(on_hand)+d, unavailable "
                            "%(unavailable)+d, safety %(safety)+d."
                        ) % {
                            "pk": movement.pk,
                            "reason": movement.get_reason_display(),
                            "on_hand": movement.delta_on_hand,
                            "unavailable": movement.delta_unavailable,
                            "safety": movement.delta_safety,
                        }
                    self.log_change(request, stock, f"Adjusted stock. {summary}")
                    self.message_user(request, f"{stock}: {summary}", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:inventory_stock_change", args=[stock.pk]))
        else:
            form = StockAdjustmentForm(stock=stock)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Adjust stock: %(stock)s") % {"stock": stock},
            "subtitle": None,
            "original": stock,
            "available_online": self.available_online(stock),
            "form": form,
            "delta_fields": [form[name] for name in ("delta_on_hand", "delta_unavailable")],
            "level_fields": [form[name] for name in ("counted_on_hand", "new_safety", "new_target")],
            "why_fields": [form[name] for name in ("reason", "reference", "note")],
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/inventory/stock/adjust.html", context)


# --- ledger and reservations ---------------------------------------------------------------------------------------


@admin.register(StockMovement)
class StockMovementAdmin(StoreSkuColumns, StoreScopedAdmin, ExportMixin, BigTableAdmin):
    resource_classes = [StockMovementResource]
    list_display = (
        "created_at",
        "store_code",
        "sku",
        "reason",
        "delta_on_hand",
        "delta_reserved",
        "delta_safety",
        "delta_unavailable",
        "delta_shortfall",
        "reference",
        "actor",
    )
    list_select_related = ("store", "product")
    list_filter = ("reason", StoreCityFilter, StoreFilter)
    date_hierarchy = "created_at"
    search_fields = ("product__sku", "reference", "idempotency_key", "store__code")
    search_help_text = _("Exact SKU, barcode, store code, reference or idempotency key.")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return ProbedDatesQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def search_q(self, term: str) -> Q:
        return super().search_q(term) | Q(reference=term) | Q(idempotency_key=term)


class ReservationStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", _("Live")), ("expired", _("Expired (not yet released)")), ("order", _("Order (no expiry)"))]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "order":
            return queryset.filter(expires_at__isnull=True)
        return queryset


@admin.register(Reservation)
class ReservationAdmin(StoreSkuColumns, StoreScopedAdmin, BigTableAdmin):
    list_display = ("reference", "store_code", "sku", "quantity", "expires_at", "live", "created_at")
    list_select_related = ("store", "product")
    list_filter = (ReservationStateFilter, StoreCityFilter, StoreFilter)
    search_fields = ("reference", "product__sku", "store__code")
    search_help_text = _("Exact reference, SKU, barcode or store code.")
    actions = ["release"]

    @admin.display(description=_("live"), boolean=True)
    def live(self, obj: Reservation) -> bool:
        return obj.is_live()

    def search_q(self, term: str) -> Q:
        return super().search_q(term) | Q(reference=term)

    def has_release_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description=_("Release the selected references (every line held under them)"), permissions=["release"])
    def release(self, request: HttpRequest, queryset: QuerySet) -> None:
        references = sorted(set(queryset.values_list("reference", flat=True)))
        actor = request.user.get_username()
        released = 0
        for reference in references:
            try:
                released += services.release_reservations(reference=reference, actor=actor, note="released in admin")
            except DomainError as exc:
                self.message_user(request, f"{reference}: {describe_domain_error(exc)}", messages.ERROR)
        self.message_user(
            request,
            _("Released %(units)d unit(s) under %(references)d reference(s).")
            % {"units": released, "references": len(references)},
            messages.SUCCESS,
        )


class TakenPendingFilter(admin.SimpleListFilter):
    title = _("reconciled")
    parameter_name = "pending"

    def lookups(self, request, model_admin):
        return [("yes", _("pending: holder not yet told or re-routed")), ("no", _("reconciled"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(reconciled_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(reconciled_at__isnull=False)
        return queryset


@admin.register(TakenReservation)
class TakenReservationAdmin(StoreSkuColumns, StoreScopedAdmin, admin.ModelAdmin):
    """What till sales, counts, damaged goods and transfers took from online holds and orders, and how each holder
    was reconciled (re-routed, told, offered a change). Written by the events themselves: read-only here. A row
    pending for more than a minute or two means the periodic task could not settle it: its log says why."""

    list_display = ("created_at", "cause", "kind", "store_code", "sku", "units", "reference", "reconciled_at",
                    "outcome")
    list_select_related = ("store", "product")
    list_filter = (TakenPendingFilter, "kind", StoreCityFilter, StoreFilter)
    search_fields = ("=cause", "=reference", "product__sku", "store__code")
    search_help_text = _("Exact event reference (e.g. pos:HCM-Q1-001:R-0042), reservation reference, SKU or store code.")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def has_import_permission(request: HttpRequest) -> bool:
    return request.user.has_perm("inventory.import_stock")
