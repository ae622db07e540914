"""Store keys: created by a command (printed once, stored hashed), several per store."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from orders.pos.models import StoreApiKey
from tests.pos.conftest import receipt, sync

pytestmark = pytest.mark.django_db


def test_create_store_key_prints_a_working_key_once(shop):
    out = StringIO()
    call_command("create_store_key", "HCM-Q1-A", "--name", "till-2", stdout=out, stderr=StringIO())
    key = out.getvalue().strip()
    stored = StoreApiKey.objects.get(name="till-2")
    assert stored.store == shop["a"] and key not in stored.hashed_key and stored.prefix == key.split(".")[0]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert sync(client, [receipt([("AO-THUN-M", 1)])]).json()["results"][0]["status"] == "applied"
    assert StoreApiKey.objects.filter(store=shop["a"]).count() == 2  # the fixture's till-1 and this one


def test_create_store_key_for_an_unknown_store(db):
    with pytest.raises(CommandError):
        call_command("create_store_key", "NOPE", stdout=StringIO(), stderr=StringIO())
