"""Admin for store (POS) keys and the POS records. Keys are created here or with `manage.py create_store_key`; the
records are written by the POS services only, so staff can look but not edit."""

import tablib
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from import_export import fields as export_fields
from import_export import resources
from import_export.formats import base_formats
from import_export.forms import ImportForm
from rest_framework_api_key.admin import APIKeyModelAdmin

from inventory.admin import format_vnd, has_import_permission
from inventory.models import StockImport
from inventory.staff.scope import ALL, StoreScopedAdmin, store_ids_for
from orders.pos import imports
from orders.pos.models import (
    DamageReport,
    GoodsReceipt,
    StockCount,
    StockCountLine,
    StockTransfer,
    StockTransferLine,
    StoreApiKey,
    TillReceipt,
    TillReceiptLine,
    TillRefund,
)


@admin.register(StoreApiKey)
class StoreApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "store")
    list_filter = (*APIKeyModelAdmin.list_filter, "store__city")
    search_fields = (*APIKeyModelAdmin.search_fields, "store__code")
    autocomplete_fields = ("store",)
    list_select_related = ("store",)


class ReadOnly:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class TillReceiptLineInline(ReadOnly, admin.TabularInline):
    model = TillReceiptLine
    fields = ("product", "qty", "unit_price_vnd", "discount_vnd", "taken", "shortfall", "refunded_qty", "late_for_count")
    readonly_fields = fields
    extra = 0


class TillRefundInline(ReadOnly, admin.TabularInline):
    model = TillRefund
    fields = ("refund_id", "kind", "amount_vnd", "created_at")
    readonly_fields = fields
    extra = 0


@admin.register(TillReceipt)
class TillReceiptAdmin(ReadOnly, admin.ModelAdmin):
    """A till's receipt as synced, with what the till said about its prices (codes, promotions, a manager's
    override) beside what the policy would have charged; the price exceptions it queued are in the pricing queue."""

    list_display = ("receipt_id", "store", "status", "sold_at", "received_at", "total_vnd", "price_exceptions",
                    "member_phone", "till")
    list_filter = ("status", "store__city")
    search_fields = ("receipt_id", "store__code", "member_phone")
    date_hierarchy = "sold_at"
    list_select_related = ("store",)
    inlines = [TillReceiptLineInline, TillRefundInline]
    fieldsets = (
        (None, {"fields": ("store", "receipt_id", "status", "sold_at", "received_at", "till", "total_vnd", "money_vnd",
                           "points_redeemed", "member_phone", "tenders", "result")}),
        (_("Prices"), {"fields": ("policy_total", "price_exceptions", "codes_given", "promotions_applied",
                                  "price_override")}),
    )
    readonly_fields = (
        "store", "receipt_id", "status", "sold_at", "received_at", "till", "total_vnd", "money_vnd", "points_redeemed",
        "member_phone", "tenders", "result", "policy_total", "price_exceptions", "codes_given", "promotions_applied",
        "price_override",
    )

    @admin.display(description=_("policy total (VND)"))
    def policy_total(self, obj: TillReceipt):
        value = (obj.result or {}).get("policy_total_vnd")
        return "—" if value is None else format_vnd(value)

    @admin.display(description=_("price exceptions"))
    def price_exceptions(self, obj: TillReceipt):
        count = (obj.result or {}).get("price_exceptions")
        if count is None:
            return "—"  # synced before receipts were priced
        try:
            url = reverse("admin:pricing_priceexception_changelist")
        except NoReverseMatch:
            return count
        if not count:
            return count
        return format_html('<a href="{}?store__id__exact={}&amp;receipt_id={}">{}</a>', url, obj.store_id,
                           obj.receipt_id, count)

    @admin.display(description=_("codes given"))
    def codes_given(self, obj: TillReceipt) -> str:
        return ", ".join((obj.pricing or {}).get("codes") or []) or "—"

    @admin.display(description=_("promotions the till applied"))
    def promotions_applied(self, obj: TillReceipt):
        rows = (obj.pricing or {}).get("promotions") or []
        if not rows:
            return "—"
        return format_html_join(
            mark_safe("<br>"), "{} {}: {}",
            ((p.get("promotion", ""), f"({p['code']})" if p.get("code") else "", format_vnd(p.get("discount_vnd", 0)))
             for p in rows),
        )

    @admin.display(description=_("price override"))
    def price_override(self, obj: TillReceipt) -> str:
        override = (obj.pricing or {}).get("override")
        if not override:
            return "—"
        return _("%(reason)s (staff %(staff)s)") % {"reason": override.get("reason", ""),
                                                    "staff": override.get("staff_id", "")}


