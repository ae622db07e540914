"""Settings of the fault test's workers: the project's settings (Celery configuration included: acks_late,
reject_on_worker_lost, prefetch 1, the Redis visibility timeout) with only the apps the outbox needs.

Why: a worker with every app spends ~6 s of CPU starting (Django's setup imports orders, hence the router, OR-Tools
and pandas), which would make each of the 100 kill rounds cost that much; the delivery code the worker runs
(o2o.tasks.deliver_outbox → o2o.outbox) is the same either way. `--full-apps` runs the workers with o2o.settings.
"""

from o2o.settings import *  # noqa: F403

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework_api_key",
    "o2o",
]
CELERY_IMPORTS = ()
CELERY_BEAT_SCHEDULE = {}
# The worker runs Django's system checks at start, URL checks included: no admin here, so no URLs either.
ROOT_URLCONF = "bench.couriers.fault_settings"
urlpatterns: list = []
