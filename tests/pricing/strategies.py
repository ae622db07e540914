"""Hypothesis strategies for the pricing engine: random policies (price lists, promotions of every kind, fee rules),
contexts (channel, store, time, member and tier, codes and vouchers, budgets), carts and deliveries. Pure data: other
tests may reuse them, e.g. to create the same SKUs in the database and compare the services with the engine.

    @given(scenarios())
    def test_x(scenario):
        policy, ctx, cart, delivery = scenario
"""

from datetime import UTC, datetime, time, timedelta, timezone

from hypothesis import strategies as st

from orders.pricing.engine import (
    Budget,
    CartLine,
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

# Monday 2 March 2026, 10:00 in Ho Chi Minh City; everything random happens within a few days of it.
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
SKUS = ("A1", "A2", "B1", "B2", "C1", "C2")
CATEGORIES = {"A1": "drinks", "A2": "drinks", "B1": "bakery", "B2": "bakery", "C1": "goods", "C2": ""}
CHANNELS = ("website", "store")
STORES = ("HCM-Q1", "HCM-Q3", "HN-1")
TIERS = ("silver", "gold")
CITIES = ("", "HCM", "HN")
TIMEZONES = ("Asia/Ho_Chi_Minh", "UTC", "America/New_York")
MEMBERS = ("+84901000001", "+84901000002")
VOUCHER_PROMOTION = "points-voucher"

# Strategies are built once here (building them inside the composites on every draw costs more than drawing).
# Round prices mostly (as shops set them), odd ones too (so that rounding down and remainders show).
amounts = st.one_of(st.integers(0, 300).map(lambda k: k * 1_000), st.integers(0, 300_000))
small_amounts = st.one_of(st.integers(0, 60).map(lambda k: k * 1_000), st.integers(0, 60_000))
percents = st.one_of(st.sampled_from((5, 10, 15, 20, 25, 33, 50, 100)), st.integers(0, 100))
_offsets = st.sampled_from((UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-5))))


def moments(*, hours: int = 96):
    """A moment within `hours` of T0, to the second (in UTC or another offset: the same instant either way)."""
    return st.builds(lambda s, tz: (T0 + timedelta(seconds=s)).astimezone(tz),
                     st.integers(-hours * 3600, hours * 3600), _offsets)


times_of_day = st.one_of(
    st.builds(time, st.integers(0, 23), st.sampled_from((0, 0, 30))),
    st.builds(time, st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)),
)
_maybe_moment = st.one_of(st.none(), moments())
_maybe_time = st.one_of(st.none(), times_of_day)
_channels = st.one_of(st.just(()), st.sampled_from(CHANNELS).map(lambda c: (c,)))
_stores = st.one_of(st.none(), st.lists(st.sampled_from(STORES), min_size=1, max_size=2, unique=True).map(frozenset))
_tiers = st.one_of(st.just(()), st.sampled_from(TIERS).map(lambda t: (t,)))
_skus = st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True).map(tuple)
_categories = st.lists(st.sampled_from(("drinks", "bakery", "goods")), min_size=1, max_size=2, unique=True).map(tuple)
_weekdays = st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True).map(tuple)
_bundles = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 2)), min_size=1, max_size=3,
                    unique_by=lambda t: t[0]).map(tuple)
_maybe_amount = st.one_of(st.just(0), amounts)
_price_rows = st.dictionaries(st.sampled_from(SKUS), amounts, max_size=len(SKUS))
_cap_uses = st.one_of(st.none(), st.integers(1, 5))
_cap_member = st.one_of(st.none(), st.integers(1, 2))
_cap_money = st.one_of(st.none(), amounts)
_km = st.sampled_from((1.5, 3, 5, 10, 20))
_free_over = st.one_of(st.none(), amounts)


@st.composite
def price_lists(draw, code: str) -> PriceList:
    return PriceList(code=code, prices=draw(_price_rows), priority=draw(st.integers(0, 2)), channels=draw(_channels),
                     stores=draw(_stores), starts_at=draw(_maybe_moment), ends_at=draw(_maybe_moment))


@st.composite
def promotions(draw, code: str) -> Promotion:
    """A promotion as the admin would accept it (percent 0-100, amounts ≥ 0, quantities ≥ 1), the fields its kind
    reads drawn, with or without scopes, dates, time windows, codes and caps."""
    kind = draw(st.sampled_from(Kind.ALL))
    f: dict = {"kind": kind, "target": draw(st.sampled_from(Target.ALL))}
    if f["target"] == Target.SKU:
        f["skus"] = draw(_skus)
    elif f["target"] == Target.CATEGORY:
        f["categories"] = draw(_categories)
    if kind == Kind.PERCENT_OFF:
        f["percent"] = draw(percents)
    elif kind == Kind.AMOUNT_OFF:
        f["amount_vnd"] = draw(small_amounts)
    elif kind == Kind.BUY_X_GET_Y:
        f.update(buy_qty=draw(st.integers(1, 3)), get_qty=draw(st.integers(1, 2)), percent=draw(percents))
    elif kind == Kind.BUNDLE:
        f.update(bundle=draw(_bundles), bundle_price_vnd=draw(amounts))
    else:
        f.update(amount_vnd=draw(small_amounts), percent=draw(percents), min_spend_vnd=draw(amounts))
    if not f["target"] == Target.CART and kind != Kind.SPEND_THRESHOLD:
        f["min_spend_vnd"] = draw(_maybe_amount)
    # Which optional parts it has, from one draw: scopes, dates and caps one in four, a time window one in eight
    # (so that most promotions are in force and several often apply together).
    options = draw(st.integers(0, 2**11 - 1))
    if options & 3 == 3:
        f.update(channels=draw(_channels), stores=draw(_stores))
    if options & 12 == 12:
        f.update(starts_at=draw(_maybe_moment), ends_at=draw(_maybe_moment))
    if options & 112 == 112:
        f.update(weekdays=draw(_weekdays), from_time=draw(_maybe_time), until_time=draw(_maybe_time))
    if options & 384 == 384:
        f.update(max_uses=draw(_cap_uses), max_uses_per_member=draw(_cap_member), max_discount_vnd=draw(_cap_money))
    if options & 1536 == 1536:
        f["tiers"] = draw(_tiers)
    return Promotion(code=code, name=f"Promotion {code}", exclusive=draw(st.integers(0, 2)) == 0,
                     priority=draw(st.integers(0, 3)), requires_code=draw(st.integers(0, 4)) == 0, **f)


