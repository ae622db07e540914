"""Money and points in the admin, grouped the way the active language writes numbers.

{{ amount|vnd }} -> "398,000 ₫" in English, "398.000 ₫" in Vietnamese; {{ n|points }} -> "2,000 points" /
"2.000 điểm". The Python functions serve admin display methods (rendered while the request's language is active).

Django's vi format module sets the separators but no NUMBER_GROUPING (and the setting defaults to 0, no grouping),
so the grouping of three is passed here explicitly rather than relying on number_format(force_grouping=True)."""

from django import template
from django.utils import numberformat
from django.utils.formats import get_format
from django.utils.translation import ngettext

register = template.Library()

CURRENCY = "₫"


def group_thousands(number: int) -> str:
    """12345678 -> "12,345,678" (English) or "12.345.678" (Vietnamese)."""
    return numberformat.format(
        int(number),
        get_format("DECIMAL_SEPARATOR"),
        decimal_pos=0,
        grouping=3,
        thousand_sep=get_format("THOUSAND_SEPARATOR"),
        force_grouping=True,
    )


def format_vnd(amount: int | None) -> str:
    """398000 -> "398,000 ₫" / "398.000 ₫"; None -> "-" (no price)."""
    if amount is None or amount == "":
        return "-"
    return f"{group_thousands(amount)} {CURRENCY}"


def format_points(points: int | None) -> str:
    """2000 -> "2,000 points" / "2.000 điểm"."""
    if points is None or points == "":
        return "-"
    return ngettext("%(points)s point", "%(points)s points", abs(int(points))) % {"points": group_thousands(points)}


@register.filter(name="vnd", is_safe=True)
def vnd_filter(amount) -> str:
    return format_vnd(amount)


@register.filter(name="points", is_safe=True)
def points_filter(points) -> str:
    return format_points(points)


@register.filter(name="grouped", is_safe=True)
def grouped_filter(number) -> str:
    """A count with thousands separators (units, orders): {{ n|grouped }}."""
    if number is None or number == "":
        return ""
    return group_thousands(number)
