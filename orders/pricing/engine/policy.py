"""The commercial policy as plain data: what the engine reads, what an offline till receives as its snapshot.

Everything here is JSON-round-trippable (`policy_to_json` / `policy_from_json`), so the website's quote (policy
loaded from the database) and an offline till (policy from its snapshot) evaluate the very same values.
Times are ISO 8601 with an offset; local times of day are "HH:MM" (or "HH:MM:SS") in the store's time zone.
"""

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any


class Kind:
    PERCENT_OFF = "percent_off"  # `percent` % off each targeted line (or the cart)
    AMOUNT_OFF = "amount_off"  # `amount_vnd` off each targeted unit (or once off the cart)
    BUY_X_GET_Y = "buy_x_get_y"  # in every group of buy_qty + get_qty targeted units, the get_qty cheapest at `percent` off
    BUNDLE = "bundle"  # each complete `bundle` ({sku: qty}) for `bundle_price_vnd`
    SPEND_THRESHOLD = "spend_threshold"  # cart ≥ min_spend_vnd: `amount_vnd` (or `percent` %) off the cart

    ALL = (PERCENT_OFF, AMOUNT_OFF, BUY_X_GET_Y, BUNDLE, SPEND_THRESHOLD)


class Target:
    SKU = "sku"
    CATEGORY = "category"
    CART = "cart"

    ALL = (SKU, CATEGORY, CART)


@dataclass(frozen=True)
class PriceList:
    """Prices that override the base price where the list is in force (see engine.prices for the precedence)."""

    code: str
    prices: dict[str, int]  # sku -> unit price VND
    priority: int = 0
    channels: tuple[str, ...] = ()  # empty: every channel
    stores: frozenset[str] | None = None  # store codes (a store group resolved); None: every store
    starts_at: datetime | None = None
    ends_at: datetime | None = None


@dataclass(frozen=True)
class Promotion:
    code: str
    name: str
    kind: str
    target: str = Target.CART
    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    percent: int = 0  # percent_off; buy_x_get_y's discount on the free units (100 = free); spend_threshold's percent
    amount_vnd: int = 0  # amount_off (per unit, or once for the cart); spend_threshold's amount
    buy_qty: int = 0
    get_qty: int = 0
    bundle: tuple[tuple[str, int], ...] = ()  # ((sku, qty), ...)
    bundle_price_vnd: int = 0
    min_spend_vnd: int = 0  # cart promotions: the goods total (after line promotions) needed
    channels: tuple[str, ...] = ()  # empty: every channel
    stores: frozenset[str] | None = None  # None: every store
    tiers: tuple[str, ...] = ()  # empty: everyone, members or not; else members of these tiers only
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekdays: tuple[int, ...] = ()  # 0 = Monday; empty: every day (the store's local date)
    from_time: time | None = None  # local time of day, inclusive
    until_time: time | None = None  # local time of day, exclusive (may be earlier than from_time: over midnight)
    exclusive: bool = False
    priority: int = 0
    requires_code: bool = False
    max_uses: int | None = None  # budget caps: the engine reads what is left of them from the context
    max_uses_per_member: int | None = None
    max_discount_vnd: int | None = None

    @property
    def line_level(self) -> bool:
        """Applied line by line, before the cart's promotions. A bundle and a buy-X-get-Y always are (with the cart
        target, every line is theirs); a percent or amount off is when it targets SKUs or categories."""
        if self.kind in (Kind.BUNDLE, Kind.BUY_X_GET_Y):
            return True
        return self.target != Target.CART and self.kind != Kind.SPEND_THRESHOLD


@dataclass(frozen=True)
class FeeRule:
    """A delivery fee band: orders served from up to `max_km` away (in `city`, when set) pay `fee_vnd`."""

    code: str
    max_km: float
    fee_vnd: int
    city: str = ""  # a zone: the serving store's city; "" for anywhere
    channels: tuple[str, ...] = ()
    free_over_vnd: int | None = None  # goods total (after discounts) from which delivery is free
    free_tiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: int
    base_prices: dict[str, int]  # sku -> the product's base price
    categories: dict[str, str]  # sku -> category
    price_lists: tuple[PriceList, ...] = ()
    promotions: tuple[Promotion, ...] = ()
    fee_rules: tuple[FeeRule, ...] = ()


@dataclass(frozen=True)
class Budget:
    """What is left of a promotion's caps now (None: no cap)."""

    uses_left: int | None = None
    member_uses_left: int | None = None
    vnd_left: int | None = None


@dataclass(frozen=True)
class CodeGrant:
    """A code the customer gave, already checked (exists, in date, uses left, theirs): it unlocks its promotion.
    A voucher carries its own value, which replaces the promotion's amount."""

    code: str
    promotion: str
    value_vnd: int | None = None


@dataclass(frozen=True)
class Context:
    channel: str  # a sales channel's code, or "store" for the tills
    at: datetime  # aware
    timezone: str = "Asia/Ho_Chi_Minh"  # the store's (or the chain's, without a store)
    store: str | None = None
    member: str | None = None  # phone (E.164), for per-member caps
    tier: str | None = None  # None: not a member
    codes: tuple[CodeGrant, ...] = ()
    budgets: dict[str, Budget] = field(default_factory=dict)  # promotion code -> what is left