@st.composite
def fee_rules(draw, code: str) -> FeeRule:
    return FeeRule(code=code, max_km=draw(_km), fee_vnd=draw(small_amounts), city=draw(st.sampled_from(CITIES)),
                   channels=draw(_channels), free_over_vnd=draw(_free_over), free_tiers=draw(_tiers))


def voucher_promotion() -> Promotion:
    """The points vouchers' promotion, as orders.pricing.vouchers makes it: stackable, code only, cart amount off."""
    return Promotion(code=VOUCHER_PROMOTION, name="Voucher bought with points", kind=Kind.AMOUNT_OFF,
                     target=Target.CART, requires_code=True)


_base_prices = st.tuples(*[amounts] * len(SKUS))


@st.composite
def policies(draw, *, max_promotions: int = 6, max_price_lists: int = 3, max_fee_rules: int = 4) -> Policy:
    """A policy over SKUS: base prices, price lists, promotions (codes P0, P1, ...; with or without the points
    vouchers' promotion) and delivery fee rules, all with unique codes."""
    n_lists = draw(st.integers(0, max_price_lists))
    n_promos = draw(st.integers(0, max_promotions))
    n_fees = draw(st.integers(0, max_fee_rules))
    promos = [draw(promotions(f"P{i}")) for i in range(n_promos)]
    if draw(st.booleans()):
        promos.append(voucher_promotion())
    return Policy(
        version=draw(st.integers(1, 10_000)),
        base_prices=dict(zip(SKUS, draw(_base_prices), strict=True)),
        categories=dict(CATEGORIES),
        price_lists=tuple(draw(price_lists(f"L{i}")) for i in range(n_lists)),
        promotions=tuple(promos),
        fee_rules=tuple(draw(fee_rules(f"F{i}")) for i in range(n_fees)),
    )


@st.composite
def contexts(draw, policy: Policy | None = None) -> Context:
    """A context near T0. With a policy: codes for its promotions (coupons, vouchers with a value, codes of no
    promotion) and what is left of some promotions' budgets."""
    member = draw(_members)
    codes: list[CodeGrant] = []
    budgets: dict[str, Budget] = {}
    if policy is not None and policy.promotions:
        names = [p.code for p in policy.promotions] + ["NO-SUCH-PROMOTION"]
        for i in range(draw(st.integers(0, 4))):
            codes.append(CodeGrant(code=f"CODE{i}", promotion=names[draw(st.integers(0, len(names) - 1))]))
        if any(p.code == VOUCHER_PROMOTION for p in policy.promotions):
            for i in range(draw(st.integers(0, 2))):
                codes.append(CodeGrant(code=f"V{i}", promotion=VOUCHER_PROMOTION, value_vnd=draw(_voucher_values)))
        for _ in range(draw(st.integers(0, 3))):
            budgets[names[draw(st.integers(0, len(names) - 2))]] = Budget(
                uses_left=draw(_uses_left), member_uses_left=draw(_uses_left), vnd_left=draw(_money_left))
    return Context(
        channel=draw(st.sampled_from(CHANNELS)), at=draw(_context_moments), timezone=draw(st.sampled_from(TIMEZONES)),
        store=draw(_context_stores), member=member, tier=draw(_context_tiers) if member else None,
        codes=tuple(codes), budgets=budgets,
    )


_members = st.one_of(st.none(), st.sampled_from(MEMBERS))
_voucher_values = st.integers(1, 200).map(lambda k: k * 1_000)
_uses_left = st.one_of(st.none(), st.integers(0, 2))
_money_left = st.one_of(st.none(), st.integers(-1_000, 100_000))
_context_moments = moments(hours=72)
_context_stores = st.one_of(st.none(), st.sampled_from(STORES))
_context_tiers = st.one_of(st.none(), st.sampled_from(TIERS))


_cart_lines = st.lists(st.builds(CartLine, st.sampled_from(SKUS), st.integers(1, 5)), min_size=1, max_size=6)


def carts(policy: Policy | None = None, *, max_lines: int = 6, max_qty: int = 5):
    """Cart lines of the policy's SKUs (a SKU may come on several lines)."""
    if (policy is None or sorted(policy.base_prices) == sorted(SKUS)) and (max_lines, max_qty) == (6, 5):
        return _cart_lines
    skus = sorted(policy.base_prices) if policy is not None else list(SKUS)
    return st.lists(st.builds(CartLine, st.sampled_from(skus), st.integers(1, max_qty)), min_size=1,
                    max_size=max_lines)


_deliveries = st.one_of(st.none(), st.builds(Delivery, st.floats(0, 30, allow_nan=False), st.sampled_from(CITIES)))


def deliveries():
    """Pickup (None) or a delivery at some distance, in a city with or without its own fee zone."""
    return _deliveries


@st.composite
def scenarios(draw):
    """(policy, context, cart, delivery) drawn together."""
    policy = draw(policies())
    return policy, draw(contexts(policy)), draw(carts(policy)), draw(_deliveries)
