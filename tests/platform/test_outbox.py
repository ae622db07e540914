from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from o2o import outbox, signing
from o2o.domain_errors import Conflict
from o2o.models import OutboxEvent, SalesChannel
from tests.platform.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def website(db):
    return SalesChannel.objects.create(code="web", name="Web", webhook_secret="s3cret")


def emit_many(channel, specs):
    for aggregate, topic in specs:
        outbox.emit(topic=topic, aggregate=aggregate, payload={"topic": topic}, channel=channel)


def test_events_are_delivered_signed_and_in_order_per_aggregate(website):
    with Receiver("s3cret") as site:
        website.webhook_url = site.url
        website.save(update_fields=["webhook_url"])
        emit_many(website, [("order:1", "order.placed"), ("order:2", "order.placed"), ("order:1", "order.routed"),
                            ("order:1", "order.cancelled")])
        result = outbox.deliver_due_events()
    assert result.delivered == 4 and site.bad_signatures == 0
    per_order = [e["topic"] for e in site.received if e["aggregate"] == "order:1"]
    assert per_order == ["order.placed", "order.routed", "order.cancelled"]
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_failing_head_holds_back_its_aggregate_only_then_backs_off(website, settings):
    settings.O2O_OUTBOX_BASE_DELAY_SECONDS = 5
    with Receiver("s3cret", fail_first=1) as site:
        website.webhook_url = site.url
        website.save(update_fields=["webhook_url"])
        emit_many(website, [("order:1", "order.placed"), ("order:1", "order.routed"), ("order:2", "order.placed")])
        first = outbox.deliver_due_events()
        assert (first.failed, first.delivered) == (1, 1)  # order:1's head failed; order:2 went out
        head = OutboxEvent.objects.get(aggregate="order:1", topic="order.placed")
        assert head.status == "pending" and head.attempts == 1 and head.next_attempt_at > timezone.now()
        assert outbox.deliver_due_events().delivered == 0  # not due yet, and order.routed waits behind it
        OutboxEvent.objects.filter(pk=head.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert outbox.deliver_due_events().delivered == 2
    assert [e["topic"] for e in site.received if e["aggregate"] == "order:1"] == ["order.placed", "order.routed"]


def test_dead_letter_after_max_attempts_then_replay(website, settings):
    settings.O2O_OUTBOX_MAX_ATTEMPTS = 2
    website.webhook_url = "http://127.0.0.1:9/nothing-listens-here"
    website.save(update_fields=["webhook_url"])
    emit_many(website, [("order:1", "order.placed")])
    event = OutboxEvent.objects.get()
    for _ in range(2):
        OutboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=None)
        outbox.deliver_due_events()
    event.refresh_from_db()
    assert event.status == "dead" and event.attempts == 2 and "ConnectionError" in event.last_error
    with Receiver("s3cret") as site:
        website.webhook_url = site.url
        website.save(update_fields=["webhook_url"])
        assert outbox.replay_dead_events(event_ids=[event.pk]) == 1
        assert outbox.deliver_due_events().delivered == 1
    assert len(site.received) == 1
    with pytest.raises(Conflict):
        outbox.replay_dead_events(event_ids=[event.pk])


def test_events_without_a_webhook_are_skipped(db):
    emit_many(None, [("order:9", "order.placed")])
    assert outbox.deliver_due_events().skipped == 1
    assert OutboxEvent.objects.get().status == "skipped"


def test_an_event_is_written_with_its_change_or_not_at_all(website):
    with pytest.raises(RuntimeError), transaction.atomic():
        emit_many(website, [("order:1", "order.placed")])
        raise RuntimeError("the business change failed")
    assert not OutboxEvent.objects.exists()


def test_signature_scheme():
    body = b'{"a":1}'
    header = signing.sign("k1", body, timestamp=1_700_000_000)
    assert signing.verify(header, body, ["k0", "k1"], now=1_700_000_100) == 1_700_000_000
    rotated = header + ",v1=" + signing.compute("k2", 1_700_000_000, body)
    assert signing.verify(rotated, body, ["k2"], now=1_700_000_000)
    for bad_header, now, reason in [
        (None, 1_700_000_000, "missing"),
        ("garbage", 1_700_000_000, "malformed"),
        (header, 1_700_000_301, "stale_timestamp"),
        (header.replace("v1=", "v1=0"), 1_700_000_000, "mismatch"),
    ]:
        with pytest.raises(signing.SignatureError) as refused:
            signing.verify(bad_header, body, ["k1"], now=now)
        assert refused.value.details["reason"] == reason
    with pytest.raises(signing.SignatureError):
        signing.verify(header, body + b" ", ["k1"], now=1_700_000_000)
