"""The website's lag-tolerant reads (stores near a point, cart availability, network ATP) go to the replica when one
is configured; promises, placement and holds, and any read inside a transaction on the primary, stay on the
primary; a replica that cannot be reached costs a warning, never the request.

The "replica" alias is added by a fixture as a second, real connection to the test database (what settings.py
builds from O2O_REPLICA_DATABASE_URL, with TEST MIRROR default). It is a separate session, so these tests commit
(transaction=True): inside a TestCase transaction the replica's session would not see the primary's uncommitted
rows, exactly as a real replica would not.
"""

import logging

import pytest
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from inventory import selectors
from inventory.models import Stock
from o2o import replicas
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

# The alias is declared to pytest-django (Django refuses connections to aliases a test does not declare), so it must
# exist before the test case is set up: a module-scoped fixture adds it, before any function-scoped one runs.
pytestmark = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, replicas.REPLICA_ALIAS])

BEN_THANH = {"lat": 10.7725, "lon": 106.6980}
CART = {**BEN_THANH, "lines": [{"sku": "AO-THUN-M", "qty": 2}]}
CUSTOMER = {"name": "Nguyễn Văn A", "phone": "0901 234 567"}
INVENTORY_TABLES = ("inventory_store", "inventory_stock", "inventory_product", "inventory_reservation")


def _drop_connection() -> None:
    if replicas.REPLICA_ALIAS in connections.settings:
        connections[replicas.REPLICA_ALIAS].close()
        del connections[replicas.REPLICA_ALIAS]  # the next use builds it again from connections.settings


@pytest.fixture(scope="module", autouse=True)
def _replica_alias(django_db_setup):
    """"replica": the test database again (what TEST MIRROR makes of it), reached through a session of its own."""
    configured = connections.settings.get(replicas.REPLICA_ALIAS)  # O2O_REPLICA_DATABASE_URL set for the run
    _drop_connection()
    primary = connections[DEFAULT_DB_ALIAS].settings_dict  # after django_db_setup: the test database
    connections.settings[replicas.REPLICA_ALIAS] = {**primary, "TEST": {**primary["TEST"], "MIRROR": DEFAULT_DB_ALIAS}}
    yield
    _drop_connection()
    del connections.settings[replicas.REPLICA_ALIAS]
    if configured is not None:
        connections.settings[replicas.REPLICA_ALIAS] = configured


@pytest.fixture(autouse=True)
def _replica_not_backed_off(monkeypatch):
    """Each test starts with the replica in use: an earlier test's failure or lag does not carry over."""
    monkeypatch.setattr(replicas, "_down_until", 0.0)
    monkeypatch.setattr(replicas, "_lag_checked_at", float("-inf"))
    monkeypatch.setattr(replicas, "_lagging", False)


@pytest.fixture
def replica():
    yield connections[replicas.REPLICA_ALIAS]
    _drop_connection()


@pytest.fixture
def dead_replica():
    """The replica's address changed to one nobody listens on: connections to it are refused at once."""
    config = connections.settings[replicas.REPLICA_ALIAS]
    saved = config["HOST"], config["PORT"]
    config["HOST"], config["PORT"] = "127.0.0.1", "1"
    _drop_connection()
    yield connections[replicas.REPLICA_ALIAS]
    _drop_connection()
    config["HOST"], config["PORT"] = saved


@pytest.fixture
def shop(transactional_db):
    store = StoreFactory(code="HCM-Q1-001", lat=10.7743, lon=106.7038)  # ~0.7 km from Bến Thành
    shirt = ProductFactory(sku="AO-THUN-M", price_vnd=199_000)
    put_stock(store, shirt, 5)
    return {"store": store, "shirt": shirt}


def _inventory_reads(queries) -> list[str]:
    return [q["sql"] for q in queries if any(table in q["sql"] for table in INVENTORY_TABLES)]


