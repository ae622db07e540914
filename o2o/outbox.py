"""Write customer-visible events into the outbox, inside the caller's transaction."""

import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from o2o.models import OutboxEvent, SalesChannel


def emit(*, topic: str, aggregate: str, payload: dict[str, Any], channel: SalesChannel | None = None) -> OutboxEvent:
    """Record an event. Call it inside the transaction that makes the change, so both commit or neither does."""
    body = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    return OutboxEvent.objects.create(
        event_id=uuid.uuid4(), topic=topic, aggregate=aggregate[:120], channel=channel, payload=body
    )
