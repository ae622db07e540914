"""API-key authentication for server-to-server clients (`Authorization: Api-Key <key>`)."""

import hashlib
import threading
import time
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from o2o.models import SalesChannel, SalesChannelKey

KEYWORD = "Api-Key"


def key_from_request(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme != KEYWORD or not key.strip():
        return None
    return key.strip()


class _VerifiedKeys:
    """Keys this process verified in the last few seconds (O2O_API_KEY_CACHE_SECONDS, default 5; 0 turns it off).

    Checking a key costs a query (key + channel) and a hash on every request, about 1.5 ms of a ~10 ms request on
    the benchmark machine. Server-to-server clients send the same key thousands of times a minute, so each worker
    remembers a key it verified for a few seconds. The price: revoking a key, deactivating a channel or a key's
    expiry takes effect up to that many seconds late in each worker (expiry is still checked on every request
    against the remembered expiry date). Only verified keys are remembered, under a SHA-256 digest of the full
    key (never the key itself), so a wrong key always goes to the database and a prefix alone never matches."""

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, SalesChannelKey]] = {}

    @staticmethod
    def ttl() -> float:
        return float(settings.O2O_API_KEY_CACHE_SECONDS)

    def get(self, raw: str) -> SalesChannelKey | None:
        ttl = self.ttl()
        if ttl <= 0:
            return None
        digest = hashlib.sha256(raw.encode()).hexdigest()
        entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry[0] > ttl:
            return None
        return entry[1]

    def put(self, raw: str, key: SalesChannelKey) -> None:
        if self.ttl() <= 0:
            return
        digest = hashlib.sha256(raw.encode()).hexdigest()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_keys = _VerifiedKeys()


def _forget_verified_keys(**_: Any) -> None:
    """A key or channel saved or deleted in this process (the admin, a rotation script) is re-checked at once here;
    other processes see it within the cache's few seconds."""
    verified_keys.clear()


for _model in (SalesChannelKey, SalesChannel):
    post_save.connect(_forget_verified_keys, sender=_model, dispatch_uid=f"o2o.api_keys.forget.{_model.__name__}")
    post_delete.connect(_forget_verified_keys, sender=_model, dispatch_uid=f"o2o.api_keys.forget.d.{_model.__name__}")


class SalesChannelKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a sales channel. `request.auth` becomes the SalesChannelKey (its `.channel` is the caller).
    A key verified by this process in the last few seconds is not looked up again (see _VerifiedKeys)."""

    def authenticate(self, request: Request) -> tuple[Any, SalesChannelKey] | None:
        raw = key_from_request(request)
        if raw is None:
            return None
        key = verified_keys.get(raw)
        if key is not None and not key.has_expired:
            return (None, key)
        try:
            key = SalesChannelKey.objects.get_from_key(raw)
        except SalesChannelKey.DoesNotExist:
            key = None
        if key is None or key.has_expired or not key.channel.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        verified_keys.put(raw, key)
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class IsSalesChannel(permissions.BasePermission):
    message = "A sales channel API key is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, SalesChannelKey)


class SalesChannelKeyScheme(OpenApiAuthenticationExtension):
    """Documents the sales-channel key in the OpenAPI schema."""

    target_class = SalesChannelKeyAuthentication
    name = "SalesChannelKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` of a sales channel (the website).",
        }