def _backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_without_a_replica_everything_reads_the_primary(shop, monkeypatch):
    monkeypatch.delitem(connections.settings, replicas.REPLICA_ALIAS)
    assert not replicas.configured()
    assert replicas.read_alias() == DEFAULT_DB_ALIAS
    assert replicas.read(lambda using: using) == DEFAULT_DB_ALIAS


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda api: api.post("/api/v1/availability/", CART, format="json"), id="cart-availability"),
        pytest.param(lambda api: api.get("/api/v1/availability/network/", {"sku": "AO-THUN-M"}), id="network-atp"),
        pytest.param(lambda api: api.get("/api/v1/stores/", BEN_THANH), id="stores-near"),
    ],
)
def test_the_websites_lag_tolerant_reads_go_to_the_replica(api, shop, replica, call):
    assert _backend_pid(replica) != _backend_pid(connections[DEFAULT_DB_ALIAS])  # a session of its own
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary, CaptureQueriesContext(replica) as secondary:
        response = call(api)
    assert response.status_code == 200, response.content
    assert _inventory_reads(secondary.captured_queries)
    assert _inventory_reads(primary.captured_queries) == []  # only the API key look-up, if anything
    assert "HCM-Q1-001" in response.content.decode() or response.json() == [{"sku": "AO-THUN-M", "atp": 5, "stores": 1}]


def test_availability_from_the_replica_is_the_primarys_answer(api, shop, replica):
    from_replica = api.post("/api/v1/availability/", CART, format="json").json()
    (store,) = from_replica["stores"]
    assert store["store"]["code"] == "HCM-Q1-001" and store["available"] == {"AO-THUN-M": 5}
    assert store["serves_whole_cart"] is True


def test_promises_placement_and_holds_go_to_the_primary(api, shop, replica):
    with CaptureQueriesContext(replica) as secondary:
        quote = api.post("/api/v1/promises/", {"lines": CART["lines"], "destination": BEN_THANH}, format="json")
        assert quote.status_code == 201, quote.content
        option = quote.json()["options"][0]
        placed = api.post(
            "/api/v1/orders/",
            {
                "lines": CART["lines"], "customer": CUSTOMER, "method": "delivery",
                "promise": quote.json()["id"], "option": option["id"], "payment_state": "paid",
            },
            format="json",
            HTTP_IDEMPOTENCY_KEY="k-1",
        )
        assert placed.status_code == 201, placed.content
        hold = api.post(
            "/api/v1/holds/", {"store": "HCM-Q1-001", "lines": [{"sku": "AO-THUN-M", "qty": 1}]}, format="json",
            HTTP_IDEMPOTENCY_KEY="h-1",
        )
        assert hold.status_code == 201, hold.content
    assert secondary.captured_queries == []
    # And the availability read afterwards (on the replica) sees what they reserved.
    assert api.post("/api/v1/availability/", CART, format="json").json()["stores"][0]["available"] == {"AO-THUN-M": 2}


def test_inside_a_transaction_on_the_primary_reads_stay_on_the_primary(shop, replica):
    assert replicas.read_alias() == replicas.REPLICA_ALIAS
    with CaptureQueriesContext(replica) as secondary, transaction.atomic():
        assert replicas.read_alias() == DEFAULT_DB_ALIAS
        # A write not committed yet: only the primary's session can see it, and the read must.
        Stock.objects.filter(store=shop["store"], product=shop["shirt"]).update(on_hand=F("on_hand") + 3)
        stores = replicas.read(
            lambda using: selectors.cart_availability(
                lat=BEN_THANH["lat"], lon=BEN_THANH["lon"], lines={"AO-THUN-M": 2}, radius_km=10, using=using
            )
        )
        assert [s.available for s in stores] == [{"AO-THUN-M": 8}]
        transaction.set_rollback(True)
    assert secondary.captured_queries == []


