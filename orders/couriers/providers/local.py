"""The built-in local courier, for the demo and the tests: no network. A request is accepted at once; then
orders.couriers.services.advance_local_deliveries moves each delivery along a clock by producing the very payloads
below and feeding them through the same path as a webhook (apply_courier_event).

Payload (also what a small in-house fleet app would POST, signed with the design-notes scheme):
    {"event_id": "LOC-42:picked_up", "order_id": "LOC-42", "status": "PICKED_UP", "occurred_at": "<ISO 8601>",
     "courier": {"name": ..., "phone": ..., "plate": ...}, "proof": {"photo_url": ..., "recipient_name": ...},
     "reason": "..."}
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

from orders.couriers.providers.base import CourierProvider, PickupResult, ProviderEvent, parse_time, require, text

if TYPE_CHECKING:
    from orders.couriers.models import Delivery

COURIERS = [
    ("Nguyễn Văn Bình", "+84901000101", "59-X1 234.56"),
    ("Trần Thị Hoa", "+84901000102", "59-F2 678.90"),
    ("Lê Minh Tuấn", "+84901000103", "51-G1 111.22"),
    ("Phạm Quốc Huy", "+84901000104", "29-B1 345.67"),
]


class LocalCourier(CourierProvider):
    name = "local"
    STATUS_MAP = {
        "REQUESTED": "requested",
        "ASSIGNED": "assigned",
        "PICKED_UP": "picked_up",
        "DELIVERED": "delivered",
        "FAILED": "failed",
        "RETURNED": "returned",
        "CANCELLED": "cancelled",
    }

    def parse_event(self, payload: dict[str, Any]) -> ProviderEvent:
        provider_status = text(require(payload, "status"), 40).upper()
        courier = payload.get("courier") if isinstance(payload.get("courier"), dict) else {}
        proof = payload.get("proof") if isinstance(payload.get("proof"), dict) else {}
        return ProviderEvent(
            event_id=text(require(payload, "event_id"), 200),
            external_id=text(require(payload, "order_id"), 100),
            provider_status=provider_status,
            status=self.map_status(provider_status),
            occurred_at=parse_time(payload.get("occurred_at")),
            courier_name=text(courier.get("name"), 120),
            courier_phone=text(courier.get("phone"), 32),
            vehicle_plate=text(courier.get("plate"), 32),
            proof_photo_url=text(proof.get("photo_url"), 500),
            recipient_name=text(proof.get("recipient_name"), 120),
            failure_reason=text(payload.get("reason"), 300),
        )

    def request_pickup(self, delivery: Delivery) -> PickupResult:
        return PickupResult(external_id=f"LOC-{delivery.pk}", tracking_url="")

    def cancel(self, delivery: Delivery, *, reason: str) -> None:
        return None  # nothing to tell: the local courier reads our database

    # --- the simulation -----------------------------------------------------------------------------------------------

    @staticmethod
    def next_step(delivery: Delivery) -> str | None:
        """The provider status the local courier reports next, or None when it has nothing more to say.

        Rules (deterministic): an address containing NOSHOW never gets a courier (for the SLA watch); one containing
        FAIL fails at the door; otherwise a failure happens with probability O2O_LOCAL_COURIER_FAILURE_RATE drawn
        from a generator seeded with (O2O_LOCAL_COURIER_SEED, delivery id)."""
        address = (delivery.fulfillment.order.destination_address or "").upper()
        match delivery.status:
            case "requested":
                return None if "NOSHOW" in address else "ASSIGNED"
            case "assigned":
                return "PICKED_UP"
            case "picked_up":
                rate = float(getattr(settings, "O2O_LOCAL_COURIER_FAILURE_RATE", 0.0))
                seed = getattr(settings, "O2O_LOCAL_COURIER_SEED", 7)
                unlucky = rate > 0 and random.Random(f"{seed}:{delivery.pk}").random() < rate
                return "FAILED" if "FAIL" in address or unlucky else "DELIVERED"
            case "failed":
                return "RETURNED" if delivery.picked_up_at else None
        return None

    @staticmethod
    def payload(delivery: Delivery, provider_status: str, *, at: datetime) -> dict[str, Any]:
        """The webhook payload a courier app would send for this step."""
        name, phone, plate = COURIERS[delivery.pk % len(COURIERS)]
        body: dict[str, Any] = {
            "event_id": f"{delivery.external_id}:{provider_status.lower()}",
            "order_id": delivery.external_id,
            "status": provider_status,
            "occurred_at": at.isoformat(),
        }
        if provider_status == "ASSIGNED":
            body["courier"] = {"name": name, "phone": phone, "plate": plate}
        elif provider_status == "DELIVERED":
            order = delivery.fulfillment.order
            body["proof"] = {
                "photo_url": f"https://pod.example.vn/{delivery.external_id}.jpg",
                "recipient_name": order.customer_name,
            }
        elif provider_status == "FAILED":
            body["reason"] = "Không liên lạc được người nhận (recipient unreachable)"
        return body
