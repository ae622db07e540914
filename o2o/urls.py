from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the admin's language selector posts here
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/", include("inventory.api.urls")),
    path("api/v1/", include("orders.api.urls")),
    path("api/v1/webhooks/couriers/", include("orders.couriers.api.urls")),
    path("api/v1/loyalty/", include("loyalty.api.urls")),
    path("api/v1/pricing/policy/", include("orders.pricing.api.policy_urls")),  # head office (users, not keys)
    path("api/v1/pricing/", include("orders.pricing.api.urls")),  # quotes and vouchers (website)
    path("api/v1/pos/", include("orders.pos.api.urls")),
    path("api/v1/", include("orders.returns.api.urls")),  # /returns/ (website) and /pos/returns/ (tills)
]

# Unknown URLs under /api/ answer in the API's JSON error format (o2o.api_errors).
handler404 = "o2o.api_errors.not_found"
handler500 = "o2o.api_errors.server_error"
