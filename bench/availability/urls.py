"""The service's URLs plus /bench/floor/ (never routed in production: only bench/availability/settings.py uses it)."""

from django.urls import path

from bench.availability.floor import floor_availability, floor_availability_prepared
from o2o.urls import urlpatterns as service_urlpatterns

urlpatterns = [
    path("bench/floor/", floor_availability),
    path("bench/floor-prepared/", floor_availability_prepared),
    *service_urlpatterns,
]
