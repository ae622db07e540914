"""The Celery configuration the outbox and the sweeps rely on (o2o/celery.py says why)."""

import inspect

from django.conf import settings

from o2o.celery import app
from o2o.outbox import backoff

OURS = ("o2o.", "inventory.", "orders.", "loyalty.")


def our_tasks() -> dict:
    app.loader.import_default_modules()  # autodiscovery and CELERY_IMPORTS, as a worker does at start
    return {name: task for name, task in app.tasks.items() if name.startswith(OURS)}


def test_messages_are_acknowledged_late_and_requeued_when_the_worker_is_lost():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    tasks = our_tasks()
    assert "o2o.tasks.deliver_outbox" in tasks and "orders.couriers.tasks.sla_watch" in tasks
    for name, task in tasks.items():
        assert task.acks_late is True, name
        assert task.reject_on_worker_lost is True, name


def test_the_visibility_timeout_outlasts_every_wait():
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > backoff(10_000).total_seconds()  # the outbox's longest back-off
    assert visibility > settings.O2O_OUTBOX_TIMEOUT_SECONDS
    # The beat sends each sweep when it is due (no message waits in Redis); none is scheduled with a countdown.
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        countdown = entry.get("options", {}).get("countdown", 0)
        assert "eta" not in entry.get("options", {}) and visibility > countdown, entry


def test_tasks_take_ids_or_nothing_and_every_scheduled_task_exists():
    tasks = our_tasks()
    for name, task in tasks.items():
        params = inspect.signature(task.run).parameters
        assert all(p.name.endswith("_id") or p.name.endswith("_ids") for p in params.values()), (name, list(params))
    for key, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in tasks, key
