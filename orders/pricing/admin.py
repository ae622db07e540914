"""Operations admin of prices and promotions.

The policy tables (store groups, price lists and their rows, promotions, codes, delivery fees) are edited here; every
save and delete raises the policy's version in the same transaction (orders.pricing.services.policy_changed), so the
processes' cached policy and the tills' snapshots reload. Promotions are checked by services.check_promotion, the
same check as the API's.

Pages of their own: the price preview (“this cart, this store, this time: what would it cost”, also on the promotion
and price-list pages), the calendar of what runs when, each promotion's results with charts drawn here as inline SVG
(no script, nothing fetched: they work offline), the codes' CSV export, and the tills' price-exception queue, scoped
to the viewer's stores."""

import csv
import io
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from inventory.admin import StoreCityFilter, StoreFilter, format_vnd
from inventory.exceptions import UnknownSku
from inventory.models import Product, Store
from inventory.staff.scope import StoreScopedAdmin, scoped_stores
from o2o.admin import ReadOnlyAdminMixin
from o2o.models import SalesChannel
from o2o.templatetags.money import group_thousands

from . import engine, selectors, services
from .exceptions import CodeError
from .forms import (
    CodeForm,
    DeliveryFeeRuleForm,
    GenerateCodesForm,
    PreviewForm,
    PriceListForm,
    PromotionForm,
    StoreGroupForm,
    write_codes_csv,
)
from .models import (
    Code,
    CodeUse,
    DeliveryFeeRule,
    PriceException,
    PriceList,
    PriceListRow,
    Promotion,
    PromotionApplication,
    StoreGroup,
)

KIND_LABELS = {
    engine.Kind.PERCENT_OFF: _("Percent off"),
    engine.Kind.AMOUNT_OFF: _("Amount off"),
    engine.Kind.BUY_X_GET_Y: _("Buy X get Y"),
    engine.Kind.BUNDLE: _("Bundle price"),
    engine.Kind.SPEND_THRESHOLD: _("Spend threshold"),
}
TARGET_LABELS = {engine.Target.SKU: _("SKUs"), engine.Target.CATEGORY: _("Categories"), engine.Target.CART: _("Cart")}
# Why a promotion does not apply in a context (orders.pricing.engine.out_of_scope) and why a code was left out.
SCOPE_REASONS = {
    "channel": _("not for this channel"),
    "store": _("not for this store"),
    "tier": _("not for this member tier"),
    "member": _("a per-member budget needs a member"),
    "dates": _("outside its dates"),
    "time_window": _("outside its weekdays or hours"),
    "out_of_scope": _("cannot be used here or now"),
    "conditions_not_met": _("the cart does not meet its conditions"),
    "not_best": _("another choice is better for the customer"),
    "budget_exhausted": _("its promotion's budget is used up"),
    "duplicate": _("another code of the same promotion is applied"),
}


def _vnd(amount: int | None) -> str:
    return format_vnd(amount)


def _channels_text(channels: list[str]) -> str:
    return ", ".join(channels) if channels else gettext("every channel")


def _period_text(starts_at: datetime | None, ends_at: datetime | None) -> str:
    fmt = "%d/%m/%Y %H:%M"
    start = timezone.localtime(starts_at).strftime(fmt) if starts_at else "…"
    end = timezone.localtime(ends_at).strftime(fmt) if ends_at else "…"
    return f"{start} → {end}"


class PolicyAdmin(admin.ModelAdmin):
    """Every save and delete of a policy table raises the policy's version in the same transaction: the admin's
    change and delete views run in one, and a bulk delete is wrapped in one here."""

    def save_model(self, request, obj, form, change) -> None:
        if hasattr(obj, "updated_at"):
            obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        # After the object and its inlines (a price list's rows), in the view's transaction.
        super().save_related(request, form, formsets, change)
        services.policy_changed()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        services.policy_changed()

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            super().delete_queryset(request, queryset)
            services.policy_changed()

    def _set_active(self, request: HttpRequest, queryset: QuerySet, active: bool) -> None:
        with transaction.atomic():
            changed = queryset.exclude(is_active=active).update(is_active=active, updated_at=timezone.now())
            if changed:
                services.policy_changed()
        self.message_user(request, ngettext("%(n)d %(what)s changed.", "%(n)d %(what)s changed.", changed)
                          % {"n": changed, "what": self.opts.verbose_name_plural}, messages.SUCCESS)

    @admin.action(description=_("Switch on the selected"), permissions=["change"])
    def switch_on(self, request, queryset):
        self._set_active(request, queryset, True)

    @admin.action(description=_("Switch off the selected"), permissions=["change"])
    def switch_off(self, request, queryset):
        self._set_active(request, queryset, False)


# --- store groups -------------------------------------------------------------------------------------------------


@admin.register(StoreGroup)
class StoreGroupAdmin(PolicyAdmin):
    form = StoreGroupForm
    list_display = ("code", "name", "basis", "store_count")
    list_filter = ("basis",)
    search_fields = ("code", "name")
    filter_horizontal = ("stores",)
    fields = ("code", "name", "basis", "stores", "fill_city")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_stores=Count("stores"))

    @admin.display(description=_("stores"), ordering="n_stores")
    def store_count(self, obj: StoreGroup) -> int:
        return obj.n_stores

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        city = form.cleaned_data.get("fill_city")
        if city:
            added = Store.objects.filter(city=city).exclude(pk__in=form.instance.stores.values("pk"))
            n = added.count()
            form.instance.stores.add(*added)
            self.message_user(request, ngettext("%(n)d store of %(city)s added.", "%(n)d stores of %(city)s added.", n)
                              % {"n": n, "city": city}, messages.SUCCESS)


