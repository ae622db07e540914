"""The Celery application. Tasks live in each app's tasks.py and only call services.

Delivery guarantees (settings, `# --- Celery ---`; tests/platform/test_celery_config.py holds them):
- acks_late: a message is acknowledged when its task has finished, not when a worker takes it, so a worker that dies
  mid-task does not lose it;
- reject_on_worker_lost: when the pool process running a task is killed, the task goes back on the queue and runs
  again. Safe here because every task is idempotent: each is a sweep that takes no arguments or only ids, re-reads
  the state under locks and calls a service whose writes are conditional (the outbox claims rows FOR UPDATE SKIP
  LOCKED and marks them in the same transaction);
- prefetch 1, so a worker holds no more unacknowledged messages than it runs;
- the Redis visibility timeout (6 h) is longer than any countdown or eta (we use none; the outbox's back-off is a
  column, next_attempt_at, capped at 1 h), so Redis never hands a merely waiting message to a second worker. The
  messages of a worker killed outright come back after that timeout; nothing waits for them, as the beat queues
  every sweep again within seconds.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o.settings")

app = Celery("o2o")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
