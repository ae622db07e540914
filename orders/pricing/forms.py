"""Forms of the pricing admin: the policy's JSON lists as fields people can fill in (channels, tiers and weekdays as
check boxes, SKUs and categories as comma-separated text, a bundle as "SKU qty" lines), the promotion form that
refuses what orders.pricing.services.check_promotion refuses, the price preview, the generate-codes form, and the
codes CSV shared by the admin and the generate_codes command."""

import csv
import re
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from inventory.models import Store
from loyalty import conf as loyalty_conf
from loyalty.exceptions import InvalidPhone
from loyalty.phones import normalize_phone
from o2o.models import SalesChannel

from . import services
from .exceptions import InvalidPromotion
from .models import Code, DeliveryFeeRule, PriceList, Promotion, StoreGroup

# The admin's own style for a horizontal radio list (radio_fields with admin.HORIZONTAL), for check boxes.
INLINE_CHECKBOXES = forms.CheckboxSelectMultiple(attrs={"class": "radiolist inline"})

WEEKDAYS = [
    (0, _("Monday")), (1, _("Tuesday")), (2, _("Wednesday")), (3, _("Thursday")), (4, _("Friday")),
    (5, _("Saturday")), (6, _("Sunday")),
]


def channel_choices(current: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Every sales channel's code, the tills' channel, and any code already saved that is neither (a channel since
    removed), so that saving a form never drops it silently."""
    till = settings.PRICING_TILL_CHANNEL
    choices = [(code, f"{name} ({code})") for code, name in SalesChannel.objects.order_by("code").values_list("code", "name")]
    known = {code for code, _label in choices}
    if till not in known:
        choices.append((till, gettext("Stores' tills (%(code)s)") % {"code": till}))
        known.add(till)
    choices += [(code, code) for code in current if code not in known]
    return choices


def tier_choices(current: Iterable[str] = ()) -> list[tuple[str, str]]:
    choices = [(t.code, gettext(t.name)) for t in loyalty_conf.tiers()]
    known = {code for code, _label in choices}
    return choices + [(code, code) for code in current if code not in known]


class CommaListField(forms.CharField):
    """A JSON list of strings, edited as "a, b, c"."""

    def __init__(self, *, upper: bool = False, **kwargs):
        self.upper = upper
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 60}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value) -> list[str]:
        if isinstance(value, list | tuple):
            items = [str(v) for v in value]
        else:
            items = re.split(r"[,\n;]", super().to_python(value) or "")
        out: list[str] = []
        for item in items:
            item = item.strip().upper() if self.upper else item.strip()
            if item and item not in out:
                out.append(item)
        return out


class BundleField(forms.CharField):
    """A bundle as lines "SKU qty" (or "SKU x qty"), saved as [["SKU", qty], ...]."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return "\n".join(f"{sku} {qty}" for sku, qty in value)
        return value

    def to_python(self, value) -> list[list]:
        if isinstance(value, list | tuple):
            return [[str(s), int(q)] for s, q in value]
        return [[sku, qty] for sku, qty in parse_cart(super().to_python(value) or "").items()]


_CART_LINE = re.compile(r"^\s*(?P<sku>[^\s,;]+)(?:\s*[x×*]?\s*(?P<qty>-?\d+))?\s*$", re.IGNORECASE)


def parse_cart(text: str) -> dict[str, int]:
    """Lines (or commas) of "SKU qty"; the quantity defaults to 1; a SKU given twice adds up. Raises
    forms.ValidationError naming the line it cannot read."""
    cart: dict[str, int] = {}
    for raw in re.split(r"[\n,;]", text or ""):
        if not raw.strip():
            continue
        match = _CART_LINE.match(raw)
        qty = int(match["qty"]) if match and match["qty"] else 1
        if not match or qty < 1:
            raise forms.ValidationError(
                _("Cannot read “%(line)s”: write one SKU and a quantity of at least 1 per line, e.g. AO-THUN-M 2."),
                params={"line": raw.strip()}, code="cart_line",
            )
        cart[match["sku"]] = cart.get(match["sku"], 0) + qty
    return cart


class ScopedPolicyForm(forms.ModelForm):
    """Channels as check boxes (the sales channels and the tills), for the price lists and promotions."""

    channels = forms.MultipleChoiceField(
        label=capfirst(_("channels")), required=False, widget=INLINE_CHECKBOXES,
        help_text=_("None ticked: every channel."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channels"].choices = channel_choices(self.instance.channels or ())


class StoreGroupForm(forms.ModelForm):
    fill_city = forms.ChoiceField(
        label=capfirst(_("add every store of a city")), required=False,
        help_text=_("Adds the city's stores (active or not) to those chosen above when you save."),
    )

    class Meta:
        model = StoreGroup
        fields = ("code", "name", "basis", "stores")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cities = Store.objects.exclude(city="").order_by("city").values_list("city", flat=True).distinct()
        self.fields["fill_city"].choices = [("", "---------")] + [(c, c) for c in cities]


class PriceListForm(ScopedPolicyForm):
    class Meta:
        model = PriceList
        fields = ("code", "name", "is_active", "priority", "channels", "store_group", "starts_at", "ends_at")


class PromotionForm(ScopedPolicyForm):
    skus = CommaListField(label=_("SKUs"), help_text=_("Comma-separated, e.g. AO-THUN-M, NON-LA."))
    categories = CommaListField(label=capfirst(_("categories")), help_text=_("Comma-separated product categories."))
    bundle = BundleField(label=capfirst(_("bundle")), help_text=_("One “SKU quantity” per line, e.g. AO-THUN-M 1."))
    tiers = forms.MultipleChoiceField(
        label=capfirst(_("member tiers")), required=False, widget=INLINE_CHECKBOXES,
        help_text=_("None ticked: everyone, members or not."),
    )
    weekdays = forms.TypedMultipleChoiceField(
        label=capfirst(_("weekdays")), choices=WEEKDAYS, coerce=int, required=False, widget=INLINE_CHECKBOXES,
        help_text=_("None ticked: every day (the store's local date)."),
    )

    class Meta:
        model = Promotion
        fields = (
            "code", "name", "campaign", "is_active", "kind", "target", "skus", "categories", "percent", "amount_vnd",
            "buy_qty", "get_qty", "bundle", "bundle_price_vnd", "min_spend_vnd", "channels", "store_group", "tiers",
            "starts_at", "ends_at", "weekdays", "from_time", "until_time", "priority", "exclusive", "requires_code",
            "max_uses", "max_uses_per_member", "max_discount_vnd",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tiers"].choices = tier_choices(self.instance.tiers or ())

    def clean(self):
        data = super().clean()
        checked = {name: data.get(name, getattr(self.instance, name, None)) for name in self._meta.fields}
        try:
            services.check_promotion(checked)
        except InvalidPromotion as exc:
            for field, message in (exc.details or {}).items():
                target = field if field in self.fields else None
                if target and self.has_error(target):
                    continue  # already refused by the field itself (e.g. a percent over 100)
                self.add_error(target, gettext(message))
        return data


class CodeForm(forms.ModelForm):
    class Meta:
        model = Code
        fields = ("code", "promotion", "campaign", "member_phone", "max_uses", "value_vnd", "expires_at")

    def clean_code(self) -> str:
        return services.normalize_code(self.cleaned_data["code"])

    def clean_member_phone(self) -> str:
        phone = self.cleaned_data.get("member_phone") or ""
        if not phone:
            return ""
        try:
            return normalize_phone(phone)
        except InvalidPhone:
            raise forms.ValidationError(_("Not a valid phone number."), code="phone") from None

    def clean_value_vnd(self):
        value = self.cleaned_data.get("value_vnd")
        if value is not None and value <= 0:
            raise forms.ValidationError(_("A voucher's value is above 0 (or empty for the promotion's own amount)."))
        return value

    def clean_max_uses(self):
        max_uses = self.cleaned_data.get("max_uses")
        if max_uses is not None and max_uses < self.instance.uses:
            raise forms.ValidationError(
                _("Already used %(uses)d times: allow at least that many."), params={"uses": self.instance.uses}
            )
        return max_uses


class DeliveryFeeRuleForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        label=capfirst(_("channels")), required=False, widget=INLINE_CHECKBOXES,
        help_text=_("None ticked: every channel."),
    )
    free_tiers = forms.MultipleChoiceField(
        label=capfirst(_("free for tiers")), required=False, widget=INLINE_CHECKBOXES,
    )

    class Meta:
        model = DeliveryFeeRule
        fields = ("code", "city", "max_km", "fee_vnd", "free_over_vnd", "free_tiers", "channels", "is_active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channels"].choices = channel_choices(self.instance.channels or ())
        self.fields["free_tiers"].choices = tier_choices(self.instance.free_tiers or ())

    def clean_free_over_vnd(self):
        value = self.cleaned_data.get("free_over_vnd")
        if value is not None and value < 0:
            raise forms.ValidationError(_("Cannot be negative."))
        return value


# --- the price preview -------------------------------------------------------------------------------------------


class PreviewForm(forms.Form):
    """“This cart, this store, this time: what would it cost”. Every field has a default except the cart."""

    prefix = "preview"

    cart = forms.CharField(
        label=capfirst(_("cart")), widget=forms.Textarea(attrs={"rows": 4, "cols": 30}),
        help_text=_("One “SKU quantity” per line, e.g. AO-THUN-M 2."),
    )
    channel = forms.ChoiceField(label=capfirst(_("channel")))
    store = forms.ModelChoiceField(
        label=capfirst(_("store")), queryset=Store.objects.none(), to_field_name="code", required=False,
        help_text=_("Empty: a quote without a store (the website before a store is chosen)."),
    )
    member_phone = forms.CharField(label=capfirst(_("member phone")), required=False, max_length=25)
    codes = CommaListField(label=capfirst(_("codes")), upper=True, help_text=_("Comma-separated coupon or voucher codes."))
    at = forms.DateTimeField(
        label=capfirst(_("time")), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text=_("Empty: now."),
    )
    distance_km = forms.FloatField(
        label=capfirst(_("delivery distance (km)")), required=False, min_value=0,
        help_text=_("Empty: pickup (no delivery fee)."),
    )

    def __init__(self, *args, stores=None, channels: Iterable[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = channel_choices(channels)
        self.fields["store"].queryset = (stores if stores is not None else Store.objects.all()).order_by("code")

    def clean_cart(self) -> dict[str, int]:
        cart = parse_cart(self.cleaned_data["cart"])
        if not cart:
            raise forms.ValidationError(_("Put at least one SKU in the cart."), code="empty")
        return cart

    def clean_member_phone(self) -> str | None:
        phone = self.cleaned_data.get("member_phone")
        if not phone:
            return None
        try:
            return normalize_phone(phone)
        except InvalidPhone:
            raise forms.ValidationError(_("Not a valid phone number."), code="phone") from None


# --- generating codes -----------------------------------------------------------------------------------------------


class GenerateCodesForm(forms.Form):
    count = forms.IntegerField(label=capfirst(_("how many codes")), min_value=1, max_value=100_000, initial=100)
    prefix = forms.CharField(
        label=capfirst(_("prefix")), required=False, max_length=12,
        help_text=_("Letters and digits put before the random part, e.g. TET25-."),
    )
    max_uses = forms.IntegerField(
        label=capfirst(_("uses allowed per code")), required=False, min_value=1, initial=1,
        help_text=_("1 for single-use; empty for unlimited."),
    )
    expires_at = forms.DateTimeField(
        label=capfirst(_("expires at")), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    campaign = forms.CharField(
        label=capfirst(_("campaign")), required=False, max_length=80,
        help_text=_("Empty: the promotion's own campaign."),
    )

    def clean_prefix(self) -> str:
        prefix = services.normalize_code(self.cleaned_data.get("prefix") or "")
        if not re.fullmatch(r"[A-Z0-9_-]*", prefix):
            raise forms.ValidationError(_("Letters, digits, “-” and “_” only."), code="prefix")
        return prefix


def end_of_day(day, tz_name: str | None = None) -> datetime:
    """A date given as the last valid day: the code expires at the start of the next day, in the chain's zone."""
    zone = ZoneInfo(tz_name or settings.PRICING_DEFAULT_TIMEZONE)
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


# --- the codes CSV (the admin's export and the generate_codes command) --------------------------------------------

CODE_COLUMNS = ("code", "promotion", "campaign", "max_uses", "uses", "expires_at", "member")


def write_codes_csv(codes: Iterable[Code], stream) -> int:
    """Write `codes` (with their promotion selected) as CSV to `stream`. Returns the rows written."""
    writer = csv.writer(stream)
    writer.writerow(CODE_COLUMNS)
    rows = 0
    for code in codes:
        writer.writerow([
            code.code, code.promotion.code, code.campaign, "" if code.max_uses is None else code.max_uses, code.uses,
            timezone.localtime(code.expires_at).isoformat() if code.expires_at else "", code.member_phone,
        ])
        rows += 1
    return rows
