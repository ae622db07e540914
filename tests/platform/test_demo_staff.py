"""The demo's staff logins: head office over every store, store staff over the demo store, each with its role."""

import pytest
from django.contrib.auth import authenticate

from inventory.staff.roles import HEAD_OFFICE, STORE_STAFF
from inventory.staff.scope import store_ids_for
from o2o.management.commands.demo import DEMO_STORE, Command
from tests.factories import StoreFactory

pytestmark = pytest.mark.django_db


def test_demo_staff_logins_have_their_role_and_scope():
    store = StoreFactory(code=DEMO_STORE)
    StoreFactory(code="HN-HK-001")  # a store outside the manager's scope
    saved: dict = {}
    command = Command()
    command._staff(saved, username="hq", role=HEAD_OFFICE, all_stores=True)
    command._staff(saved, username="manager.q1", role=STORE_STAFF, store_code=DEMO_STORE)
    hq = authenticate(username="hq", password=saved["hq_password"])
    manager = authenticate(username="manager.q1", password=saved["manager.q1_password"])
    assert hq.groups.get().name == HEAD_OFFICE and manager.groups.get().name == STORE_STAFF
    assert store_ids_for(manager) == {store.pk}
    assert store_ids_for(hq) is None  # every store, today's and tomorrow's
    # Run again (the demo restarted): the same logins and passwords.
    again = dict(saved)
    command._staff(again, username="manager.q1", role=STORE_STAFF, store_code=DEMO_STORE)
    assert again == saved and authenticate(username="manager.q1", password=saved["manager.q1_password"])
