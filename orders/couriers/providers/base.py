"""What every courier provider adapter offers: request a pickup, cancel it, parse its webhook payloads and map its
statuses to ours. Adapters hold no state and write nothing; orders.couriers.services does the writing."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

from orders.couriers.exceptions import InvalidCourierEvent

if TYPE_CHECKING:
    from orders.couriers.models import Delivery


@dataclass
class ProviderEvent:
    """One webhook event, in our terms. `status` is None when the provider status means nothing to us."""

    event_id: str
    external_id: str
    provider_status: str
    status: str | None
    occurred_at: datetime | None = None
    courier_name: str = ""
    courier_phone: str = ""
    vehicle_plate: str = ""
    proof_photo_url: str = ""
    recipient_name: str = ""
    failure_reason: str = ""
    tracking_url: str = ""
    #: the provider replaced its order by a new one (new id); later events carry the new id
    replaced_by: str = ""


@dataclass
class PickupResult:
    external_id: str
    tracking_url: str = ""
    fee_vnd: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class PickupRequest:
    """Everything a provider needs to carry a parcel from a store to a customer."""

    reference: str
    store_name: str
    store_address: str
    store_lat: float
    store_lon: float
    store_phone: str
    customer_name: str
    customer_phone: str
    address: str
    lat: float
    lon: float
    cod_vnd: int = 0
    note: str = ""

    @classmethod
    def for_delivery(cls, delivery: Delivery) -> PickupRequest:
        f = delivery.fulfillment
        order, store = f.order, f.store
        return cls(
            reference=delivery.reference,
            store_name=store.name,
            store_address=getattr(store, "address", "") or store.name,
            store_lat=store.lat,
            store_lon=store.lon,
            store_phone=getattr(store, "phone", "") or "",
            customer_name=order.customer_name,
            customer_phone=order.customer_phone,
            address=order.destination_address,
            lat=order.destination_lat,
            lon=order.destination_lon,
            cod_vnd=order.total_vnd if order.payment_state == "cod" else 0,
            note=f"{order.number} / fulfillment {f.pk}",
        )


class CourierProvider(ABC):
    name: str = ""
    #: provider status -> ours; statuses not listed map to None (recorded, never applied)
    STATUS_MAP: dict[str, str] = {}

    def map_status(self, provider_status: str) -> str | None:
        return self.STATUS_MAP.get((provider_status or "").strip().upper())

    @abstractmethod
    def parse_event(self, payload: dict[str, Any]) -> ProviderEvent:
        """Read one webhook payload (already verified and decoded). Raises InvalidCourierEvent."""

    @abstractmethod
    def request_pickup(self, delivery: Delivery) -> PickupResult:
        """Ask the provider for a courier. Called outside any database transaction."""

    @abstractmethod
    def cancel(self, delivery: Delivery, *, reason: str) -> None:
        """Withdraw the request (before pickup). Called outside any database transaction."""

    def secrets(self) -> list[str]:
        """Webhook signing secrets (O2O_COURIER_SECRETS), newest first; several while a secret is rotated."""
        value = getattr(settings, "O2O_COURIER_SECRETS", {}).get(self.name, [])
        return [value] if isinstance(value, str) else list(value)

    def config(self, key: str, default: Any = None) -> Any:
        return getattr(settings, "O2O_COURIER_CONFIG", {}).get(self.name, {}).get(key, default)


# --- parsing helpers --------------------------------------------------------------------------------------------------


def require(payload: dict, *path: str) -> Any:
    node: Any = payload
    for key in path:
        if not isinstance(node, dict) or node.get(key) in (None, ""):
            raise InvalidCourierEvent(details={"missing": ".".join(path)})
        node = node[key]
    return node


def text(value: Any, limit: int = 300) -> str:
    return "" if value is None else str(value)[:limit]


def parse_time(value: Any) -> datetime | None:
    """Unix seconds or milliseconds, or ISO 8601; None when absent, zero (providers' "not yet") or unreadable."""
    if value in (None, "", 0, "0"):
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
            seconds = float(value)
            if seconds > 1e11:  # milliseconds
                seconds /= 1000
            return datetime.fromtimestamp(seconds, tz=UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def digest_id(*parts: Any) -> str:
    """An event id for providers whose callbacks carry none: the same notification gives the same id."""
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]
