"""Operations admin for loyalty members and the ledger.

The ledger (postings, entries, lots, holds) is read-only here. The only writes are the "Adjust points" form and the
"merge" action, which call loyalty.services with the staff user's username, and edits of a member's name and email,
which update those two columns only (never a read-modify-write of the balance counters).
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from loyalty import conf, selectors, services
from loyalty.exceptions import InvalidPhone
from loyalty.models import Entry, Lot, Member, Posting, RedemptionHold
from loyalty.phones import normalize_phone
from o2o.domain_errors import DomainError
from o2o.templatetags.money import format_points, format_vnd

# The default tiers' names (settings.LOYALTY_TIERS), listed so that makemessages keeps their translations: the
# member page shows them through gettext. A chain's own tier names show as configured unless translated too.
DEFAULT_TIER_NAMES = (gettext_noop("Member"), gettext_noop("Silver"), gettext_noop("Gold"))


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class LotInline(ReadOnlyInline):
    model = Lot
    fields = readonly_fields = ("posting", "points", "remaining", "earned_at", "expires_at", "vested", "vest_at")
    verbose_name_plural = gettext_lazy("lots with points left (oldest are spent first)")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(remaining__gt=0).order_by("expires_at", "id")


class EntryInline(ReadOnlyInline):
    model = Entry
    fields = readonly_fields = ("created_at", "posting_link", "kind", "account", "amount", "source")
    verbose_name_plural = gettext_lazy("ledger entries (read-only)")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("posting").order_by("-id")

    @admin.display(description=gettext_lazy("posting"))
    def posting_link(self, obj: Entry) -> str:
        url = reverse("admin:loyalty_posting_change", args=[obj.posting_id])
        return format_html('<a href="{}">#{}</a>', url, obj.posting_id)

    @admin.display(description=gettext_lazy("kind"))
    def kind(self, obj: Entry) -> str:
        return obj.posting.get_kind_display()

    @admin.display(description=gettext_lazy("source"))
    def source(self, obj: Entry) -> str:
        p = obj.posting
        return " · ".join(bit for bit in (p.channel, p.store, p.reference, p.actor, p.reason) if bit)


class HoldInline(ReadOnlyInline):
    model = RedemptionHold
    fields = readonly_fields = ("id", "points", "status", "expires_at", "channel", "reference", "created_at", "closed_at")
    verbose_name_plural = gettext_lazy("redemption holds")


class AdjustmentForm(forms.Form):
    # One key per opened form: a double click or a resubmitted POST replays the first posting instead of a second.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=200)
    points = forms.IntegerField(
        label=gettext_lazy("Points"),
        help_text=gettext_lazy("Positive to credit (a new lot), negative to debit (oldest lots first)."),
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=300, widget=forms.TextInput(attrs={"size": 60}))

    def clean_points(self) -> int:
        if self.cleaned_data["points"] == 0:
            raise forms.ValidationError(_("Enter a number of points other than zero."))
        return self.cleaned_data["points"]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ("phone", "name", "tier", "available", "pending", "held", "shortfall", "merged_into", "created_at")
    list_filter = ("tier",)
    search_fields = ("phone", "name", "email")
    show_facets = admin.ShowFacets.NEVER
    fields = ("phone", "name", "email", "tier_summary", "balance_summary", "merged_into", "created_channel",
              "created_store", "created_at", "adjust_link")
    readonly_fields = ("phone", "tier_summary", "balance_summary", "merged_into", "created_channel", "created_store",
                       "created_at", "adjust_link")
    inlines = [LotInline, HoldInline, EntryInline]
    actions = ["merge_into_oldest"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # members are created by the channels, with a normalised phone

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_search_results(self, request, queryset, search_term):
        """A search that reads as a phone number finds that member in any format."""
        try:
            e164 = normalize_phone(search_term)
        except InvalidPhone:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(phone=e164) | Q(merged_into__phone=e164)), False

    def save_model(self, request, obj: Member, form, change) -> None:
        # Only the contact fields; the counters belong to the ledger and may have moved since the form was read.
        Member.objects.filter(pk=obj.pk).update(name=obj.name, email=obj.email, updated_at=timezone.now())

    @admin.display(description=gettext_lazy("tier"))
    def tier_summary(self, obj: Member) -> str:
        p = selectors.tier_progress(member=obj)
        text = _("%(tier)s (×%(multiplier)s), spend 12 months %(spend)s") % {
            "tier": _(p["name"]), "multiplier": p["multiplier"], "spend": format_vnd(p["spend_12m_vnd"])}
        if p["next_tier"]:
            text += _("; %(amount)s more for %(tier)s") % {
                "amount": format_vnd(p["spend_to_next_tier_vnd"]), "tier": _(p["next_tier_name"])}
        return text

    @admin.display(description=gettext_lazy("balance"))
    def balance_summary(self, obj: Member) -> str:
        if obj.pk is None:
            return "-"
        b = selectors.balance(member=obj)
        return _(
            "available %(available)s (= %(value)s), pending %(pending)s, held %(held)s, shortfall %(shortfall)s, "
            "expiring within %(days)s days %(expiring)s"
        ) % {
            "available": format_points(b.available), "value": format_vnd(b.available_value_vnd),
            "pending": format_points(b.pending), "held": format_points(b.held),
            "shortfall": format_points(b.shortfall), "days": conf.expiring_soon().days,
            "expiring": format_points(b.expiring_soon),
        }

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.adjust_points")

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        # The button leads to a 403 without the permission: leave it out rather than offer it.
        return fields if self.has_adjust_permission(request) else [f for f in fields if f != "adjust_link"]

    @admin.display(description=gettext_lazy("adjust"))
    def adjust_link(self, obj: Member) -> str:
        if obj.pk is None:
            return "-"
        return format_html('<a class="button" href="{}">{}</a>', reverse("admin:loyalty_member_adjust", args=[obj.pk]),
                           _("Adjust points"))

    def get_urls(self):
        return [
            path("<path:object_id>/adjust/", self.admin_site.admin_view(self.adjust_view), name="loyalty_member_adjust"),
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        member = self.get_object(request, unquote(object_id))
        if member is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        form = AdjustmentForm(request.POST or None, initial={"idempotency_key": f"admin-adjust-{uuid.uuid4()}"})
        if request.method == "POST" and form.is_valid():
            try:
                posting = services.adjust_points(
                    member=member,
                    points=form.cleaned_data["points"],
                    reason=form.cleaned_data["reason"],
                    staff=request.user.get_username(),
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except DomainError as exc:
                form.add_error(None, f"{exc.message} {exc.details or ''}".strip())
            else:
                self.message_user(
                    request,
                    _("Posted adjustment #%(id)s: %(points)s.") % {
                        "id": posting.pk, "points": ("+" if posting.points > 0 else "") + format_points(posting.points)},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:loyalty_member_change", args=[member.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Adjust points: %(member)s") % {"member": member},
            "opts": self.opts,
            "member": member,
            "form": form,
            "balance": selectors.balance(member=member),
        }
        return TemplateResponse(request, "admin/loyalty/member/adjust.html", context)

    @admin.action(description=gettext_lazy("Merge the selected members into the oldest one"), permissions=["adjust"])
    def merge_into_oldest(self, request: HttpRequest, queryset) -> None:
        members = list(queryset.filter(merged_into__isnull=True).order_by("created_at", "id"))
        if len(members) < 2:
            self.message_user(request, _("Select at least two members that were not merged yet."), messages.WARNING)
            return
        keep = members[0]
        for other in members[1:]:
            try:
                services.merge_members(keep=keep, merge=other, actor=request.user.get_username())
            except DomainError as exc:
                self.message_user(request, f"{other.phone}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("Merged %(other)s into %(keep)s.") % {"other": other.phone, "keep": keep.phone},
                                  messages.SUCCESS)


class PostingEntryInline(ReadOnlyInline):
    model = Entry
    fields = readonly_fields = ("account", "member", "amount")


@admin.register(Posting)
class PostingAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "kind", "member", "points", "amount_vnd", "channel", "store", "reference", "actor")
    list_filter = ("kind", "channel")
    search_fields = ("reference", "idempotency_key", "member__phone")
    list_select_related = ("member",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    inlines = [PostingEntryInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Posting._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # postings are append-only; corrections are new postings

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
