"""The outbox in the admin: dead letters filtered, coloured, and replayed through o2o.outbox.replay_dead_events."""

import pytest
from django.contrib.auth import get_user_model

from o2o import outbox
from o2o.models import OutboxEvent, SalesChannel
from tests.platform.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.vn", "pw"))
    return client


@pytest.fixture
def dead_and_delivered(settings):
    """One dead letter (the website was down for every attempt) and one delivered event."""
    settings.O2O_OUTBOX_MAX_ATTEMPTS = 1
    site = SalesChannel.objects.create(code="web", name="Web", webhook_secret="s3cret",
                                       webhook_url="http://127.0.0.1:9/nothing-listens-here")
    outbox.emit(topic="order.placed", aggregate="order:WEB-1", payload={"n": 1}, channel=site)
    outbox.deliver_due_events()
    dead = OutboxEvent.objects.get()
    assert dead.status == "dead"
    with Receiver("s3cret") as receiver:
        SalesChannel.objects.filter(pk=site.pk).update(webhook_url=receiver.url)
        outbox.emit(topic="order.placed", aggregate="order:WEB-2", payload={"n": 2}, channel=site)
        outbox.deliver_due_events()
    delivered = OutboxEvent.objects.get(status="delivered")
    return site, dead, delivered


def test_the_dead_letter_filter_lists_only_dead_events(staff_client, dead_and_delivered):
    _, dead, delivered = dead_and_delivered
    page = staff_client.get("/admin/o2o/outboxevent/?trouble=dead")
    assert page.status_code == 200
    shown = list(page.context["cl"].result_list)
    assert shown == [dead]
    html = page.content.decode()
    assert "Dead letter" in html and "ConnectionError" in html  # the status badge and the last error
    everything = staff_client.get("/admin/o2o/outboxevent/")
    assert set(everything.context["cl"].result_list) == {dead, delivered}


def test_the_replay_action_delivers_a_dead_letter_again(staff_client, dead_and_delivered, settings):
    site, dead, _ = dead_and_delivered
    settings.O2O_OUTBOX_KICK = False
    response = staff_client.post("/admin/o2o/outboxevent/?trouble=dead",
                                 {"action": "replay_dead", "_selected_action": [dead.pk]}, follow=True)
    assert "1 event(s) queued for delivery again." in response.content.decode()
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.next_attempt_at) == ("pending", 0, None)
    with Receiver("s3cret") as receiver:
        SalesChannel.objects.filter(pk=site.pk).update(webhook_url=receiver.url)
        assert outbox.deliver_due_events().delivered == 1
    assert [e["id"] for e in receiver.received] == [str(dead.event_id)]
    assert receiver.received[0]["sequence"] == dead.pk
    assert OutboxEvent.objects.get(pk=dead.pk).status == "delivered"


def test_replaying_anything_but_dead_letters_is_refused_and_changes_nothing(staff_client, dead_and_delivered):
    _, dead, delivered = dead_and_delivered
    response = staff_client.post("/admin/o2o/outboxevent/",
                                 {"action": "replay_dead", "_selected_action": [dead.pk, delivered.pk]}, follow=True)
    assert "Only dead-lettered events can be replayed." in response.content.decode()
    assert OutboxEvent.objects.get(pk=dead.pk).status == "dead"
    assert OutboxEvent.objects.get(pk=delivered.pk).status == "delivered"


def test_staff_without_the_change_permission_do_not_get_the_replay_action(client, dead_and_delivered):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("viewer", "v@example.vn", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
    client.force_login(user)
    page = client.get("/admin/o2o/outboxevent/")
    assert page.status_code == 200
    assert "replay_dead" not in page.content.decode()
    _, dead, _ = dead_and_delivered
    client.post("/admin/o2o/outboxevent/", {"action": "replay_dead", "_selected_action": [dead.pk]})
    assert OutboxEvent.objects.get(pk=dead.pk).status == "dead"
