"""API-key authentication for server-to-server clients (`Authorization: Api-Key <key>`)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from o2o.models import SalesChannelKey

KEYWORD = "Api-Key"


def key_from_request(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme != KEYWORD or not key.strip():
        return None
    return key.strip()


class SalesChannelKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a sales channel. `request.auth` becomes the SalesChannelKey (its `.channel` is the caller)."""

    def authenticate(self, request: Request) -> tuple[Any, SalesChannelKey] | None:
        raw = key_from_request(request)
        if raw is None:
            return None
        try:
            key = SalesChannelKey.objects.get_from_key(raw)
        except SalesChannelKey.DoesNotExist:
            key = None
        if key is None or key.has_expired or not key.channel.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
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
