"""Admin for store (POS) keys and the POS records. Keys are created here or with `manage.py create_store_key`; the
records are written by the POS services only, so staff can look but not edit."""

from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from inventory.pos.models import (
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
    list_display = ("receipt_id", "store", "status", "sold_at", "received_at", "total_vnd", "member_phone", "till")
    list_filter = ("status", "store__city")
    search_fields = ("receipt_id", "store__code", "member_phone")
    date_hierarchy = "sold_at"
    list_select_related = ("store",)
    inlines = [TillReceiptLineInline, TillRefundInline]


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