def test_an_unreachable_replica_falls_back_to_the_primary(api, shop, dead_replica, caplog):
    with caplog.at_level(logging.WARNING, logger="o2o.replicas"), CaptureQueriesContext(
        connections[DEFAULT_DB_ALIAS]
    ) as primary:
        response = api.post("/api/v1/availability/", CART, format="json")
        network = api.get("/api/v1/availability/network/", {"sku": "AO-THUN-M"})
    assert response.status_code == 200, response.content
    assert response.json()["stores"][0]["available"] == {"AO-THUN-M": 5}
    assert network.status_code == 200 and network.json() == [{"sku": "AO-THUN-M", "atp": 5, "stores": 1}]
    assert _inventory_reads(primary.captured_queries)
    assert any("replica unavailable" in r.getMessage() for r in caplog.records)


def test_after_a_failure_the_replica_is_left_alone_for_a_while(api, shop, dead_replica, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(replicas.time, "monotonic", lambda: clock[0])
    tries = []
    connect = type(dead_replica).ensure_connection
    monkeypatch.setattr(type(dead_replica), "ensure_connection",
                        lambda self: (tries.append(self.alias), connect(self))[1])
    assert api.post("/api/v1/availability/", CART, format="json").status_code == 200
    assert tries.count(replicas.REPLICA_ALIAS) == 1
    clock[0] += replicas.RETRY_AFTER_SECONDS - 1
    assert api.post("/api/v1/availability/", CART, format="json").status_code == 200
    assert replicas.read_alias() == DEFAULT_DB_ALIAS and tries.count(replicas.REPLICA_ALIAS) == 1  # not tried again
    clock[0] += 2
    assert replicas.read_alias() == replicas.REPLICA_ALIAS
    assert api.post("/api/v1/availability/", CART, format="json").status_code == 200
    assert tries.count(replicas.REPLICA_ALIAS) == 2  # tried again, failed again, the primary answered


def test_a_replica_connection_lost_since_the_last_request_does_not_fail_the_next_one(api, shop, replica):
    assert api.post("/api/v1/availability/", CART, format="json").status_code == 200  # the replica's session is open
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [_backend_pid(replica)])
    response = api.post("/api/v1/availability/", CART, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["stores"][0]["available"] == {"AO-THUN-M": 5}


def test_the_lag_query_runs_on_the_replica_and_a_server_not_in_recovery_has_none(shop, replica):
    with CaptureQueriesContext(replica) as on_replica:
        assert replicas.replica_lag_seconds() == 0.0  # the test "replica" is the primary's database: not replaying
    assert [q["sql"] for q in on_replica.captured_queries] == [replicas.LAG_SQL]


def test_a_replica_too_far_behind_is_left_alone_until_it_catches_up(api, shop, replica, monkeypatch, settings, caplog):
    settings.O2O_REPLICA_MAX_LAG_SECONDS = 5
    clock, lag, asked = [1000.0], [30.0], []
    monkeypatch.setattr(replicas.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(replicas, "replica_lag_seconds", lambda alias=replicas.REPLICA_ALIAS: asked.append(1) or lag[0])

    def reads():
        with CaptureQueriesContext(replica) as secondary, CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary:
            assert api.post("/api/v1/availability/", CART, format="json").json()["stores"][0]["available"] == {"AO-THUN-M": 5}
        return bool(_inventory_reads(secondary.captured_queries)), bool(_inventory_reads(primary.captured_queries))

    with caplog.at_level(logging.WARNING, logger="o2o.replicas"):
        assert reads() == (False, True)  # 30 s behind: the primary answers
        lag[0] = 0.0
        clock[0] += replicas.LAG_CHECK_EVERY_SECONDS - 1
        assert reads() == (False, True) and len(asked) == 1  # not asked again yet
        clock[0] += 2
        assert reads() == (True, False) and len(asked) == 2  # caught up: the replica again
    messages = [r.getMessage() for r in caplog.records]
    assert any("30.0 s behind" in m for m in messages) and any("caught up" in m for m in messages)
    settings.O2O_REPLICA_MAX_LAG_SECONDS = 0  # not checked at all
    lag[0] = 999.0
    clock[0] += 60
    assert reads() == (True, False) and len(asked) == 2
