"""Store (POS) API keys: `Authorization: Api-Key <key>`, the same header as sales-channel keys but a different key
table, so a sales-channel key does not work on POS endpoints and a store key does not work on the website's.
`request.auth` is the StoreApiKey; `request.auth.store` is the caller's store, and every POS query filters by it."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from o2o.api_keys import KEYWORD, key_from_request
from orders.pos.models import StoreApiKey


class StoreKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a store's till. Revoked, expired keys and keys of inactive stores are refused (401)."""

    def authenticate(self, request: Request) -> tuple[Any, StoreApiKey] | None:
        raw = key_from_request(request)
        if raw is None:
            return None
        try:
            key = StoreApiKey.objects.get_from_key(raw)
        except StoreApiKey.DoesNotExist:
            key = None
        if key is None or key.has_expired or not key.store.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked store API key.")
        return (None, key)

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class IsStoreTill(permissions.BasePermission):
    message = "A store (POS) API key is required."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, StoreApiKey)


class StoreKeyScheme(OpenApiAuthenticationExtension):
    """Documents the store key in the OpenAPI schema."""

    target_class = StoreKeyAuthentication
    name = "StoreKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` of one store's till (created with `manage.py create_store_key`).",
        }