class StockCountLineInline(ReadOnly, admin.TabularInline):
    model = StockCountLine
    fields = ("product", "counted", "ledger_as_of", "adjustment")
    readonly_fields = fields
    extra = 0


@admin.register(StockCount)
class StockCountAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("count_id", "store", "counted_at", "received_at")
    search_fields = ("count_id", "store__code")
    list_select_related = ("store",)
    inlines = [StockCountLineInline]


@admin.register(DamageReport)
class DamageReportAdmin(ReadOnly, admin.ModelAdmin):
    """Goods a store found damaged on its shelf (POST /api/v1/pos/damage/): quarantined, taken from online holds and
    orders when the shelf had no other units (those are in the reservations-taken list, re-routed)."""

    list_display = ("report_id", "store", "reported_at", "note")
    search_fields = ("report_id", "store__code")
    list_select_related = ("store",)
    readonly_fields = ("store", "report_id", "reported_at", "note", "lines", "result")
    exclude = ("content_hash",)


@admin.register(GoodsReceipt)
class GoodsReceiptAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("receipt_id", "store", "source", "received_at")
    search_fields = ("receipt_id", "store__code", "source")
    list_select_related = ("store",)


class StockTransferLineInline(ReadOnly, admin.TabularInline):
    model = StockTransferLine
    fields = ("product", "shipped_qty", "received_qty")
    readonly_fields = fields
    extra = 0


@admin.register(StockTransfer)
class StockTransferAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("transfer_id", "from_store", "to_store", "status", "shipped_at", "received_at")
    list_filter = ("status",)
    search_fields = ("transfer_id", "from_store__code", "to_store__code")
    list_select_related = ("from_store", "to_store")
    inlines = [StockTransferLineInline]


# --- imports of goods receipts and counts ----------------------------------------------------------------------------


def _rows_resource(kind: str, label) -> type[resources.Resource]:
    """A django-import-export resource naming a kind's columns: it feeds ImportForm and the downloadable template.
    The rows themselves are checked, grouped and applied by orders.pos.imports, never saved as model instances."""
    attrs = {column: export_fields.Field(attribute=column, column_name=column) for column in imports.SPECS[kind].columns}
    attrs["get_display_name"] = classmethod(lambda cls: label)
    return type(f"{kind.title().replace('_', '')}RowsResource", (resources.Resource,), attrs)


IMPORT_RESOURCES = {
    StockImport.Kind.GOODS_RECEIPTS: _rows_resource(StockImport.Kind.GOODS_RECEIPTS, _("Goods receipts")),
    StockImport.Kind.COUNTS: _rows_resource(StockImport.Kind.COUNTS, _("Counts")),
}
IMPORT_FORMATS = [f for f in (base_formats.CSV, base_formats.TSV, base_formats.XLSX) if f.is_available()]


