"""The Celery application. Tasks live in each app's tasks.py and only call services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")

app = Celery("o2o")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
