"""Ahamove (on-demand motorbike delivery, HCMC/Hanoi/Da Nang): status map, callback parsing, outbound client.

Written from Ahamove's public partner API documentation as we know it (v3 order API; callbacks POST the order
object to the partner's URL). Field names should be checked against the current docs before going live; the client
is never called in tests or the demo.

Order statuses: IDLE / CONFIRMING / PAYING / ASSIGNING (looking for a driver), ACCEPTED (driver assigned),
IN PROCESS (driver boarded: goods picked up), COMPLETED (route finished; each stop of `path` says COMPLETED or
FAILED with `fail_comment`; a stop that RETURNED means the goods came back), CANCELLED (`cancel_comment`).

Callbacks carry no signature of their own and no event id: we require the design-notes O2O-Signature (added by the
relay that receives Ahamove's callback, or by Ahamove with a shared secret) and derive the event id from the content,
so the same notification sent twice is one event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from orders.couriers.exceptions import ProviderError
from orders.couriers.providers.base import (
    CourierProvider,
    PickupRequest,
    PickupResult,
    ProviderEvent,
    digest_id,
    parse_time,
    require,
    text,
)

if TYPE_CHECKING:
    from orders.couriers.models import Delivery


class Ahamove(CourierProvider):
    name = "ahamove"
    STATUS_MAP = {
        "IDLE": "requested",
        "CONFIRMING": "requested",
        "PAYING": "requested",
        "ASSIGNING": "requested",
        "ACCEPTED": "assigned",
        "IN PROCESS": "picked_up",
        "IN_PROCESS": "picked_up",
        "COMPLETED": "delivered",
        "FAILED": "failed",
        "CANCELLED": "cancelled",
        "RETURNED": "returned",
    }

    def parse_event(self, payload: dict[str, Any]) -> ProviderEvent:
        order_id = text(require(payload, "_id"), 100)
        order_status = text(require(payload, "status"), 40).upper()
        sub_status = text(payload.get("sub_status"), 40).upper()
        path = payload.get("path") if isinstance(payload.get("path"), list) else []
        drop = path[-1] if len(path) > 1 and isinstance(path[-1], dict) else {}
        drop_status = text(drop.get("status"), 40).upper()
        provider_status = order_status
        # The route is over; the drop-off stop says how it ended.
        if order_status == "COMPLETED" and drop_status in ("FAILED", "RETURNED"):
            provider_status = drop_status
        elif sub_status == "RETURNED":
            provider_status = "RETURNED"
        when = (
            payload.get("complete_time") if provider_status in ("COMPLETED", "FAILED", "RETURNED")
            else payload.get("cancel_time") if provider_status == "CANCELLED"
            else payload.get("board_time") if provider_status in ("IN PROCESS", "IN_PROCESS")
            else payload.get("accept_time")
        )
        return ProviderEvent(
            event_id=digest_id(order_id, order_status, sub_status, [text(p.get("status")) for p in path if isinstance(p, dict)]),
            external_id=order_id,
            provider_status=provider_status,
            status=self.map_status(provider_status),
            occurred_at=parse_time(when),
            courier_name=text(payload.get("supplier_name"), 120),
            courier_phone=text(payload.get("supplier_id"), 32),  # Ahamove identifies drivers by phone number
            vehicle_plate=text(payload.get("supplier_plate") or payload.get("vehicle_plate"), 32),
            proof_photo_url=text(drop.get("pod_image") or drop.get("image_url"), 500),
            recipient_name=text(drop.get("receiver_name") or drop.get("name"), 120) if drop_status == "COMPLETED" else "",
            failure_reason=text(drop.get("fail_comment") or payload.get("cancel_comment"), 300),
            tracking_url=text(payload.get("shared_link"), 500),
        )

    # --- outbound -----------------------------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        return self.config("session") or requests.Session()

    def request_pickup(self, delivery: Delivery) -> PickupResult:
        req = PickupRequest.for_delivery(delivery)
        body = {
            "order_time": 0,  # now
            "path": [
                {"lat": req.store_lat, "lng": req.store_lon, "address": req.store_address, "name": req.store_name,
                 "mobile": req.store_phone},
                {"lat": req.lat, "lng": req.lon, "address": req.address, "name": req.customer_name,
                 "mobile": req.customer_phone, "cod": req.cod_vnd, "tracking_number": req.reference},
            ],
            "service_id": self.config("service_id", "SGN-BIKE"),
            "requests": [],
            "payment_method": self.config("payment_method", "BALANCE"),
            "remarks": req.note,
        }
        data = self._call("POST", "/v3/orders", json=body)
        if not data.get("order_id"):
            raise ProviderError(details={"provider": self.name, "response": str(data)[:300]})
        total = (data.get("order") or {}).get("total_pay")
        return PickupResult(
            external_id=str(data["order_id"]), tracking_url=text(data.get("shared_link"), 500),
            fee_vnd=int(total) if isinstance(total, int | float) else None, raw=data,
        )

    def cancel(self, delivery: Delivery, *, reason: str) -> None:
        if delivery.external_id:
            self._call("DELETE", f"/v3/orders/{delivery.external_id}", json={"comment": reason[:200]})

    def _call(self, method: str, path: str, *, json: dict) -> dict:
        base = self.config("base_url", "https://partner-apistg.ahamove.com")
        token = self.config("api_token")
        if not token:
            raise ProviderError("Ahamove is not configured (O2O_AHAMOVE_TOKEN).", details={"provider": self.name})
        try:
            response = self._session().request(
                method, f"{base.rstrip('/')}{path}", json=json, timeout=self.config("timeout", 10),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            raise ProviderError(details={"provider": self.name, "error": type(exc).__name__}) from exc
        if response.status_code >= 300:
            raise ProviderError(details={"provider": self.name, "status": response.status_code, "body": response.text[:300]})
        return response.json() if response.content else {}
