"""The service's URLs plus /bench/floor/ (never routed in production: only bench/availability/settings.py uses it).
With O2O_BENCH_PROPOSED=1 the proposed selectors patch (proposed.py) is installed first."""

import os

from django.urls import path

from bench.availability.floor import floor_availability
from o2o.urls import urlpatterns as service_urlpatterns

if os.environ.get("O2O_BENCH_PROPOSED") == "1":
    from bench.availability.proposed import install

    install()

urlpatterns = [path("bench/floor/", floor_availability), *service_urlpatterns]
