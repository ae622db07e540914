"""Price a cart: base prices, price lists, promotions and codes, delivery fee. The rules are written out in
orders/pricing/README.md (precisely enough for a till to implement them); this module is their reference.

Pure: the same cart, context and policy give the same answer, whatever the order of the cart's lines or of the
policy's promotions."""

from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

from .money import cumulative_share, percent_of, prorate
from .policy import (
    Budget,
    CodeGrant,
    Context,
    Delivery,
    FeeRule,
    Kind,
    Policy,
    PriceList,
    Promotion,
    Target,
)


class UnknownSkus(ValueError):
    def __init__(self, skus: list[str]):
        super().__init__(f"Not in the policy: {', '.join(skus)}")
        self.skus = skus


@dataclass(frozen=True)
class CartLine:
    sku: str
    qty: int


@dataclass(frozen=True)
class LineDiscount:
    promotion: str
    amount_vnd: int


@dataclass(frozen=True)
class PricedLine:
    sku: str
    qty: int
    base_price_vnd: int
    unit_price_vnd: int  # after the price lists
    price_source: str  # "base" or the winning price list's code
    gross_vnd: int  # qty × unit price
    discount_vnd: int
    net_vnd: int  # gross - discount: what the line really costs
    discounts: tuple[LineDiscount, ...] = ()


@dataclass(frozen=True)
class Applied:
    promotion: str
    name: str
    kind: str
    discount_vnd: int
    rule: str  # why, in words
    code: str | None = None
    lines: tuple[tuple[str, int], ...] = ()  # (sku, discount on that line)


@dataclass(frozen=True)
class CodeOutcome:
    code: str
    promotion: str
    applied: bool
    reason: str = ""  # when not applied: out_of_scope | conditions_not_met | not_best | budget_exhausted | duplicate


@dataclass(frozen=True)
class PricedCart:
    lines: tuple[PricedLine, ...]
    applied: tuple[Applied, ...]
    codes: tuple[CodeOutcome, ...]
    subtotal_vnd: int  # sum of gross
    discount_vnd: int
    total_vnd: int  # goods: subtotal - discount
    delivery_fee_vnd: int
    fee_rule: str | None
    fee_reason: str
    grand_total_vnd: int  # total + delivery fee
    policy_version: int

    def line(self, sku: str) -> PricedLine:
        return next(line for line in self.lines if line.sku == sku)


# --- prices -----------------------------------------------------------------------------------------------------


def _in_period(starts_at: datetime | None, ends_at: datetime | None, at: datetime) -> bool:
    return (starts_at is None or starts_at <= at) and (ends_at is None or at < ends_at)


def _list_applies(pl: PriceList, ctx: Context) -> bool:
    return (
        (not pl.channels or ctx.channel in pl.channels)
        and (pl.stores is None or (ctx.store is not None and ctx.store in pl.stores))
        and _in_period(pl.starts_at, pl.ends_at, ctx.at)
    )


def _precedence(pl: PriceList) -> tuple:
    """Higher wins: scoped to stores over chain-wide, to channels over every channel, then priority, then the later
    start, then the code (the last resort, so that the answer never depends on the order of the lists)."""
    start = pl.starts_at.timestamp() if pl.starts_at else float("-inf")
    return (pl.stores is not None, bool(pl.channels), pl.priority, start, pl.code)


def unit_prices(policy: Policy, ctx: Context, skus: list[str]) -> dict[str, tuple[int, str]]:
    """sku -> (unit price, its source: "base" or the winning list's code)."""
    lists = sorted((pl for pl in policy.price_lists if _list_applies(pl, ctx)), key=_precedence, reverse=True)
    out = {}
    for sku in skus:
        winner = next((pl for pl in lists if sku in pl.prices), None)
        out[sku] = (winner.prices[sku], winner.code) if winner else (policy.base_prices[sku], "base")
    return out


# --- which promotions are in force ------------------------------------------------------------------------------


