"""Loyalty configuration, read from Django settings (which read the environment; see the end of o2o/settings.py).

Everything here is configuration, not code: the earn rate, the value of a point, the tiers and their multipliers,
how long online earnings stay pending, when lots expire, how long a checkout hold lives.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    min_spend_vnd: int  # rolling spend over LOYALTY_TIER_WINDOW_DAYS that reaches this tier
    multiplier: Decimal  # earn multiplier


DEFAULT_TIERS = [
    {"code": "member", "name": "Member", "min_spend_vnd": 0, "multiplier": "1"},
    {"code": "silver", "name": "Silver", "min_spend_vnd": 5_000_000, "multiplier": "1.25"},
    {"code": "gold", "name": "Gold", "min_spend_vnd": 20_000_000, "multiplier": "1.5"},
]


def earn_vnd_per_point() -> int:
    """VND paid with money for one base point (rounded down)."""
    return int(getattr(settings, "LOYALTY_EARN_VND_PER_POINT", 10_000))


def point_value_vnd() -> int:
    """What one point is worth as a tender."""
    return int(getattr(settings, "LOYALTY_POINT_VALUE_VND", 100))


def expiry_months() -> int:
    return int(getattr(settings, "LOYALTY_EXPIRY_MONTHS", 12))


def online_pending_days() -> float:
    return float(getattr(settings, "LOYALTY_ONLINE_PENDING_DAYS", 30))


def events_channel() -> str:
    """The sales channel (code) whose webhook receives "points.changed" events, whatever channel made the change:
    points are one balance across channels, and the website shows it."""
    return str(getattr(settings, "LOYALTY_EVENTS_CHANNEL", "website"))


def prepared_statements() -> bool:
    """Prepare the ledger's hot statements once per connection (PostgreSQL). Off behind a pooler that cannot keep
    prepared statements across transactions (PgBouncer before 1.21 in transaction mode)."""
    return bool(getattr(settings, "LOYALTY_PREPARED_STATEMENTS", True))


def hold_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "LOYALTY_HOLD_TTL_SECONDS", 900)))


def max_hold_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "LOYALTY_MAX_HOLD_TTL_SECONDS", 3600)))


def tier_window() -> timedelta:
    return timedelta(days=int(getattr(settings, "LOYALTY_TIER_WINDOW_DAYS", 365)))


def expiring_soon() -> timedelta:
    return timedelta(days=int(getattr(settings, "LOYALTY_EXPIRING_SOON_DAYS", 30)))


def default_region() -> str:
    return getattr(settings, "LOYALTY_PHONE_REGION", "VN")


def tiers() -> list[Tier]:
    """The tiers, lowest first. The lowest must start at 0 spend."""
    raw = getattr(settings, "LOYALTY_TIERS", None) or DEFAULT_TIERS
    out = sorted(
        (Tier(str(t["code"]), str(t["name"]), int(t["min_spend_vnd"]), Decimal(str(t["multiplier"]))) for t in raw),
        key=lambda t: t.min_spend_vnd,
    )
    if not out or out[0].min_spend_vnd != 0:
        raise ValueError("LOYALTY_TIERS: the lowest tier must start at min_spend_vnd 0")
    return out


def tier_for_spend(spend_vnd: int) -> Tier:
    chosen = tiers()[0]
    for tier in tiers():
        if spend_vnd >= tier.min_spend_vnd:
            chosen = tier
    return chosen


def tier_by_code(code: str) -> Tier:
    for tier in tiers():
        if tier.code == code:
            return tier
    return tiers()[0]  # a tier removed from the configuration falls back to the base tier


def next_tier(code: str) -> Tier | None:
    ordered = tiers()
    for index, tier in enumerate(ordered):
        if tier.code == code:
            return ordered[index + 1] if index + 1 < len(ordered) else None
    return ordered[1] if len(ordered) > 1 else None


def online_vest_at(now: datetime) -> datetime | None:
    """When points earned on an online order vest (the return window closes); None when they vest at once."""
    days = online_pending_days()
    return now + timedelta(days=days) if days > 0 else None
