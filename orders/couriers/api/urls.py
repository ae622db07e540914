from django.urls import path

from orders.couriers.api.views import CourierWebhookView

urlpatterns = [
    path("<str:provider>/", CourierWebhookView.as_view(), name="courier-webhook"),
]
