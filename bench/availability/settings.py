"""Settings for the availability benchmark: the service's own settings plus the framework-floor view's route."""

from o2o.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.availability.urls"
DEBUG = False
