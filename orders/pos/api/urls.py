"""POS API v1, mounted at /api/v1/pos/."""

from django.urls import path, register_converter

from orders.pos.api import views


class ClientIdConverter:
    """Till ids: 1–64 letters, digits, '.', '_', ':' or '-'."""

    regex = r"[A-Za-z0-9._:\-]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ClientIdConverter, "cid")

urlpatterns = [
    path("sales/", views.SalesSyncView.as_view(), name="pos-sales"),
    path("sales/<cid:receipt_id>/", views.ReceiptDetailView.as_view(), name="pos-receipt"),
    path("sales/<cid:receipt_id>/void/", views.ReceiptVoidView.as_view(), name="pos-receipt-void"),
    # sales/<cid:receipt_id>/refunds/: the returns app serves it (orders/returns/api/urls.py), the one refund door.
    path("counts/", views.CountsView.as_view(), name="pos-counts"),
    path("counts/<cid:count_id>/", views.CountDetailView.as_view(), name="pos-count"),
    path("goods-receipts/", views.GoodsReceiptsView.as_view(), name="pos-goods-receipts"),
    path("goods-receipts/<cid:receipt_id>/", views.GoodsReceiptDetailView.as_view(), name="pos-goods-receipt"),
    path("damage/", views.DamageReportsView.as_view(), name="pos-damage"),
    path("transfers/", views.TransfersView.as_view(), name="pos-transfers"),
    path("transfers/<int:pk>/", views.TransferDetailView.as_view(), name="pos-transfer"),
    path("transfers/<int:pk>/receive/", views.TransferReceiveView.as_view(), name="pos-transfer-receive"),
    path("pickups/<cid:code>/", views.PickupView.as_view(), name="pos-pickup"),
    path("pickups/<cid:code>/handover/", views.PickupHandoverView.as_view(), name="pos-pickup-handover"),
    path("stock/<str:sku>/", views.StockView.as_view(), name="pos-stock"),
    path("members/<str:phone>/balance/", views.MemberBalanceView.as_view(), name="pos-member-balance"),
    path("prices/", views.PricesView.as_view(), name="pos-prices"),
    path("pricing/snapshot/", views.PricingSnapshotView.as_view(), name="pos-pricing-snapshot"),
]