def _in_window(p: Promotion, local: datetime) -> bool:
    """The local time of day in [from, until) and the local weekday among the promotion's. A window over midnight
    belongs to the day it opens: Friday 22:00-02:00 runs until Saturday 02:00 and not on Friday before 02:00."""
    t = local.time().replace(tzinfo=None)
    day = local.weekday()
    if p.from_time is not None and p.until_time is not None and p.from_time > p.until_time:
        if t < p.until_time:
            day = (day + 6) % 7  # the small hours of the window opened the evening before
        elif t < p.from_time:
            return False
    else:
        if p.from_time is not None and t < p.from_time:
            return False
        if p.until_time is not None and t >= p.until_time:
            return False
    return not p.weekdays or day in p.weekdays


def out_of_scope(p: Promotion, ctx: Context, local: datetime) -> str:
    """Why the promotion cannot apply in this context ("" when it can, conditions on the cart aside)."""
    if p.channels and ctx.channel not in p.channels:
        return "channel"
    if p.stores is not None and (ctx.store is None or ctx.store not in p.stores):
        return "store"
    if p.tiers and ctx.tier not in p.tiers:
        return "tier"
    if p.max_uses_per_member is not None and ctx.member is None:
        return "member"  # a per-member cap can only be kept for a known member
    if not _in_period(p.starts_at, p.ends_at, ctx.at):
        return "dates"
    if not _in_window(p, local):
        return "time_window"
    return ""


def _exhausted(budget: Budget | None) -> bool:
    if budget is None:
        return False
    return any(v is not None and v <= 0 for v in (budget.uses_left, budget.member_uses_left, budget.vnd_left))


def _uses_left(budget: Budget | None) -> int | None:
    """How many more times the promotion may apply (None: no cap), the chain's and the member's caps together."""
    caps = [v for v in (budget.uses_left, budget.member_uses_left) if v is not None] if budget else []
    return min(caps) if caps else None


# --- applying promotions ----------------------------------------------------------------------------------------


@dataclass
class _Line:
    sku: str
    qty: int
    category: str
    net: int
    discounts: dict[str, int]


@dataclass(frozen=True)
class _Use:
    """One application: a promotion, with the code that unlocked it (a voucher applies once per code)."""

    promotion: Promotion
    grant: CodeGrant | None

    @property
    def key(self) -> str:
        return f"{self.promotion.code}#{self.grant.code}" if self.grant else self.promotion.code

    @property
    def voucher(self) -> bool:
        return self.grant is not None and self.grant.value_vnd is not None

    @property
    def rank(self) -> tuple:
        return (-self.promotion.priority, self.promotion.code, self.grant.code if self.grant else "")

    @property
    def sort_key(self) -> tuple:
        """Line-level promotions, then cart-level ones, then vouchers (money already paid, like a tender: they
        come off what the promotions leave, so a promotion's code never decides whether it counts before them)."""
        return (not self.promotion.line_level, self.voucher, *self.rank)


def _touches(p: Promotion, skus: set[str], categories: set[str]) -> bool:
    """Could this promotion discount anything in the cart? (Those that cannot are left out before the stacking
    choice: the same answer, without evaluating a chain's every deal for every cart.)"""
    if p.kind == Kind.BUNDLE:
        return bool(p.bundle) and all(sku in skus for sku, _ in p.bundle)
    if not p.line_level or p.target == Target.CART:
        return True
    if p.target == Target.SKU:
        return not skus.isdisjoint(p.skus)
    return not categories.isdisjoint(p.categories)


def _targeted(p: Promotion, line: _Line) -> bool:
    if p.target == Target.SKU:
        return line.sku in p.skus
    if p.target == Target.CATEGORY:
        return line.category in p.categories
    return True