# --- price lists --------------------------------------------------------------------------------------------------

INLINE_ROWS_MAX = 300  # above this, a list's rows are edited in their own searchable list, not on one page


class PriceListRowInline(admin.TabularInline):
    model = PriceListRow
    autocomplete_fields = ("product",)
    fields = ("product", "price_vnd", "base_price")
    readonly_fields = ("base_price",)
    extra = 1

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product").order_by("product__sku")

    @admin.display(description=_("base price"))
    def base_price(self, obj: PriceListRow) -> str:
        return _vnd(obj.product.price_vnd) if obj.product_id else "-"


class PeriodColumns:
    @admin.display(description=_("channels"))
    def channels_list(self, obj) -> str:
        return _channels_text(obj.channels)

    @admin.display(description=_("period"), ordering="starts_at")
    def period(self, obj) -> str:
        return _period_text(obj.starts_at, obj.ends_at)

    @admin.display(description=_("stores"), ordering="store_group__code")
    def stores(self, obj) -> str:
        return obj.store_group.name if obj.store_group_id else gettext("every store")


@admin.register(PriceList)
class PriceListAdmin(PeriodColumns, PolicyAdmin):
    form = PriceListForm
    inlines = [PriceListRowInline]
    list_display = ("code", "name", "channels_list", "stores", "period", "priority", "is_active", "row_count")
    list_filter = ("is_active", "store_group")
    search_fields = ("code", "name")
    list_select_related = ("store_group",)
    actions = ["switch_on", "switch_off"]
    fieldsets = (
        (None, {"fields": ("code", "name", "is_active", "priority")}),
        (_("Where and when"), {"fields": ("channels", "store_group", "starts_at", "ends_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_rows=Count("rows"))

    @admin.display(description=_("rows"), ordering="n_rows")
    def row_count(self, obj: PriceList) -> str:
        url = reverse("admin:pricing_pricelistrow_changelist") + "?" + urlencode({"price_list__id__exact": obj.pk})
        return format_html('<a href="{}">{}</a>', url, group_thousands(obj.n_rows))

    def get_inlines(self, request, obj):
        if obj is not None and obj.rows.count() > INLINE_ROWS_MAX:
            return []
        return super().get_inlines(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra = {}
        if obj is not None:
            n_rows = obj.rows.count()
            extra["rows_url"] = reverse("admin:pricing_pricelistrow_changelist") + "?" + urlencode(
                {"price_list__id__exact": obj.pk})
            extra["rows_elsewhere"] = n_rows > INLINE_ROWS_MAX
            extra["n_rows"] = n_rows
            initial = {"cart": "\n".join(f"{sku} 1" for sku in obj.rows.order_by("product__sku")
                                         .values_list("product__sku", flat=True)[:5]),
                       "channel": (obj.channels or [_default_channel()])[0]}
            extra["preview"] = preview(request, policy=with_price_list(selectors.active_policy(), obj), initial=initial,
                                       note=gettext("Priced with this price list as saved, even if switched off."),
                                       channels=obj.channels or ())
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


@admin.register(PriceListRow)
class PriceListRowAdmin(PolicyAdmin):
    """A price list's rows, searchable by SKU: for lists too long to edit on one page."""

    list_display = ("price_list", "sku", "product_name", "price_vnd", "base_price")
    list_editable = ("price_vnd",)
    list_filter = ("price_list",)
    search_fields = ("product__sku", "product__name")
    list_select_related = ("price_list", "product")
    autocomplete_fields = ("product",)
    ordering = ("price_list__code", "product__sku")

    @admin.display(description=_("SKU"), ordering="product__sku")
    def sku(self, obj: PriceListRow) -> str:
        return obj.product.sku

    @admin.display(description=_("product"))
    def product_name(self, obj: PriceListRow) -> str:
        return obj.product.name

    @admin.display(description=_("base price"))
    def base_price(self, obj: PriceListRow) -> str:
        return _vnd(obj.product.price_vnd)


# --- promotions ---------------------------------------------------------------------------------------------------


class RunningFilter(admin.SimpleListFilter):
    title = _("when")
    parameter_name = "when"

    def lookups(self, request, model_admin):
        return [("now", _("Running now")), ("upcoming", _("Upcoming")), ("ended", _("Ended"))]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "now":
            return queryset.filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now),
                                   Q(ends_at__isnull=True) | Q(ends_at__gt=now), is_active=True)
        if self.value() == "upcoming":
            return queryset.filter(starts_at__gt=now)
        if self.value() == "ended":
            return queryset.filter(ends_at__lte=now)
        return queryset


def _redemptions() -> Subquery:
    """Applications not cancelled, counted per promotion (a correlated count on the promotion's index)."""
    return Coalesce(Subquery(
        PromotionApplication.objects.filter(promotion=OuterRef("pk"), cancelled=False)
        .order_by().values("promotion").annotate(n=Count("pk")).values("n"),
        output_field=IntegerField(),
    ), 0)


@admin.register(Promotion)
class PromotionAdmin(PeriodColumns, PolicyAdmin):
    form = PromotionForm
    list_display = ("code", "name", "kind_label", "campaign", "channels_list", "stores", "period", "priority",
                    "exclusive", "is_active", "results")
    list_filter = ("is_active", RunningFilter, "kind", "exclusive", "requires_code", "store_group")
    search_fields = ("code", "name", "campaign")
    list_select_related = ("store_group",)
    readonly_fields = ("uses", "discount_given")
    actions = ["generate_codes", "export_results", "switch_on", "switch_off"]
    fieldsets = (
        (None, {"fields": ("code", "name", "campaign", "is_active")}),
        (_("The discount"), {"fields": ("kind", "target", "skus", "categories", "percent", "amount_vnd", "buy_qty",
                                        "get_qty", "bundle", "bundle_price_vnd", "min_spend_vnd")}),
        (_("Where, who and when"), {"fields": ("channels", "store_group", "tiers", "starts_at", "ends_at", "weekdays",
                                              "from_time", "until_time")}),
        (_("Combining"), {"fields": ("priority", "exclusive", "requires_code")}),
        (_("Budget"), {"fields": ("max_uses", "max_uses_per_member", "max_discount_vnd", "uses", "discount_given")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(redemptions=_redemptions())

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "kind":
            field.choices = [(k, KIND_LABELS[k]) for k in engine.Kind.ALL]
        elif db_field.name == "target":
            field.choices = [(t, TARGET_LABELS[t]) for t in engine.Target.ALL]
        return field

    @admin.display(description=_("kind"), ordering="kind")
    def kind_label(self, obj: Promotion) -> str:
        return KIND_LABELS.get(obj.kind, obj.kind)

    @admin.display(description=_("discount given (VND)"))
    def discount_given(self, obj: Promotion) -> str:
        return _vnd(obj.discount_given_vnd)

    @admin.display(description=_("results"), ordering="redemptions")
    def results(self, obj: Promotion) -> str:
        url = reverse("admin:pricing_promotion_results", args=[obj.pk])
        text = ngettext("%(n)s redemption", "%(n)s redemptions", obj.redemptions) % {
            "n": group_thousands(obj.redemptions)}
        return format_html('<a href="{}">{}</a>', url, text)

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return shown if self.has_results_permission(request) else tuple(c for c in shown if c != "results")

    def has_results_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pricing.view_promotionapplication")

    def has_generate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pricing.add_code")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("preview/", wrap(self.preview_view), name="pricing_promotion_preview"),
            path("calendar/", wrap(self.calendar_view), name="pricing_promotion_calendar"),
            path("<path:object_id>/results/", wrap(self.results_view), name="pricing_promotion_results"),
            path("<path:object_id>/results.csv", wrap(self.results_csv_view), name="pricing_promotion_results_csv"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, template: str, title, **context) -> TemplateResponse:
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request), "opts": self.opts, "title": title, "subtitle": None,
            "preview_url": reverse("admin:pricing_promotion_preview"),
            "calendar_url": reverse("admin:pricing_promotion_calendar"), **context,
        })

    def changelist_view(self, request, extra_context=None):
        extra = {"preview_url": reverse("admin:pricing_promotion_preview"),
                 "calendar_url": reverse("admin:pricing_promotion_calendar")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra = {}
        if obj is not None:
            extra["codes_url"] = reverse("admin:pricing_code_changelist") + "?" + urlencode(
                {"promotion__id__exact": obj.pk})
            if self.has_results_permission(request):
                extra["results_url"] = reverse("admin:pricing_promotion_results", args=[obj.pk])
            extra["calendar_url"] = reverse("admin:pricing_promotion_calendar")
            extra["preview"] = preview(
                request, policy=with_promotion(selectors.active_policy(), obj), initial=_promotion_cart(obj),
                highlight=obj.code, note=gettext("Priced with this promotion as saved, even if switched off."),
                channels=obj.channels or (),
            )
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    # --- the preview and the calendar ----------------------------------------------------------------------------

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return self._page(request, "admin/pricing/preview.html", _("Price preview"),
                          preview=preview(request, policy=selectors.active_policy(),
                                          initial={"channel": _default_channel()}))

    def calendar_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            start = date.fromisoformat(request.GET.get("start", ""))
        except ValueError:
            start = timezone.localdate()
        weeks = request.GET.get("weeks", "")
        weeks = min(max(int(weeks), 1), 8) if weeks.isdigit() else 2
        cal = calendar(start=start, weeks=weeks, zone=timezone.get_current_timezone())
        here = reverse("admin:pricing_promotion_calendar")
        return self._page(
            request, "admin/pricing/calendar.html", _("What runs when"), cal=cal, weeks=weeks,
            previous_url=f"{here}?{urlencode({'start': cal.days[0] - timedelta(weeks=weeks), 'weeks': weeks})}",
            next_url=f"{here}?{urlencode({'start': cal.days[0] + timedelta(weeks=weeks), 'weeks': weeks})}",
            today_url=f"{here}?{urlencode({'weeks': weeks})}",
            zone=timezone.get_current_timezone_name(),
        )

    # --- results ------------------------------------------------------------------------------------------------

    def _results_object(self, request: HttpRequest, object_id: str) -> Promotion:
        if not (self.has_view_permission(request) and self.has_results_permission(request)):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise PermissionDenied
        return obj

    def results_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        promo = self._results_object(request, object_id)
        res = promotion_results(promo, zone=timezone.get_current_timezone())
        return self._page(
            request, "admin/pricing/promotion/results.html", _("Results of %(promotion)s") % {"promotion": promo},
            original=promo, res=res,
            csv_url=reverse("admin:pricing_promotion_results_csv", args=[promo.pk]),
            channel_chart=bar_chart("chart-channels", [(r.key, r.discount) for r in res.by_channel], money=True),
            store_chart=bar_chart("chart-stores", [(r.key, r.discount) for r in res.by_store[:20]], money=True),
            day_chart=day_chart("chart-days", [(r.key, r.redemptions) for r in _every_day(res.by_day)]),
        )

    def results_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        promo = self._results_object(request, object_id)
        return _csv_response(f"results-{promo.code}.csv", results_rows([promo]))

    @admin.action(description=_("Export results (CSV)"), permissions=["results"])
    def export_results(self, request, queryset):
        return _csv_response("promotion-results.csv", results_rows(list(queryset.order_by("code"))))

    # --- codes ----------------------------------------------------------------------------------------------------

    @admin.action(description=_("Generate codes…"), permissions=["generate"])
    def generate_codes(self, request, queryset):
        promos = list(queryset[:2])
        if len(promos) != 1:
            self.message_user(request, gettext("Select exactly one promotion to generate codes for."), messages.ERROR)
            return None
        promo = promos[0]
        form = GenerateCodesForm(request.POST if "apply" in request.POST else None,
                                 initial={"campaign": promo.campaign})
        if form.is_valid():
            data = form.cleaned_data
            with transaction.atomic():
                made = services.generate_codes(
                    promotion=promo, count=data["count"], prefix=data["prefix"], campaign=data["campaign"],
                    max_uses=data["max_uses"], expires_at=data["expires_at"],
                )
                services.policy_changed()
            campaign = data["campaign"] or promo.campaign
            export = reverse("admin:pricing_code_export") + "?" + urlencode(
                {"promotion": promo.code, **({"campaign": campaign} if campaign else {})})
            self.message_user(request, format_html(
                '{} <a href="{}">{}</a>',
                ngettext("%(n)d code generated for %(promotion)s.", "%(n)d codes generated for %(promotion)s.",
                         len(made)) % {"n": len(made), "promotion": promo.code},
                export, gettext("Download them (CSV)"),
            ), messages.SUCCESS)
            self.log_change(request, promo, f"Generated {len(made)} codes (campaign {campaign or '-'})")
            codes = reverse("admin:pricing_code_changelist") + "?" + urlencode({"promotion__id__exact": promo.pk})
            return HttpResponseRedirect(codes)
        return self._page(request, "admin/pricing/promotion/generate_codes.html",
                          _("Generate codes for %(promotion)s") % {"promotion": promo}, original=promo, form=form,
                          action="generate_codes", selected=promo.pk, media=self.media + form.media)


def _promotion_cart(promo: Promotion) -> dict:
    """A cart that shows the promotion at work: its SKUs or some of its categories' (bundle's quantities, buy X +
    get Y units); a cart promotion leaves the cart to fill in."""
    units = max(promo.buy_qty + promo.get_qty, 1)
    if promo.bundle:
        lines = [(sku, qty) for sku, qty in promo.bundle]
    elif promo.target == engine.Target.SKU and promo.skus:
        lines = [(sku, units) for sku in promo.skus[:5]]
    elif promo.target == engine.Target.CATEGORY and promo.categories:
        skus = Product.objects.filter(category__in=promo.categories, is_active=True).order_by("sku")
        lines = [(sku, units) for sku in skus.values_list("sku", flat=True)[:2]]
    else:
        lines = []
    return {"cart": "\n".join(f"{sku} {qty}" for sku, qty in lines),
            "channel": (promo.channels or [_default_channel()])[0]}


def _default_channel() -> str:
    return SalesChannel.objects.order_by("code").values_list("code", flat=True).first() or settings.PRICING_TILL_CHANNEL


# --- the price preview ---------------------------------------------------------------------------------------------


def _stores_of(group: StoreGroup | None) -> frozenset[str] | None:
    return None if group is None else frozenset(group.stores.values_list("code", flat=True))


def with_promotion(policy: engine.Policy, promo: Promotion) -> engine.Policy:
    """The policy with this promotion as saved, switched on or not: “what would it do”."""
    mine = selectors.promotion_data(promo, _stores_of(promo.store_group))
    others = tuple(p for p in policy.promotions if p.code != promo.code)
    return replace(policy, promotions=tuple(sorted((*others, mine), key=lambda p: p.code)))


def with_price_list(policy: engine.Policy, pl: PriceList) -> engine.Policy:
    mine = engine.PriceList(
        code=pl.code, prices=dict(pl.rows.values_list("product__sku", "price_vnd")), priority=pl.priority,
        channels=tuple(pl.channels or ()), stores=_stores_of(pl.store_group), starts_at=pl.starts_at,
        ends_at=pl.ends_at,
    )
    others = tuple(p for p in policy.price_lists if p.code != pl.code)
    return replace(policy, price_lists=tuple(sorted((*others, mine), key=lambda p: p.code)))


@dataclass
class Preview:
    form: PreviewForm
    note: str = ""
    priced: engine.PricedCart | None = None
    lines: list | None = None
    applied: list | None = None
    codes: list | None = None
    highlight: str = ""
    highlight_reason: str = ""
    at: datetime | None = None
    zone: str = ""


def preview(request: HttpRequest, *, policy: engine.Policy, initial: dict, highlight: str = "",
            note: str = "", channels: list[str] | tuple[str, ...] = ()) -> Preview:
    """The preview form (a GET form) and, once filled in, the priced cart. Codes are checked one by one and a refused
    code is shown with its reason instead of failing the page."""
    bound = PreviewForm.prefix + "-cart" in request.GET
    form = PreviewForm(request.GET if bound else None, initial=initial, stores=scoped_stores(request),
                       channels=channels)
    result = Preview(form=form, note=note, highlight=highlight)
    if not form.is_valid():
        return result
    data = form.cleaned_data
    store, at = data["store"], data["at"] or timezone.now()
    delivery = None
    if data["distance_km"] is not None:
        delivery = engine.Delivery(distance_km=data["distance_km"], city=store.city if store else "")
    refused: dict[str, str] = {}
    wanted = [services.normalize_code(c) for c in data["codes"]]
    try:
        while True:
            codes = [c for c in wanted if c not in refused]
            try:
                priced = services.price(channel=data["channel"], lines=data["cart"], store=store,
                                        member_phone=data["member_phone"], codes=codes, at=at, delivery=delivery,
                                        policy=policy)
                break
            except CodeError as exc:
                code = services.normalize_code(str((exc.details or {}).get("code", "")))
                if code not in codes:
                    raise
                refused[code] = f"{exc.code}: {exc.message}"
    except UnknownSku as exc:
        form.add_error("cart", gettext("Not sold (unknown or inactive SKU): %(skus)s")
                       % {"skus": ", ".join(exc.details.get("skus", []))})
        return result
    names = dict(Product.objects.filter(sku__in=[line.sku for line in priced.lines]).values_list("sku", "name"))
    result.priced, result.at = priced, at
    result.zone = store.timezone if store else settings.PRICING_DEFAULT_TIMEZONE
    result.lines = [{"line": line, "name": names.get(line.sku, ""),
                     "discounts": [(d.promotion.replace("#", " · "), d.amount_vnd) for d in line.discounts]}
                    for line in priced.lines]
    result.applied = [{"a": a, "kind": KIND_LABELS.get(a.kind, a.kind)} for a in priced.applied]
    outcomes = {c.code: c for c in priced.codes}
    result.codes = []
    for code in wanted:
        if code in refused:
            result.codes.append({"code": code, "applied": False, "reason": refused[code]})
        elif code in outcomes:
            o = outcomes[code]
            result.codes.append({"code": code, "promotion": o.promotion, "applied": o.applied,
                                 "reason": SCOPE_REASONS.get(o.reason, o.reason)})
    if highlight and not any(a.promotion == highlight for a in priced.applied):
        promo = next((p for p in policy.promotions if p.code == highlight), None)
        if promo is not None:
            who = services.customer(data["member_phone"])
            ctx = services.context(channel=data["channel"], store=store, who=who, at=at, policy=policy)
            why = engine.out_of_scope(promo, ctx, at.astimezone(ZoneInfo(ctx.timezone)))
            result.highlight_reason = SCOPE_REASONS.get(why, why) if why else (
                gettext("a code is needed") if promo.requires_code else SCOPE_REASONS["conditions_not_met"]
                + " " + gettext("or another choice is better for the customer"))
    return result


# --- the calendar --------------------------------------------------------------------------------------------------


@dataclass
class CalendarRow:
    kind: str  # "promotion" | "price_list"
    obj: object
    url: str
    label: str
    scope: str
    hours: str
    cells: list[str]  # one per day, CSS classes: "on" (runs), "part" (starts or ends that day), "weekend", "today"


@dataclass
class Calendar:
    days: list[date]
    rows: list[CalendarRow]
    today: date


def _hours(p: Promotion) -> str:
    days = ""
    if p.weekdays and set(p.weekdays) != set(range(7)):
        names = [gettext(d.strftime("%a")) for d in (date(2024, 1, 1) + timedelta(days=i) for i in sorted(p.weekdays))]
        days = ", ".join(names)
    hours = ""
    if p.from_time or p.until_time:
        hours = f"{p.from_time.strftime('%H:%M') if p.from_time else '00:00'}–" \
                f"{p.until_time.strftime('%H:%M') if p.until_time else '24:00'}"
    return " ".join(x for x in (days, hours) if x) or gettext("all day, every day")


def calendar(*, start: date, weeks: int, zone) -> Calendar:
    """Active promotions and price lists that run in the `weeks` weeks from the Monday of `start`, day by day (in
    `zone`): a day is marked when the item's dates cover part of it and its weekdays include it."""
    first = start - timedelta(days=start.weekday())
    days = [first + timedelta(days=i) for i in range(7 * weeks)]
    begin = datetime.combine(days[0], time(0), tzinfo=zone)
    end = datetime.combine(days[-1] + timedelta(days=1), time(0), tzinfo=zone)
    overlapping = Q(is_active=True) & (Q(starts_at__isnull=True) | Q(starts_at__lt=end)) & (
        Q(ends_at__isnull=True) | Q(ends_at__gt=begin))
    today = timezone.localdate(timezone=zone)
    rows = []
    items = [("promotion", p) for p in Promotion.objects.filter(overlapping).select_related("store_group")
             .order_by("starts_at", "code")]
    items += [("price_list", pl) for pl in PriceList.objects.filter(overlapping).select_related("store_group")
              .order_by("starts_at", "code")]
    for kind, obj in items:
        cells = []
        for day in days:
            d0 = datetime.combine(day, time(0), tzinfo=zone)
            d1 = d0 + timedelta(days=1)
            runs = (obj.starts_at is None or obj.starts_at < d1) and (obj.ends_at is None or obj.ends_at > d0)
            if runs and kind == "promotion" and obj.weekdays and day.weekday() not in obj.weekdays:
                runs = False
            partial = runs and ((obj.starts_at is not None and obj.starts_at > d0)
                                or (obj.ends_at is not None and obj.ends_at < d1))
            state = "part" if partial else "on" if runs else ""
            cells.append(" ".join(c for c in (state, "weekend" if day.weekday() >= 5 else "",
                                              "today" if day == today else "") if c))
        scope = f"{_channels_text(obj.channels)} · " + (obj.store_group.name if obj.store_group_id
                                                          else gettext("every store"))
        if kind == "promotion":
            label = f"{obj.code}: {obj.name} ({KIND_LABELS.get(obj.kind, obj.kind)})"
            if obj.tiers:
                scope += " · " + ", ".join(obj.tiers)
            hours = _hours(obj)
        else:
            label = f"{obj.code}: {obj.name} ({gettext('price list')})"
            hours = gettext("all day, every day")
        rows.append(CalendarRow(kind=kind, obj=obj, url=reverse(f"admin:pricing_{obj._meta.model_name}_change",
                                                                  args=[obj.pk]),
                                label=label, scope=scope, hours=hours, cells=cells))
    return Calendar(days=days, rows=rows, today=today)


# --- results per promotion -----------------------------------------------------------------------------------------


@dataclass
class ResultRow:
    key: str
    redemptions: int
    discount: int
    revenue: int


@dataclass
class Results:
    total: ResultRow
    cancelled: int
    by_channel: list[ResultRow]
    by_store: list[ResultRow]
    by_day: list[ResultRow]


def _grouped(queryset: QuerySet, field: str, blank: str = "") -> list[ResultRow]:
    rows = queryset.values(field).annotate(n=Count("pk"), d=Sum("discount_vnd"), r=Sum("revenue_vnd")).order_by(
        "-d", field)
    return [ResultRow(str(row[field] or blank), row["n"], row["d"] or 0, row["r"] or 0) for row in rows]


def promotion_results(promo: Promotion, *, zone) -> Results:
    """Redemptions (applications not cancelled), discount given and revenue of the carts it applied to, in total, by
    channel, by store (web orders without a store under “online”) and by day in `zone`."""
    applied = PromotionApplication.objects.filter(promotion=promo, cancelled=False)
    total = applied.aggregate(n=Count("pk"), d=Sum("discount_vnd"), r=Sum("revenue_vnd"))
    by_day = sorted(_grouped(applied.annotate(day=TruncDate("at", tzinfo=zone)), "day"), key=lambda r: r.key)
    return Results(
        total=ResultRow(gettext("total"), total["n"], total["d"] or 0, total["r"] or 0),
        cancelled=PromotionApplication.objects.filter(promotion=promo, cancelled=True).count(),
        by_channel=_grouped(applied, "channel"),
        by_store=_grouped(applied, "store", blank=gettext("online (no store)")),
        by_day=by_day,
    )


DAYS_CHARTED = 120


def _every_day(rows: list[ResultRow]) -> list[ResultRow]:
    """Each day from the first redemption to the last (at most the last DAYS_CHARTED), days without any at 0, so
    that the chart's columns are a time line."""
    if not rows:
        return []
    found = {r.key: r for r in rows}
    last = date.fromisoformat(max(found))
    first = max(date.fromisoformat(min(found)), last - timedelta(days=DAYS_CHARTED - 1))
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return [found.get(day) or ResultRow(day, 0, 0, 0) for day in days]


RESULT_COLUMNS = ("promotion", "by", "key", "redemptions", "discount_vnd", "revenue_vnd")


def results_rows(promotions: list[Promotion]) -> list[list]:
    rows = []
    zone = timezone.get_current_timezone()
    for promo in promotions:
        res = promotion_results(promo, zone=zone)
        for by, group in (("total", [res.total]), ("channel", res.by_channel), ("store", res.by_store),
                          ("day", res.by_day)):
            rows += [[promo.code, by, "" if by == "total" else r.key, r.redemptions, r.discount, r.revenue]
                     for r in group]
    return [list(RESULT_COLUMNS), *rows]


def _csv_response(filename: str, rows: list[list]) -> HttpResponse:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    response = HttpResponse("\ufeff" + buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


BAR = "#417690"


def bar_chart(css_id: str, rows: list[tuple[str, int]], *, money: bool = False) -> SafeString:
    """Horizontal bars, one per row, labelled with the key and the value: inline SVG, nothing to load."""
    if not rows:
        return format_html('<p class="empty-chart">{}</p>', gettext("Nothing yet."))
    peak = max(v for _k, v in rows) or 1
    label_w, bar_w, row_h = 150, 360, 22
    height = row_h * len(rows) + 4
    bars = format_html_join("", (
        '<g><text x="{}" y="{}" text-anchor="end" font-size="12">{}</text>'
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="' + BAR + '"><title>{}: {}</title></rect>'
        '<text x="{}" y="{}" font-size="12">{}</text></g>'
    ), (
        (label_w - 6, i * row_h + 15, key[:24], label_w, i * row_h + 3, max(round(bar_w * v / peak), 1), row_h - 6,
         key, _vnd(v) if money else group_thousands(v), label_w + max(round(bar_w * v / peak), 1) + 4, i * row_h + 15,
         _vnd(v) if money else group_thousands(v))
        for i, (key, v) in enumerate(rows)
    ))
    width = label_w + bar_w + 110
    return format_html('<svg id="{}" class="chart" role="img" width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>',
                       css_id, width, height, width, height, bars)


def day_chart(css_id: str, rows: list[tuple[str, int]]) -> SafeString:
    """One column per day (redemptions), the first of each month or every seventh day labelled."""
    if not rows:
        return format_html('<p class="empty-chart">{}</p>', gettext("Nothing yet."))
    peak = max(v for _k, v in rows) or 1
    col, height = max(min(600 // len(rows), 24), 4), 140
    cols = format_html_join("", (
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="' + BAR + '"><title>{}: {}</title></rect>{}'
    ), (
        (i * col, 120 - round(110 * v / peak), max(col - 2, 1), round(110 * v / peak), key, group_thousands(v),
         format_html('<text x="{}" y="135" font-size="10">{}</text>', i * col, f"{key[8:10]}/{key[5:7]}")
         if i % 7 == 0 else "")
        for i, (key, v) in enumerate(rows)
    ))
    width = max(col * len(rows), 160)
    return format_html('<svg id="{}" class="chart" role="img" width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>',
                       css_id, width, height, width, height, cols)


# --- codes ---------------------------------------------------------------------------------------------------------


class CodeUsedFilter(admin.SimpleListFilter):
    title = _("used")
    parameter_name = "used"

    def lookups(self, request, model_admin):
        return [("no", _("Never used")), ("yes", _("Used at least once")), ("up", _("Used up"))]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(uses=0)
        if self.value() == "yes":
            return queryset.filter(uses__gt=0)
        if self.value() == "up":
            return queryset.filter(max_uses__isnull=False, uses__gte=F("max_uses"))
        return queryset


class CampaignFilter(admin.SimpleListFilter):
    title = _("campaign")
    parameter_name = "campaign"

    def lookups(self, request, model_admin):
        campaigns = Code.objects.exclude(campaign="").order_by("campaign").values_list("campaign", flat=True)
        return [(c, c) for c in campaigns.distinct()[:200]]

    def queryset(self, request, queryset):
        return queryset.filter(campaign=self.value()) if self.value() else queryset


@admin.register(Code)
class CodeAdmin(PolicyAdmin):
    form = CodeForm
    list_display = ("code", "promotion", "campaign", "member_phone", "max_uses", "uses", "voucher_value",
                    "expires_at", "created_at")
    list_filter = (CampaignFilter, "promotion", CodeUsedFilter)
    search_fields = ("=code", "campaign", "=member_phone")
    search_help_text = _("Exact code or member phone (E.164), or part of a campaign.")
    list_select_related = ("promotion",)
    autocomplete_fields = ("promotion",)
    readonly_fields = ("uses", "points_spent", "voucher_posting_id", "created_at")
    actions = ["export_csv"]
    show_full_result_count = False

    @admin.display(description=_("voucher value"), ordering="value_vnd")
    def voucher_value(self, obj: Code) -> str:
        return _vnd(obj.value_vnd) if obj.value_vnd is not None else "-"

    def get_urls(self):
        return [path("export/", self.admin_site.admin_view(self.export_view), name="pricing_code_export"),
                *super().get_urls()]

    @admin.action(description=_("Export CSV"), permissions=["view"])
    def export_csv(self, request, queryset):
        return self._csv(queryset, "codes.csv")

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The codes of a promotion and/or a campaign as CSV (?promotion=CODE&campaign=NAME)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        codes = self.get_queryset(request)
        promotion, campaign = request.GET.get("promotion", ""), request.GET.get("campaign", "")
        if not promotion and not campaign:
            raise PermissionDenied  # the whole table is not a campaign: name one
        if promotion:
            codes = codes.filter(promotion__code=promotion)
        if campaign:
            codes = codes.filter(campaign=campaign)
        return self._csv(codes, f"codes-{campaign or promotion}.csv")

    def _csv(self, queryset: QuerySet, filename: str) -> HttpResponse:
        buffer = io.StringIO()
        write_codes_csv(queryset.select_related("promotion").order_by("pk").iterator(chunk_size=2000), buffer)
        response = HttpResponse("\ufeff" + buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


# --- delivery fees ------------------------------------------------------------------------------------------------


@admin.register(DeliveryFeeRule)
class DeliveryFeeRuleAdmin(PolicyAdmin):
    form = DeliveryFeeRuleForm
    list_display = ("code", "city_or_any", "max_km", "fee", "free_over", "free_tiers_list", "channels_list",
                    "is_active")
    list_filter = ("is_active", "city")
    search_fields = ("code", "city")

    @admin.display(description=_("city (zone)"), ordering="city")
    def city_or_any(self, obj: DeliveryFeeRule) -> str:
        return obj.city or gettext("anywhere")

    @admin.display(description=_("fee"), ordering="fee_vnd")
    def fee(self, obj: DeliveryFeeRule) -> str:
        return _vnd(obj.fee_vnd)

    @admin.display(description=_("free over"), ordering="free_over_vnd")
    def free_over(self, obj: DeliveryFeeRule) -> str:
        return _vnd(obj.free_over_vnd)

    @admin.display(description=_("free for tiers"))
    def free_tiers_list(self, obj: DeliveryFeeRule) -> str:
        return ", ".join(obj.free_tiers) or "-"

    @admin.display(description=_("channels"))
    def channels_list(self, obj: DeliveryFeeRule) -> str:
        return _channels_text(obj.channels)


# --- what was applied (read-only) --------------------------------------------------------------------------------


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What checkouts and tills recorded: staff look, they do not edit."""


@admin.register(PromotionApplication)
class PromotionApplicationAdmin(ReadOnlyAdmin):
    list_display = ("at", "promotion", "reference", "channel", "store", "code", "discount", "revenue", "cancelled")
    list_filter = ("cancelled", "channel", "promotion")
    search_fields = ("=reference", "=store", "=code")
    list_select_related = ("promotion",)
    date_hierarchy = "at"
    show_full_result_count = False

    @admin.display(description=_("discount"), ordering="discount_vnd")
    def discount(self, obj: PromotionApplication) -> str:
        return _vnd(obj.discount_vnd)

    @admin.display(description=_("revenue"), ordering="revenue_vnd")
    def revenue(self, obj: PromotionApplication) -> str:
        return _vnd(obj.revenue_vnd)


@admin.register(CodeUse)
class CodeUseAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "code", "reference", "status", "channel", "store", "member_phone", "discount",
                    "closed_at")
    list_filter = ("status", "channel")
    search_fields = ("=code__code", "=reference", "=member_phone")
    list_select_related = ("code",)
    show_full_result_count = False

    @admin.display(description=_("discount"), ordering="discount_vnd")
    def discount(self, obj: CodeUse) -> str:
        return _vnd(obj.discount_vnd)


# --- the price-exception queue -----------------------------------------------------------------------------------


class ExceptionStatusFilter(admin.SimpleListFilter):
    """Open exceptions unless asked otherwise: the queue is what is left to review."""

    title = _("status")
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request, model_admin):
        return [*PriceException.Status.choices, (self.ALL, _("All"))]

    def value(self):
        return super().value() or PriceException.Status.OPEN

    def queryset(self, request, queryset):
        if self.value() == self.ALL:
            return queryset
        return queryset.filter(status=self.value())

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


@admin.register(PriceException)
class PriceExceptionAdmin(StoreScopedAdmin, admin.ModelAdmin):
    """Till lines sold at another price than the policy's (the sale stands): reviewed here, store by store."""

    list_display = ("sold", "receipt", "kind", "sku_qty", "policy_charged", "difference", "review", "override")
    list_filter = (ExceptionStatusFilter, "kind", StoreCityFilter, StoreFilter, ("sold_at", admin.DateFieldListFilter))
    search_fields = ("=receipt_id", "=sku", "=store__code")
    search_help_text = _("Exact receipt id, SKU or store code.")
    list_select_related = ("store",)
    date_hierarchy = "sold_at"
    actions = ["accept", "followed_up"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the record is what the till did; reviewing it is an action

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pricing.change_priceexception")

    @admin.display(description=_("sold at"), ordering="sold_at")
    def sold(self, obj: PriceException) -> str:
        return f"{timezone.localtime(obj.sold_at):%d/%m/%Y %H:%M}"

    @admin.display(description=_("store / receipt"), ordering="store__code")
    def receipt(self, obj: PriceException) -> str:
        return format_html("{}<br>{}", obj.store.code, obj.receipt_id)

    @admin.display(description=_("SKU"), ordering="sku")
    def sku_qty(self, obj: PriceException) -> str:
        return f"{obj.sku} × {obj.qty}" if obj.sku else "-"

    @admin.display(description=_("override (staff)"))
    def override(self, obj: PriceException) -> str:
        if not obj.override_reason and not obj.override_staff:
            return obj.detail or "-"
        return f"{obj.override_reason} ({obj.override_staff or '?'})"

    @admin.display(description=_("status"), ordering="status")
    def review(self, obj: PriceException) -> str:
        if obj.reviewed_at is None:
            return obj.get_status_display()
        return format_html("{}<br><small>{}, {}</small>", obj.get_status_display(), obj.reviewed_by,
                           f"{timezone.localtime(obj.reviewed_at):%d/%m %H:%M}")

    @admin.display(description=_("policy / charged"), ordering="expected_vnd")
    def policy_charged(self, obj: PriceException) -> str:
        return format_html("{}<br>{}", _vnd(obj.expected_vnd), _vnd(obj.charged_vnd))

    @admin.display(description=_("policy"), ordering="expected_vnd")
    def policy(self, obj: PriceException) -> str:
        return _vnd(obj.expected_vnd)

    @admin.display(description=_("charged"), ordering="charged_vnd")
    def charged(self, obj: PriceException) -> str:
        return _vnd(obj.charged_vnd)

    @admin.display(description=_("difference"), ordering="difference_vnd")
    def difference(self, obj: PriceException) -> str:
        if obj.difference_vnd < 0:
            return format_html('<span class="below-policy" style="color:#ba2121">{}</span>', _vnd(obj.difference_vnd))
        return _vnd(obj.difference_vnd)

    def _review(self, request: HttpRequest, queryset: QuerySet, status: str) -> None:
        """Open exceptions of the selection (already in the viewer's scope) take the status and the reviewer; one
        reviewed meanwhile by someone else is left as they left it (a conditional update)."""
        ids = list(queryset.values_list("pk", flat=True))
        selected = len(ids)
        done = services.review_exceptions(ids=ids, status=status, reviewer=request.user.get_username())
        label = PriceException.Status(status).label
        self.message_user(request, ngettext("%(n)d exception marked “%(status)s”.",
                                            "%(n)d exceptions marked “%(status)s”.", done)
                          % {"n": done, "status": label}, messages.SUCCESS)
        if selected > done:
            self.message_user(request, ngettext("%(n)d was already reviewed and left as it was.",
                                                "%(n)d were already reviewed and left as they were.", selected - done)
                              % {"n": selected - done}, messages.WARNING)

    @admin.action(description=_("Accept (no follow-up needed)"), permissions=["review"])
    def accept(self, request, queryset):
        self._review(request, queryset, PriceException.Status.ACCEPTED)

    @admin.action(description=_("Followed up with the store"), permissions=["review"])
    def followed_up(self, request, queryset):
        self._review(request, queryset, PriceException.Status.FOLLOWED_UP)
