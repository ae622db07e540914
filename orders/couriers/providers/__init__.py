"""Courier providers: one adapter per provider (status map, webhook parsing, outbound client), one registry."""

from django.conf import settings

from orders.couriers.exceptions import UnknownProvider
from orders.couriers.providers.base import CourierProvider, PickupResult, ProviderEvent

__all__ = ["CourierProvider", "PickupResult", "ProviderEvent", "get_provider", "provider_names"]


def _registry() -> dict[str, type[CourierProvider]]:
    from orders.couriers.providers.ahamove import Ahamove
    from orders.couriers.providers.lalamove import Lalamove
    from orders.couriers.providers.local import LocalCourier

    return {cls.name: cls for cls in (LocalCourier, Ahamove, Lalamove)}


def provider_names() -> list[str]:
    """Providers enabled in this deployment (settings.O2O_COURIER_PROVIDERS)."""
    known = _registry()
    return [name for name in getattr(settings, "O2O_COURIER_PROVIDERS", list(known)) if name in known]


def get_provider(name: str) -> CourierProvider:
    """The adapter for an enabled provider. Raises UnknownProvider (404) otherwise."""
    if name not in provider_names():
        raise UnknownProvider(details={"provider": name[:40]})
    return _registry()[name]()
