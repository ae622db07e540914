from django.urls import path

from inventory.api import views

urlpatterns = [
    path("stores/", views.StoresNearView.as_view(), name="stores-near"),
    path("availability/", views.CartAvailabilityView.as_view(), name="cart-availability"),
    path("availability/network/", views.NetworkAtpView.as_view(), name="network-atp"),
    path("holds/", views.HoldsView.as_view(), name="holds"),
    path("holds/<str:reference>/", views.HoldDetailView.as_view(), name="hold-detail"),
]
