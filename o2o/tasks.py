"""Platform tasks: outbox delivery. Thin: they call o2o.outbox."""

from celery import shared_task

from o2o import outbox


@shared_task(name="o2o.tasks.deliver_outbox", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_outbox() -> dict:
    # Idempotent by construction (rows are claimed under lock and marked in the same transaction), so a task
    # redelivered after a worker died only resends what was not acknowledged.
    round_ = outbox.deliver_due_events()
    return round_.__dict__
