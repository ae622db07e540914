from django.urls import path

from orders.api import views

urlpatterns = [
    path("promises/", views.PromisesView.as_view(), name="promise-create"),
    path("orders/", views.OrdersView.as_view(), name="orders"),
    path("orders/<str:number>/", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<str:number>/cancel/", views.OrderCancelView.as_view(), name="order-cancel"),
    path(
        "orders/<str:number>/change-offers/<int:offer>/accept/", views.ChangeOfferAcceptView.as_view(),
        name="order-change-offer-accept",
    ),
]