class StockImportAdmin(StoreScopedAdmin, admin.ModelAdmin):
    """The history of imports, each with its progress and per-group results, and the upload → preview → confirm
    views. Scope: staff with a store scope see an import only when every store it touches is one of theirs."""

    store_scope_fields = ("stores",)
    store_scope_multi = True
    list_display = ("id", "kind", "status", "file_name", "uploaded_by", "store_codes", "total_groups",
                    "done_groups", "failed_groups", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("file_name", "actor")
    fields = ("kind", "status", "file_name", "uploaded_by", "actor", "store_codes", "total_groups", "done_groups",
              "replayed_groups", "failed_groups", "error", "created_at", "started_at", "finished_at")
    readonly_fields = fields
    change_form_template = "admin/inventory/stockimport/change_form.html"

    def get_queryset(self, request):
        queryset = admin.ModelAdmin.get_queryset(self, request).select_related("uploaded_by").prefetch_related("stores")
        ids = store_ids_for(request.user)
        if ids is ALL:
            return queryset
        links = StockImport.stores.through.objects
        outside = links.exclude(store_id__in=ids).values("stockimport_id")
        inside = links.filter(store_id__in=ids).values("stockimport_id")
        return queryset.exclude(pk__in=outside).filter(Q(pk__in=inside) | Q(uploaded_by=request.user))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("stores"))
    def store_codes(self, obj: StockImport) -> str:
        return ", ".join(sorted(store.code for store in obj.stores.all())) or "-"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("upload/<str:kind>/", view(self.upload_view), name="inventory_stockimport_upload"),
            path("template/<str:kind>/", view(self.template_view), name="inventory_stockimport_template"),
            path("<path:object_id>/confirm/", view(self.confirm_view), name="inventory_stockimport_confirm"),
            path("<path:object_id>/progress/", view(self.progress_view), name="inventory_stockimport_progress"),
            *super().get_urls(),
        ]

    def _kind(self, kind: str) -> str:
        if kind not in imports.SPECS:
            raise Http404(_("No such import."))
        return kind

    def _context(self, request: HttpRequest, kind: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "kind": kind,
            "kind_label": StockImport.Kind(kind).label,
            "spec": imports.SPECS[kind],
            "template_url": reverse("admin:inventory_stockimport_template", args=[kind]),
            "template_xlsx_url": (
                reverse("admin:inventory_stockimport_template", args=[kind]) + "?format=xlsx"
                if base_formats.XLSX.is_available() else ""
            ),
            "stock_url": reverse("admin:inventory_stock_changelist"),
            "threshold": settings.O2O_IMPORT_ASYNC_GROUPS,
            **extra,
        }

    def upload_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        """Upload a file and preview it: nothing is written to the stock until the preview is confirmed."""
        kind = self._kind(kind)
        if not has_import_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        resource_classes = [IMPORT_RESOURCES[kind]]
        form = ImportForm(IMPORT_FORMATS, resource_classes, data=request.POST or None, files=request.FILES or None)
        title = _("Import %(kind)s") % {"kind": StockImport.Kind(kind).label.lower()}
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["import_file"]
            file_format = IMPORT_FORMATS[int(form.cleaned_data["format"])]()
            try:
                if upload.size > imports.MAX_FILE_BYTES:
                    raise imports.ImportFileInvalid(
                        _("The file is larger than %(mb)d MB.") % {"mb": imports.MAX_FILE_BYTES // (1024 * 1024)}
                    )
                rows = imports.read_table(kind=kind, content=upload.read(), file_format=file_format)
            except imports.ImportFileInvalid as exc:
                form.add_error("import_file", exc.message)
            else:
                preview, stock_import = imports.prepare_import(
                    kind=kind, rows=rows, file_name=upload.name, user=request.user,
                    store_ids=store_ids_for(request.user),
                )
                return self._render_preview(request, kind, preview, stock_import, upload.name)
        context = self._context(request, kind, title=title, form=form, media=self.media + form.media)
        return TemplateResponse(request, "admin/inventory/stockimport/upload.html", context)

    def _render_preview(self, request, kind, preview, stock_import, file_name) -> HttpResponse:
        shown = 300
        error_groups = [g for g in preview.groups if g.issues]
        valid_groups = [g for g in preview.groups if not g.issues]
        context = self._context(
            request, kind,
            title=_("Preview: %(file)s") % {"file": file_name},
            preview=preview,
            stock_import=stock_import,
            groups=error_groups + valid_groups[:shown],
            hidden_groups=max(0, len(valid_groups) - shown),
            confirm_url=reverse("admin:inventory_stockimport_confirm", args=[stock_import.pk]) if stock_import else "",
            upload_url=reverse("admin:inventory_stockimport_upload", args=[kind]),
            background=len(preview.groups) > settings.O2O_IMPORT_ASYNC_GROUPS,
        )
        return TemplateResponse(request, "admin/inventory/stockimport/preview.html", context)

    def confirm_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not has_import_permission(request):
            raise PermissionDenied
        stock_import = self.get_object(request, unquote(object_id))
        if stock_import.uploaded_by_id != request.user.pk:
            raise PermissionDenied  # the ledger will name the uploader: only they may confirm
        stock_import, preview = imports.confirm_import(
            stock_import_id=stock_import.pk, store_ids=store_ids_for(request.user)
        )
        if preview is not None:
            self.message_user(request, _("The file no longer checks out against the ledger: nothing was applied."),
                              messages.ERROR)
            request.current_app = self.admin_site.name
            return self._render_preview(request, stock_import.kind, preview, None, stock_import.file_name)
        summary = imports.progress(stock_import)
        if stock_import.status in (StockImport.Status.QUEUED, StockImport.Status.RUNNING):
            self.message_user(request, _("Importing %(total)d groups in the background.") % summary, messages.INFO)
        elif stock_import.status == StockImport.Status.PREVIEWED:
            self.message_user(request, stock_import.error, messages.ERROR)
        else:
            level = messages.SUCCESS if stock_import.status == StockImport.Status.DONE else messages.WARNING
            self.message_user(
                request,
                _("Imported %(total)d groups: %(applied)d applied, %(replayed)d already imported (nothing changed), "
                  "%(refused)d refused.") % {**summary, "applied": summary["done"] - summary["replayed"]
                                             - summary["refused"]},
                level,
            )
        self.log_change(request, stock_import, f"Confirmed import: {stock_import.get_status_display()}")
        return HttpResponseRedirect(reverse("admin:inventory_stockimport_change", args=[stock_import.pk]))

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(imports.progress(self.get_object(request, unquote(object_id))))

    def template_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        """A CSV (or with ?format=xlsx an Excel workbook) with the kind's columns and one example row."""
        kind = self._kind(kind)
        if request.GET.get("format") == "xlsx" and base_formats.XLSX.is_available():
            body = imports.workbook_bytes(kind=kind, rows=[imports.template_rows(kind=kind)[1]])
            response = HttpResponse(body, content_type=base_formats.XLSX.CONTENT_TYPE)
            response["Content-Disposition"] = f'attachment; filename="{kind}_template.xlsx"'
            return response
        headers = IMPORT_RESOURCES[kind]().get_export_headers()
        dataset = tablib.Dataset(imports.template_rows(kind=kind)[1], headers=headers)
        body = "\ufeff" + base_formats.CSV().export_data(dataset)  # the BOM makes spreadsheet programs read UTF-8
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{kind}_template.csv"'
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        can_confirm = (
            obj.status == StockImport.Status.PREVIEWED
            and obj.uploaded_by_id == request.user.pk
            and has_import_permission(request)
        )
        extra_context = {
            **(extra_context or {}),
            "progress": imports.progress(obj),
            "progress_url": reverse("admin:inventory_stockimport_progress", args=[object_id]),
            "confirm_url": reverse("admin:inventory_stockimport_confirm", args=[object_id]) if can_confirm else "",
            "results": obj.results,
        }
        return super().change_view(request, object_id, form_url, extra_context)


admin.site.register(StockImport, StockImportAdmin)
