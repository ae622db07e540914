"""Sales channels (who calls the customer-facing API) and HTTP idempotency records."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager


class SalesChannel(models.Model):
    """A customer-facing channel that calls the API server to server: the website, the app, a marketplace."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120)
    is_active = models.BooleanField(default=True)
    webhook_url = models.URLField(blank=True, help_text="Where this channel's events are delivered (the outbox).")
    webhook_secret = models.CharField(max_length=128, blank=True)

    class Meta:
        verbose_name = _("sales channel")
        verbose_name_plural = _("sales channels")

    def __str__(self) -> str:
        return self.name


class SalesChannelKeyManager(APIKeyManager):
    def get_usable_keys(self) -> models.QuerySet:
        return super().get_usable_keys().select_related("channel")


class SalesChannelKey(AbstractAPIKey):
    """An API key of a sales channel, stored hashed; several per channel so keys can be rotated."""

    objects = SalesChannelKeyManager()
    channel = models.ForeignKey(SalesChannel, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = _("sales channel API key")
        verbose_name_plural = _("sales channel API keys")


class IdempotencyRecord(models.Model):
    """The first answer given to a retried POST. Written in the same transaction as the change it answers for,
    so a crash leaves either both or neither."""

    scope = models.CharField(max_length=120, help_text="Who asked and which operation, e.g. 'channel:3:orders.place'.")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class OutboxEvent(models.Model):
    """A customer-visible change, written in the same transaction as the change itself (transactional outbox).
    A Celery task delivers pending events to the channel's webhook, in order per aggregate, at least once; the
    event id lets the receiver deduplicate."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        SKIPPED = "skipped", "No webhook configured"
        DEAD = "dead", "Dead letter"

    event_id = models.UUIDField(unique=True)
    topic = models.CharField(max_length=64, help_text="e.g. order.placed, fulfillment.ready_for_pickup")
    aggregate = models.CharField(max_length=120, help_text="What it is about, e.g. 'order:WEB-1001'.")
    channel = models.ForeignKey(SalesChannel, null=True, blank=True, on_delete=models.SET_NULL)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("outbox event")
        verbose_name_plural = _("outbox events")
        ordering = ["id"]
        # Every order, sale and posting writes events, so each index costs on every write: plain B-trees only (no
        # LIKE twins: nothing searches these columns by prefix), and status is covered by outbox_due_idx.
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx"),
            models.Index(fields=["aggregate"], name="outbox_aggregate_idx"),
            models.Index(fields=["topic"], name="outbox_topic_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.aggregate}"