def _line_discounts(p: Promotion, lines: list[_Line]) -> tuple[dict[str, int], str]:
    """{sku: discount} of a line-level promotion on the lines as they stand, and the rule in words."""
    hit = [line for line in lines if _targeted(p, line) and line.net > 0]
    if p.kind == Kind.PERCENT_OFF:
        return {line.sku: percent_of(line.net, p.percent) for line in hit}, f"{p.percent}% off"
    if p.kind == Kind.AMOUNT_OFF:
        return {line.sku: min(p.amount_vnd * line.qty, line.net) for line in hit}, f"{p.amount_vnd} VND off each unit"
    if p.kind == Kind.BUY_X_GET_Y:
        group = p.buy_qty + p.get_qty
        if p.get_qty <= 0 or group <= 0:
            return {}, ""
        # Every unit at its line's unit value, dearest first; in each complete group the last get_qty are the cheap ones.
        units = sorted(
            ((Fraction(line.net, line.qty), line.sku) for line in hit for _ in range(line.qty)),
            key=lambda u: (-u[0], u[1]),
        )
        free: dict[str, int] = {}
        for start in range(0, len(units) - group + 1, group):
            for _, sku in units[start + p.buy_qty:start + group]:
                free[sku] = free.get(sku, 0) + 1
        by_sku = {line.sku: line for line in hit}
        out = {sku: percent_of(cumulative_share(by_sku[sku].net, 0, n, by_sku[sku].qty), p.percent)
               for sku, n in free.items()}
        what = "free" if p.percent == 100 else f"{p.percent}% off"
        return out, f"buy {p.buy_qty} get {p.get_qty} {what}"
    if p.kind == Kind.BUNDLE:
        by_sku = {line.sku: line for line in lines if line.net > 0}
        needs: dict[str, int] = {}
        for sku, need in p.bundle:  # a SKU listed twice needs both quantities
            needs[sku] = needs.get(sku, 0) + need
        if not needs or any(sku not in by_sku or need < 1 for sku, need in needs.items()):
            return {}, ""
        skus = sorted(needs)
        count = min(by_sku[sku].qty // needs[sku] for sku in skus)
        if count <= 0:
            return {}, ""
        values = [cumulative_share(by_sku[sku].net, 0, needs[sku] * count, by_sku[sku].qty) for sku in skus]
        saving = sum(values) - count * p.bundle_price_vnd
        if saving <= 0:
            return {}, ""
        return dict(zip(skus, prorate(saving, values), strict=True)), f"{count} × bundle for {p.bundle_price_vnd} VND"
    return {}, ""


def _cart_discount(p: Promotion, grant: CodeGrant | None, goods: int, spend: int) -> tuple[int, str]:
    """A cart promotion's discount on the goods as they stand; `spend` (the goods after the line promotions, before
    any cart promotion or voucher) is what min_spend_vnd is checked against."""
    if goods <= 0 or spend < p.min_spend_vnd:
        return 0, ""
    amount = grant.value_vnd if grant is not None and grant.value_vnd is not None else p.amount_vnd
    needs = f" on a cart of {p.min_spend_vnd} VND or more" if p.min_spend_vnd else ""
    if p.kind == Kind.PERCENT_OFF or (p.kind == Kind.SPEND_THRESHOLD and not amount):
        return percent_of(goods, p.percent), f"{p.percent}% off the cart{needs}"
    if p.kind in (Kind.AMOUNT_OFF, Kind.SPEND_THRESHOLD):
        return min(amount, goods), f"{amount} VND off the cart{needs}"
    return 0, ""


def _cap(discounts: dict[str, int], cap: int | None) -> dict[str, int]:
    total = sum(discounts.values())
    if cap is None or total <= cap:
        return discounts
    skus = sorted(discounts)
    return dict(zip(skus, prorate(max(cap, 0), [discounts[s] for s in skus]), strict=True))


def _run(uses: list[_Use], base: list[_Line], budgets: dict[str, Budget]) -> tuple[list[_Line], list[Applied]]:
    lines = [_Line(b.sku, b.qty, b.category, b.net, {}) for b in base]
    applied: list[Applied] = []
    # A promotion's money cap holds over all its uses in the cart (several vouchers of one promotion).
    money_left = {code: b.vnd_left for code, b in budgets.items() if b.vnd_left is not None}
    spend: int | None = None
    for use in sorted(uses, key=lambda u: u.sort_key):
        p = use.promotion
        if p.line_level:
            discounts, rule = _line_discounts(p, lines)
        else:
            if spend is None:  # the first cart promotion: every line promotion has been applied
                spend = sum(line.net for line in lines)
            amount, rule = _cart_discount(p, use.grant, sum(line.net for line in lines), spend)
            weights = [line.net for line in lines]
            discounts = {line.sku: part for line, part in zip(lines, prorate(amount, weights), strict=True)}
        discounts = _cap({s: d for s, d in discounts.items() if d > 0}, money_left.get(p.code))
        discounts = {s: d for s, d in discounts.items() if d > 0}
        if not discounts:
            continue
        if p.code in money_left:
            money_left[p.code] -= sum(discounts.values())
        for line in lines:
            d = discounts.get(line.sku, 0)
            if d:
                line.net -= d
                line.discounts[use.key] = line.discounts.get(use.key, 0) + d
        applied.append(Applied(
            promotion=p.code, name=p.name, kind=p.kind, discount_vnd=sum(discounts.values()), rule=rule,
            code=use.grant.code if use.grant else None, lines=tuple(sorted(discounts.items())),
        ))
    return lines, applied


# --- the engine ---------------------------------------------------------------------------------------------------


def price_cart(
    policy: Policy, ctx: Context, cart: list[CartLine], *, delivery: Delivery | None = None
) -> PricedCart:
    """The priced cart. Promotions: every stackable one in force together, or one exclusive one alone, whichever
    gives the customer the larger discount (ties: the stackable set, then the exclusive of highest priority, then by
    code); vouchers bought with points go with either. Raises UnknownSkus for SKUs the policy does not price."""
    merged: dict[str, int] = {}
    for line in cart:
        merged[line.sku] = merged.get(line.sku, 0) + line.qty
    skus = sorted(merged)
    missing = [s for s in skus if s not in policy.base_prices]
    if missing:
        raise UnknownSkus(missing)
    prices = unit_prices(policy, ctx, skus)
    base = [_Line(s, merged[s], policy.categories.get(s, ""), prices[s][0] * merged[s], {}) for s in skus]
    local = ctx.at.astimezone(ZoneInfo(ctx.timezone))

    promos = {p.code: p for p in policy.promotions}
    outcomes: dict[str, CodeOutcome] = {}
    uses: list[_Use] = []
    taken: dict[str, int] = {}  # uses per promotion so far: several vouchers of one promotion keep its use cap
    in_cart = set(skus)
    categories = {line.category for line in base}
    for p in sorted(policy.promotions, key=lambda p: p.code):
        if (not p.requires_code and _touches(p, in_cart, categories) and not out_of_scope(p, ctx, local)
                and not _exhausted(ctx.budgets.get(p.code))):
            uses.append(_Use(p, None))
            taken[p.code] = 1
    seen_promotions: set[str] = set()
    for grant in sorted(ctx.codes, key=lambda g: g.code):
        p = promos.get(grant.promotion)
        if p is None or out_of_scope(p, ctx, local):
            outcomes[grant.code] = CodeOutcome(grant.code, grant.promotion, False, "out_of_scope")
        elif _exhausted(ctx.budgets.get(p.code)):
            outcomes[grant.code] = CodeOutcome(grant.code, grant.promotion, False, "budget_exhausted")
        elif grant.value_vnd is None and (not p.requires_code or p.code in seen_promotions):
            # One use per cart: the promotion applies without a code, or another of its codes already unlocks it.
            outcomes[grant.code] = CodeOutcome(grant.code, grant.promotion, False, "duplicate")
        elif (left := _uses_left(ctx.budgets.get(p.code))) is not None and taken.get(p.code, 0) >= left:
            outcomes[grant.code] = CodeOutcome(grant.code, grant.promotion, False, "budget_exhausted")
        else:
            seen_promotions.add(p.code)
            taken[p.code] = taken.get(p.code, 0) + 1
            uses.append(_Use(p, grant))

    # A voucher bought with points is money the member already paid: it goes with every choice.
    vouchers = [u for u in uses if u.voucher]
    rest = [u for u in uses if not u.voucher]
    choices = [[u for u in rest if not u.promotion.exclusive] + vouchers] + [
        [u, *vouchers] for u in sorted((u for u in rest if u.promotion.exclusive), key=lambda u: u.rank)
    ]
    best_lines, best_applied, best_total = base, [], -1
    for choice in choices:
        lines, applied = _run(choice, base, ctx.budgets)
        total = sum(a.discount_vnd for a in applied)
        if total > best_total:
            best_lines, best_applied, best_total = lines, applied, total
    used = {a.code for a in best_applied if a.code}
    for u in uses:
        if u.grant is None or u.grant.code in outcomes:
            continue
        if u.grant.code in used:
            outcomes[u.grant.code] = CodeOutcome(u.grant.code, u.promotion.code, True)
        else:
            reason = "not_best" if _run([u], base, ctx.budgets)[1] else "conditions_not_met"
            outcomes[u.grant.code] = CodeOutcome(u.grant.code, u.promotion.code, False, reason)

    priced = tuple(
        PricedLine(
            sku=line.sku, qty=line.qty, base_price_vnd=policy.base_prices[line.sku],
            unit_price_vnd=prices[line.sku][0], price_source=prices[line.sku][1],
            gross_vnd=prices[line.sku][0] * line.qty, discount_vnd=prices[line.sku][0] * line.qty - line.net,
            net_vnd=line.net,
            discounts=tuple(LineDiscount(k, v) for k, v in sorted(line.discounts.items())),
        )
        for line in best_lines
    )
    subtotal = sum(line.gross_vnd for line in priced)
    total = sum(line.net_vnd for line in priced)
    fee, fee_rule, fee_reason = delivery_fee(policy, ctx, delivery, goods_vnd=total)
    return PricedCart(
        lines=priced, applied=tuple(best_applied), codes=tuple(outcomes[c] for c in sorted(outcomes)),
        subtotal_vnd=subtotal, discount_vnd=subtotal - total, total_vnd=total, delivery_fee_vnd=fee,
        fee_rule=fee_rule, fee_reason=fee_reason, grand_total_vnd=total + fee, policy_version=policy.version,
    )


def delivery_fee(
    policy: Policy, ctx: Context, delivery: Delivery | None, *, goods_vnd: int
) -> tuple[int, str | None, str]:
    """(fee, rule code, why). Pickup (no delivery) is free. The band: rules of the serving store's city before the
    chain-wide ones, the narrowest band that reaches the distance (beyond every band: the widest); then free over the
    band's threshold, or for its tiers."""
    if delivery is None:
        return 0, None, "pickup"
    rules = [r for r in policy.fee_rules if (not r.channels or ctx.channel in r.channels)
             and r.city in ("", delivery.city)]
    if not rules:
        return 0, None, "no delivery fee configured"
    zone = [r for r in rules if r.city == delivery.city and r.city] or [r for r in rules if not r.city]
    reaching = sorted((r for r in zone if delivery.distance_km <= r.max_km), key=lambda r: (r.max_km, r.code))
    rule: FeeRule = reaching[0] if reaching else max(zone, key=lambda r: (r.max_km, r.code))
    if rule.free_over_vnd is not None and goods_vnd >= rule.free_over_vnd:
        return 0, rule.code, f"free over {rule.free_over_vnd} VND"
    if ctx.tier and ctx.tier in rule.free_tiers:
        return 0, rule.code, f"free for {ctx.tier} members"
    return rule.fee_vnd, rule.code, f"up to {rule.max_km:g} km" + (f" in {rule.city}" if rule.city else "")


def with_codes(ctx: Context, codes: tuple[CodeGrant, ...]) -> Context:
    return replace(ctx, codes=codes)
