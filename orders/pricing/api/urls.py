"""The website's pricing endpoints, under /api/v1/pricing/ (sales channel key). The tills' price calls and policy
snapshots are POS endpoints (orders.pos.api)."""

from django.urls import path

from orders.pricing.api import views

urlpatterns = [
    path("quote/", views.QuoteView.as_view(), name="pricing-quote"),
    path("vouchers/", views.VouchersView.as_view(), name="pricing-vouchers"),
]
