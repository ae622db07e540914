"""Ahamove (on-demand motorbike delivery, HCMC/Hanoi/Da Nang): status map, callback parsing, outbound client.

Followed: Ahamove's public developer documentation (developers.ahamove.com), pages "Order Status Flow", "Webhook &
Callback flow" (its sample callback), "Create Order" (API v3) and "Cancel Order" (API v3). What they say:

- Order `status`: IDLE (scheduled), CONFIRMING / PAYING (listed as cancellable), ASSIGNING (finding a driver),
  ACCEPTED (driver accepted; `sub_status` BOARDED when near the pickup), IN PROCESS (driver pressed "Pick up";
  `sub_status` COMPLETING near the drop-off), COMPLETED (route finished, which does not mean delivered), CANCELLED
  (`cancel_by_user`, `cancel_comment`; "Auto cancel, no driver accepted" when nobody took it).
- Delivery outcome per stop: `path[i].status` (i > 0) COMPLETED or FAILED (`fail_comment`, `fail_time`); the stop also
  has `complete_time`, `return_time` and `pod_info` (proof of delivery). `sub_status` IN_RETURN while the failed parcel
  goes back, RETURNED once the driver returned it to the sender.
- Callbacks POST the whole order object (`_id`, `status`, `sub_status`, `path`, `accept_time`, `board_time`,
  `pickup_time`, `complete_time`, `cancel_time`, ...) to the partner's URL, authenticated only by a static header
  chosen by the partner (API key, bearer token or basic auth): no body signature, no timestamp, no event id.
  So we require the design-notes O2O-Signature (added by the relay that receives Ahamove's callback) and derive the
  event id from the content, so the same notification sent twice is one event.
- Outbound: `POST /v3/orders` (Bearer token; `service_id`, `path` of {lat, lng, address, name, mobile, cod,
  tracking_number}, `requests`, `payment_method`) answers `order_id`; `DELETE /v3/orders/<order_id>` with a `comment`
  cancels while IDLE, ASSIGNING, ACCEPTED, CONFIRMING or PAYING.
Not shown in the excerpts we could read, kept from the order object as commonly returned: `supplier_id` (the driver's
phone) and `supplier_name`, `shared_link`, `total_pay`. The client is never called in tests or the demo.

Derived provider statuses (ours, recorded in provider_status): FAILED (COMPLETED with the drop-off FAILED, or
IN_RETURN) and RETURNED (sub_status RETURNED).
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
        "COMPLETED": "delivered",
        "CANCELLED": "cancelled",
        "FAILED": "failed",  # derived: the drop-off stop failed, or the parcel is on its way back
        "RETURNED": "returned",  # derived: sub_status RETURNED
    }

    def parse_event(self, payload: dict[str, Any]) -> ProviderEvent:
        order_id = text(require(payload, "_id"), 100)
        order_status = text(require(payload, "status"), 40).upper()
        sub_status = text(payload.get("sub_status"), 40).upper()
        path = payload.get("path") if isinstance(payload.get("path"), list) else []
        drop = path[-1] if len(path) > 1 and isinstance(path[-1], dict) else {}
        drop_status = text(drop.get("status"), 40).upper()
        provider_status, when = order_status, payload.get("accept_time")
        if sub_status == "RETURNED":
            provider_status, when = "RETURNED", drop.get("return_time") or payload.get("complete_time")
        elif sub_status == "IN_RETURN" or (order_status == "COMPLETED" and drop_status == "FAILED"):
            provider_status, when = "FAILED", drop.get("fail_time") or payload.get("complete_time")
        elif order_status == "COMPLETED":
            when = drop.get("complete_time") or payload.get("complete_time")
        elif order_status == "CANCELLED":
            when = payload.get("cancel_time")
        elif order_status == "IN PROCESS":
            when = payload.get("pickup_time") or payload.get("board_time")
        delivered = provider_status == "COMPLETED"
        pod = text(drop.get("pod_info"), 500) if delivered else ""
        return ProviderEvent(
            event_id=digest_id(order_id, order_status, sub_status, [text(p.get("status")) for p in path if isinstance(p, dict)]),
            external_id=order_id,
            provider_status=provider_status,
            status=self.map_status(provider_status),
            occurred_at=parse_time(when or None),
            courier_name=text(payload.get("supplier_name"), 120),
            courier_phone=text(payload.get("supplier_id"), 32),  # Ahamove identifies drivers by phone number
            proof_photo_url=pod if pod.startswith(("http://", "https://")) else "",
            recipient_name=text(drop.get("name"), 120) if delivered else "",
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
