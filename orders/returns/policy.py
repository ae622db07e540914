"""The return policy, from settings (o2o/settings.py, each overridable by an environment variable):

    RETURNS_WINDOW_DAYS                  {"default": 30, "<category>": days}: days from hand-over (delivery,
                                         collection, till sale) within which goods can come back
    RETURNS_NON_RETURNABLE_CATEGORIES    categories that never come back (underwear, face masks)
    RETURNS_NON_RETURNABLE_SKUS          single SKUs that never come back
    RETURNS_ACCEPT_OTHER_STORE_RECEIPTS  a till takes receipts of other stores (default yes)

Pure rules: the services pass in what they read; nothing here touches the database.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings


@dataclass(frozen=True)
class Refusal:
    """One reason a line cannot come back: `code` is the exception's code, `details` names the line."""

    code: str
    details: dict


def window_days(category: str) -> int:
    windows = settings.RETURNS_WINDOW_DAYS
    return int(windows.get(category, windows.get("default", 30)))


def is_returnable(*, sku: str, category: str) -> bool:
    return sku not in settings.RETURNS_NON_RETURNABLE_SKUS and category not in settings.RETURNS_NON_RETURNABLE_CATEGORIES


def accepts_receipt_of(*, receiving_store_id: int, selling_store_id: int) -> bool:
    return receiving_store_id == selling_store_id or bool(settings.RETURNS_ACCEPT_OTHER_STORE_RECEIPTS)


def check_line(*, sku: str, category: str, handed_over_at: datetime, now: datetime) -> Refusal | None:
    """Is this SKU, handed over at `handed_over_at`, returnable now?"""
    if not is_returnable(sku=sku, category=category):
        return Refusal("not_returnable", {"sku": sku, "category": category})
    days = window_days(category)
    closes = handed_over_at + timedelta(days=days)
    if now > closes:
        return Refusal(
            "return_window_closed",
            {"sku": sku, "category": category, "window_days": days, "handed_over_at": handed_over_at.isoformat(),
             "closed_at": closes.isoformat()},
        )
    return None
