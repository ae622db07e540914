"""A delivery (one courier dispatch of one fulfillment) and every courier event received, applied or not.

The database refuses: two active dispatches of one fulfillment, one provider's order id used twice, the same provider
event id stored twice (a replay is acknowledged and ignored), unknown states.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders.models import Fulfillment

__all__ = ["CourierEvent", "Delivery", "DeliveryStatus", "FulfillmentAwaitingCourier", "SlaState"]


class DeliveryStatus(models.TextChoices):
    REQUESTED = "requested", "Courier requested"
    ASSIGNED = "assigned", "Courier assigned"
    PICKED_UP = "picked_up", "Picked up"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    RETURNED = "returned", "Returned to the store"


ACTIVE = frozenset({DeliveryStatus.REQUESTED, DeliveryStatus.ASSIGNED, DeliveryStatus.PICKED_UP})


class SlaState(models.TextChoices):
    OK = "ok", "On time"
    AT_RISK = "at_risk", "At risk"
    ESCALATED = "escalated", "Escalated"


class Delivery(models.Model):
    """One request to one courier provider to carry one fulfillment. A re-dispatch cancels it and makes a new one."""

    fulfillment = models.ForeignKey(Fulfillment, on_delete=models.PROTECT, related_name="deliveries")
    provider = models.CharField(max_length=32)
    # NULL, not "": until the provider answers, several requested deliveries have none and the unique constraint
    # below must not see them as equal.
    external_id = models.CharField(  # noqa: DJ001
        max_length=100, null=True, blank=True, help_text="The provider's order id (empty until the provider answered)."
    )
    attempt = models.PositiveSmallIntegerField(default=1, help_text="1 for the first dispatch of this fulfillment.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.REQUESTED)
    provider_status = models.CharField(max_length=40, blank=True, help_text="The provider's own last status.")
    courier_name = models.CharField(max_length=120, blank=True)
    courier_phone = models.CharField(max_length=32, blank=True)
    vehicle_plate = models.CharField(max_length=32, blank=True)
    tracking_url = models.URLField(max_length=500, blank=True)
    fee_vnd = models.PositiveBigIntegerField(null=True, blank=True)
    proof_photo_url = models.URLField(max_length=500, blank=True)
    recipient_name = models.CharField(max_length=120, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    sla_state = models.CharField(max_length=16, choices=SlaState.choices, default=SlaState.OK, db_index=True)
    sla_note = models.CharField(max_length=300, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    returned_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("delivery")
        app_label = "orders"
        ordering = ["-id"]
        verbose_name_plural = _("deliveries")
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="courier_delivery_status_valid"),
            models.CheckConstraint(condition=Q(sla_state__in=SlaState.values), name="courier_delivery_sla_valid"),
            models.UniqueConstraint(fields=["provider", "external_id"], name="courier_delivery_external_id_unique"),
            models.UniqueConstraint(
                fields=["fulfillment"], condition=Q(status__in=sorted(s.value for s in ACTIVE)),
                name="courier_delivery_one_active_per_fulfillment",
            ),
        ]
        indexes = [models.Index(fields=["status", "status_changed_at"], name="courier_delivery_status_idx")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.external_id or '?'} ({self.status})"

    @property
    def reference(self) -> str:
        """Our id for this delivery, sent to the provider as its client reference."""
        return f"o2o-delivery-{self.pk}"


class CourierEvent(models.Model):
    """A status event from a courier provider, stored whether or not it moved anything (replays never get here:
    (provider, event_id) is unique)."""

    provider = models.CharField(max_length=32)
    event_id = models.CharField(max_length=200)
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    external_id = models.CharField(max_length=100, blank=True)
    provider_status = models.CharField(max_length=40, blank=True)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, blank=True, help_text="The provider status mapped to ours."
    )
    payload = models.JSONField()
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    applied = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = _("courier event")
        verbose_name_plural = _("courier events")
        app_label = "orders"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="courier_event_unique_per_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id}"


class FulfillmentAwaitingCourier(Fulfillment):
    """Packed delivery fulfillments, as the courier desk sees them (an admin view with the dispatch action)."""

    class Meta:
        app_label = "orders"
        proxy = True
        verbose_name = _("fulfillment awaiting a courier")
        verbose_name_plural = _("fulfillments awaiting a courier")
