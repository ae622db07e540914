from django.urls import path

from loyalty.api import views

urlpatterns = [
    path("members/", views.MembersView.as_view(), name="loyalty-members"),
    path("members/<str:phone>/", views.MemberDetailView.as_view(), name="loyalty-member"),
    path("members/<str:phone>/balance/", views.MemberBalanceView.as_view(), name="loyalty-member-balance"),
    path("members/<str:phone>/history/", views.MemberHistoryView.as_view(), name="loyalty-member-history"),
    path("redemptions/", views.RedemptionsView.as_view(), name="loyalty-redemptions"),
    path("redemptions/<int:hold_id>/", views.RedemptionDetailView.as_view(), name="loyalty-redemption"),
    path("redemptions/<int:hold_id>/capture/", views.RedemptionCaptureView.as_view(), name="loyalty-redemption-capture"),
    path("redemptions/<int:hold_id>/void/", views.RedemptionVoidView.as_view(), name="loyalty-redemption-void"),
]