@dataclass(frozen=True)
class Delivery:
    distance_km: float
    city: str = ""


# --- JSON (the offline till's snapshot) -------------------------------------------------------------------------


def _dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _tm(value: time | None) -> str | None:
    """"HH:MM", or "HH:MM:SS" when the time has seconds (dropping them would price the till otherwise)."""
    if value is None:
        return None
    return value.isoformat(timespec="minutes" if not value.second and not value.microsecond else "auto")


def _parse_tm(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def _stores(value) -> list[str] | None:
    return sorted(value) if value is not None else None


def promotion_to_json(p: Promotion) -> dict[str, Any]:
    return {
        "code": p.code, "name": p.name, "kind": p.kind, "target": p.target, "skus": list(p.skus),
        "categories": list(p.categories), "percent": p.percent, "amount_vnd": p.amount_vnd, "buy_qty": p.buy_qty,
        "get_qty": p.get_qty, "bundle": [[s, q] for s, q in p.bundle], "bundle_price_vnd": p.bundle_price_vnd,
        "min_spend_vnd": p.min_spend_vnd, "channels": list(p.channels), "stores": _stores(p.stores),
        "tiers": list(p.tiers), "starts_at": _dt(p.starts_at), "ends_at": _dt(p.ends_at), "weekdays": list(p.weekdays),
        "from_time": _tm(p.from_time), "until_time": _tm(p.until_time), "exclusive": p.exclusive,
        "priority": p.priority, "requires_code": p.requires_code, "max_uses": p.max_uses,
        "max_uses_per_member": p.max_uses_per_member, "max_discount_vnd": p.max_discount_vnd,
    }


def promotion_from_json(d: dict[str, Any]) -> Promotion:
    return Promotion(
        code=d["code"], name=d.get("name", ""), kind=d["kind"], target=d.get("target", Target.CART),
        skus=tuple(d.get("skus", ())), categories=tuple(d.get("categories", ())), percent=int(d.get("percent", 0)),
        amount_vnd=int(d.get("amount_vnd", 0)), buy_qty=int(d.get("buy_qty", 0)), get_qty=int(d.get("get_qty", 0)),
        bundle=tuple((s, int(q)) for s, q in d.get("bundle", ())), bundle_price_vnd=int(d.get("bundle_price_vnd", 0)),
        min_spend_vnd=int(d.get("min_spend_vnd", 0)), channels=tuple(d.get("channels", ())),
        stores=frozenset(d["stores"]) if d.get("stores") is not None else None, tiers=tuple(d.get("tiers", ())),
        starts_at=_parse_dt(d.get("starts_at")), ends_at=_parse_dt(d.get("ends_at")),
        weekdays=tuple(d.get("weekdays", ())), from_time=_parse_tm(d.get("from_time")),
        until_time=_parse_tm(d.get("until_time")), exclusive=bool(d.get("exclusive", False)),
        priority=int(d.get("priority", 0)), requires_code=bool(d.get("requires_code", False)),
        max_uses=d.get("max_uses"), max_uses_per_member=d.get("max_uses_per_member"),
        max_discount_vnd=d.get("max_discount_vnd"),
    )


def policy_to_json(policy: Policy) -> dict[str, Any]:
    return {
        "version": policy.version,
        "base_prices": dict(sorted(policy.base_prices.items())),
        "categories": dict(sorted(policy.categories.items())),
        "price_lists": [
            {
                "code": pl.code, "priority": pl.priority, "channels": list(pl.channels), "stores": _stores(pl.stores),
                "starts_at": _dt(pl.starts_at), "ends_at": _dt(pl.ends_at), "prices": dict(sorted(pl.prices.items())),
            }
            for pl in policy.price_lists
        ],
        "promotions": [promotion_to_json(p) for p in policy.promotions],
        "fee_rules": [
            {
                "code": r.code, "max_km": r.max_km, "fee_vnd": r.fee_vnd, "city": r.city, "channels": list(r.channels),
                "free_over_vnd": r.free_over_vnd, "free_tiers": list(r.free_tiers),
            }
            for r in policy.fee_rules
        ],
    }


def policy_from_json(d: dict[str, Any]) -> Policy:
    return Policy(
        version=int(d["version"]),
        base_prices={k: int(v) for k, v in d["base_prices"].items()},
        categories=dict(d.get("categories", {})),
        price_lists=tuple(
            PriceList(
                code=pl["code"], prices={k: int(v) for k, v in pl["prices"].items()}, priority=int(pl.get("priority", 0)),
                channels=tuple(pl.get("channels", ())),
                stores=frozenset(pl["stores"]) if pl.get("stores") is not None else None,
                starts_at=_parse_dt(pl.get("starts_at")), ends_at=_parse_dt(pl.get("ends_at")),
            )
            for pl in d.get("price_lists", ())
        ),
        promotions=tuple(promotion_from_json(p) for p in d.get("promotions", ())),
        fee_rules=tuple(
            FeeRule(
                code=r["code"], max_km=float(r["max_km"]), fee_vnd=int(r["fee_vnd"]), city=r.get("city", ""),
                channels=tuple(r.get("channels", ())), free_over_vnd=r.get("free_over_vnd"),
                free_tiers=tuple(r.get("free_tiers", ())),
            )
            for r in d.get("fee_rules", ())
        ),
    )
