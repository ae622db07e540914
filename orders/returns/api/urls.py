"""Mounted at /api/v1/: /returns/... for the website, /pos/returns/... for a store's tills."""

from django.urls import path

from orders.returns.api import views

urlpatterns = [
    path("returns/", views.ReturnsView.as_view(), name="returns"),
    path("returns/<str:number>/", views.ReturnDetailView.as_view(), name="return-detail"),
    path("returns/<str:number>/cancel/", views.ReturnCancelView.as_view(), name="return-cancel"),
    path("pos/returns/", views.PosReturnsView.as_view(), name="pos-returns"),
    path("pos/returns/<str:number>/", views.PosReturnDetailView.as_view(), name="pos-return-detail"),
    path("pos/returns/<str:number>/receive/", views.PosReturnReceiveView.as_view(), name="pos-return-receive"),
]
