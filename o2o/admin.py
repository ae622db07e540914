"""Admin for sales channels, their API keys, HTTP idempotency records and the event outbox."""

from django.contrib import admin, messages
from django.db import models
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from o2o import outbox
from o2o.domain_errors import DomainError
from o2o.models import IdempotencyRecord, OutboxEvent, SalesChannel, SalesChannelKey

# The library registers its own key model; nothing authenticates with it here, so keys made there would not work.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class ReadOnlyAdminMixin:
    """Records written by the application itself: staff look, they do not edit."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SalesChannelKeyInline(admin.TabularInline):
    """The channel's keys (hashed; the key itself is shown once, when it is created from the key admin)."""

    model = SalesChannelKey
    fields = ("prefix", "name", "created", "expiry_date", "revoked")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SalesChannel)
class SalesChannelAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "is_active", "webhook_url", "key_count")
    list_filter = ("is_active",)
    search_fields = ("code", "name")
    readonly_fields = ("new_key_link",)
    fields = ("code", "name", "is_active", "webhook_url", "webhook_secret", "new_key_link")
    inlines = [SalesChannelKeyInline]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"  # webhooks are delivered over HTTPS
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_key_count=Count("api_keys"))

    @admin.display(description=gettext_lazy("API keys"), ordering="_key_count")
    def key_count(self, obj: SalesChannel) -> int:
        return obj._key_count

    @admin.display(description=gettext_lazy("API key"))
    def new_key_link(self, obj: SalesChannel) -> str:
        if not obj.pk:
            return _("Save the channel first, then create its key.")
        url = reverse("admin:o2o_saleschannelkey_add") + f"?channel={obj.pk}"
        return format_html('<a class="addlink" href="{}">{}</a>', url, _("Create an API key for %(channel)s") % {"channel": obj.code})


@admin.register(SalesChannelKey)
class SalesChannelKeyAdmin(APIKeyModelAdmin):
    """Creating a key shows it once, in a message (APIKeyModelAdmin); only its hash is stored."""

    list_display = (*APIKeyModelAdmin.list_display, "channel")
    list_filter = ("channel", "revoked", "created")
    list_select_related = ("channel",)
    search_fields = ("name", "prefix", "channel__code")
    fields = ("channel", "name", "prefix", "expiry_date", "revoked")

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "channel") if obj is not None else fields


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "scope", "key", "response_status")
    list_filter = ("response_status",)
    search_fields = ("=key", "scope")
    date_hierarchy = "created_at"
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


class NeedsAttentionFilter(admin.SimpleListFilter):
    """Dead letters (gave up after O2O_OUTBOX_MAX_ATTEMPTS) and events still retrying after a failure."""

    title = gettext_lazy("delivery trouble")
    parameter_name = "trouble"

    def lookups(self, request, model_admin):
        return [("dead", _("Dead letters (replayable)")), ("retrying", _("Failing, still retrying"))]

    def queryset(self, request, queryset):
        if self.value() == "dead":
            return queryset.filter(status=OutboxEvent.Status.DEAD)
        if self.value() == "retrying":
            return queryset.filter(status=OutboxEvent.Status.PENDING, attempts__gt=0)
        return queryset


OUTBOX_COLOURS = {
    OutboxEvent.Status.PENDING: "#ef6c00",
    OutboxEvent.Status.DELIVERED: "#2e7d32",
    OutboxEvent.Status.SKIPPED: "#757575",
    OutboxEvent.Status.DEAD: "#c62828",
}


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Events to the sales channels. Dead letters are replayed with the action (o2o.outbox.replay_dead_events):
    back to pending, attempts reset, delivered in order with the rest of their aggregate."""

    list_display = (
        "created_at",
        "topic",
        "aggregate",
        "channel",
        "status_badge",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "short_error",
    )
    list_filter = (NeedsAttentionFilter, "status", "channel")
    list_select_related = ("channel",)
    search_fields = ("=aggregate", "topic", "=event_id")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["replay_dead"]

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, obj: OutboxEvent) -> str:
        return format_html('<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</span>',
                           OUTBOX_COLOURS.get(obj.status, "#757575"), obj.get_status_display())

    @admin.display(description=gettext_lazy("last error"))
    def short_error(self, obj: OutboxEvent) -> str:
        return obj.last_error[:80]

    @admin.action(description=gettext_lazy("Replay the selected dead letters (deliver them again)"), permissions=["replay"])
    def replay_dead(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        try:
            count = outbox.replay_dead_events(event_ids=ids)
        except DomainError as exc:
            self.message_user(request, f"{exc.message} " + _("Select dead letters only (filter: delivery trouble)."),
                              messages.ERROR)
            return
        self.message_user(request, _("%(count)s event(s) queued for delivery again.") % {"count": count}, messages.SUCCESS)

    def has_replay_permission(self, request) -> bool:
        # Replaying writes (status back to pending): staff who may change events, or superusers.
        return request.user.has_perm("o2o.change_outboxevent")
