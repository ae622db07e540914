"""Mounted at /api/v1/: /returns/... for the website, /pos/returns/... for a store's tills."""

from django.urls import path

from orders.pos.api import urls as _registers_cid_converter  # noqa: F401  (the <cid:> converter)
from orders.returns.api import views

urlpatterns = [
    path("returns/", views.ReturnsView.as_view(), name="returns"),
    path("returns/<str:number>/", views.ReturnDetailView.as_view(), name="return-detail"),
    path("returns/<str:number>/cancel/", views.ReturnCancelView.as_view(), name="return-cancel"),
    # The selling till's refund of its own receipt (the POS contract's path; ids as the POS urls parse them).
    path("pos/sales/<cid:receipt_id>/refunds/", views.ReceiptRefundView.as_view(), name="pos-receipt-refund"),
    path("pos/returns/", views.PosReturnsView.as_view(), name="pos-returns"),
    path("pos/returns/<str:number>/", views.PosReturnDetailView.as_view(), name="pos-return-detail"),
    path("pos/returns/<str:number>/receive/", views.PosReturnReceiveView.as_view(), name="pos-return-receive"),
]
