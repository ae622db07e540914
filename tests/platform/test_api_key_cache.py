"""Sales-channel keys verified by a process are remembered for a few seconds; revocation still takes effect."""

import pytest

from o2o import api_keys
from o2o.models import SalesChannelKey

pytestmark = pytest.mark.django_db

POINT = {"lat": 10.7725, "lon": 106.6980}


@pytest.fixture(autouse=True)
def _fresh_cache():
    api_keys.verified_keys.clear()
    yield
    api_keys.verified_keys.clear()


def test_a_verified_key_is_not_looked_up_again(api, django_assert_num_queries):
    assert api.get("/api/v1/stores/", POINT).status_code == 200
    with django_assert_num_queries(1):  # the store query only; no key or channel lookup
        assert api.get("/api/v1/stores/", POINT).status_code == 200


def test_revocation_through_the_model_is_effective_at_once(api, channel_key):
    assert api.get("/api/v1/stores/", POINT).status_code == 200
    key = SalesChannelKey.objects.get(prefix=channel_key.split(".")[0])
    key.revoked = True
    key.save()
    assert api.get("/api/v1/stores/", POINT).status_code == 401


def test_revocation_elsewhere_is_effective_after_the_cache_ttl(api, channel_key, monkeypatch):
    assert api.get("/api/v1/stores/", POINT).status_code == 200
    # Another process revokes it (no signal reaches this one): a bulk update.
    SalesChannelKey.objects.filter(prefix=channel_key.split(".")[0]).update(revoked=True)
    assert api.get("/api/v1/stores/", POINT).status_code == 200  # still remembered, by design
    now = api_keys.time.monotonic()
    monkeypatch.setattr(api_keys.time, "monotonic", lambda: now + api_keys.verified_keys.ttl() + 0.1)
    assert api.get("/api/v1/stores/", POINT).status_code == 401


def test_a_wrong_secret_with_a_valid_prefix_is_refused(api, anon_api, channel_key):
    assert api.get("/api/v1/stores/", POINT).status_code == 200
    prefix = channel_key.split(".")[0]
    anon_api.credentials(HTTP_AUTHORIZATION=f"Api-Key {prefix}.not-the-secret")
    assert anon_api.get("/api/v1/stores/", POINT).status_code == 401


def test_cache_off(api, settings, django_assert_num_queries):
    settings.O2O_API_KEY_CACHE_SECONDS = 0
    assert api.get("/api/v1/stores/", POINT).status_code == 200
    with django_assert_num_queries(2):  # the key (with its channel) and the store query
        assert api.get("/api/v1/stores/", POINT).status_code == 200
