"""Head office's pricing-policy API, under /api/v1/pricing/policy/ (Django users with model permissions; API keys
are refused): promotions, price lists and their rows, codes, the policy's version."""

from django.urls import path

from orders.pricing.api import policy_views as views

urlpatterns = [
    path("promotions/", views.PromotionsView.as_view(), name="pricing-policy-promotions"),
    path("promotions/<slug:code>/", views.PromotionView.as_view(), name="pricing-policy-promotion"),
    path("promotions/<slug:code>/codes/", views.PromotionCodesView.as_view(), name="pricing-policy-promotion-codes"),
    path("price-lists/", views.PriceListsView.as_view(), name="pricing-policy-price-lists"),
    path("price-lists/<slug:code>/", views.PriceListView.as_view(), name="pricing-policy-price-list"),
    path("price-lists/<slug:code>/rows/", views.PriceListRowsView.as_view(), name="pricing-policy-price-list-rows"),
    path("version/", views.PolicyVersionView.as_view(), name="pricing-policy-version"),
]
