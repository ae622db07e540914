"""Properties of the pricing engine over random policies, contexts and carts (tests/pricing/strategies.py): totals
add up and are never negative, the answer is deterministic and independent of the order of anything, the stacking
rule holds, the offline till's snapshot prices as the website does, and a line refunded unit by unit gives back
exactly what it cost. Pure: no database."""

import json
import random
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.pricing import selectors
from orders.pricing.engine import (
    cumulative_share,
    out_of_scope,
    policy_from_json,
    policy_to_json,
    price_cart,
    prorate,
)
from tests.pricing.strategies import VOUCHER_PROMOTION, scenarios

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def priced_of(scenario):
    policy, ctx, cart, delivery = scenario
    return price_cart(policy, ctx, cart, delivery=delivery)


def voucher_codes(ctx) -> set[str]:
    return {g.code for g in ctx.codes if g.value_vnd is not None}


@PROPERTY
@given(scenarios())
def test_a_priced_cart_adds_up_keeps_scope_budgets_and_the_stacking_rule(scenario):
    """One random cart, context and policy: every invariant of the answer (generating the inputs costs more than
    pricing, so they are all checked on each)."""
    policy, ctx, cart, delivery = scenario
    priced = priced_of(scenario)
    check_totals(priced, policy, cart)
    check_scope_and_budgets(priced, policy, ctx)
    check_stacking(priced, policy, ctx, cart, delivery)
    for line in priced.lines:
        check_refund(line.net_vnd, [1] * line.qty)


def check_totals(priced, policy, cart) -> None:
    """The total is never negative, no line's net is; lines, discounts and totals add up."""
    qty: dict[str, int] = {}
    for line in cart:
        qty[line.sku] = qty.get(line.sku, 0) + line.qty
    assert [(line.sku, line.qty) for line in priced.lines] == sorted(qty.items())
    for line in priced.lines:
        assert line.gross_vnd == line.qty * line.unit_price_vnd >= 0
        assert 0 <= line.net_vnd <= line.gross_vnd
        assert line.discount_vnd == sum(d.amount_vnd for d in line.discounts) == line.gross_vnd - line.net_vnd
        assert all(d.amount_vnd > 0 for d in line.discounts)
        assert line.discount_vnd == sum(dict(a.lines).get(line.sku, 0) for a in priced.applied)
    assert priced.total_vnd == sum(line.net_vnd for line in priced.lines) == priced.subtotal_vnd - priced.discount_vnd
    assert priced.subtotal_vnd == sum(line.gross_vnd for line in priced.lines)
    assert priced.discount_vnd == sum(a.discount_vnd for a in priced.applied)
    assert all(a.discount_vnd == sum(d for _, d in a.lines) > 0 for a in priced.applied)
    assert priced.total_vnd >= 0 and priced.delivery_fee_vnd >= 0
    assert priced.grand_total_vnd == priced.total_vnd + priced.delivery_fee_vnd
    assert priced.policy_version == policy.version


def check_scope_and_budgets(priced, policy, ctx) -> None:
    """What applies is in force here and now, unlocked by a code when it needs one, within what is left of its caps;
    each code given has one outcome, applied exactly when a discount carries it."""
    promos = {p.code: p for p in policy.promotions}
    local = ctx.at.astimezone(ZoneInfo(ctx.timezone))
    for a in priced.applied:
        p = promos[a.promotion]
        assert out_of_scope(p, ctx, local) == ""
        assert a.code is not None or not p.requires_code
    assert [c.code for c in priced.codes] == sorted({g.code for g in ctx.codes})
    assert {c.code for c in priced.codes if c.applied} == {a.code for a in priced.applied if a.code}
    for code, budget in ctx.budgets.items():
        mine = [a for a in priced.applied if a.promotion == code]
        if budget.vnd_left is not None:
            assert sum(a.discount_vnd for a in mine) <= max(budget.vnd_left, 0)
        for left in (budget.uses_left, budget.member_uses_left):
            if left is not None:
                assert len(mine) <= max(left, 0)


def check_stacking(priced, policy, ctx, cart, delivery) -> None:
    """An exclusive promotion goes alone (vouchers aside), and the choice is never worse for the customer than the
    stackable set, nor than any exclusive promotion in force (each with the vouchers)."""
    promos = {p.code: p for p in policy.promotions}
    vouchers = voucher_codes(ctx)
    others = [a for a in priced.applied if a.code not in vouchers]
    if any(promos[a.promotion].exclusive for a in others):
        assert len(others) == 1
    stackable = replace(policy, promotions=tuple(p for p in policy.promotions if not p.exclusive))
    assert price_cart(stackable, ctx, cart, delivery=delivery).discount_vnd <= priced.discount_vnd
    voucher_promos = tuple(p for p in policy.promotions if p.code == VOUCHER_PROMOTION)
    for p in policy.promotions:
        if p.exclusive and p.code != VOUCHER_PROMOTION:
            alone = price_cart(replace(policy, promotions=(p, *voucher_promos)), ctx, cart, delivery=delivery)
            if any(a.promotion == p.code for a in alone.applied):
                assert alone.discount_vnd <= priced.discount_vnd


def check_refund(net_vnd: int, chunks: list[int]) -> None:
    """Refunding a line's units in these chunks (the refund rule, orders.returns) gives back its net exactly in the
    end and never more than it on the way."""
    units = sum(chunks)
    given_back, before = 0, 0
    for n in chunks:
        part = cumulative_share(net_vnd, before, n, units)
        assert part >= 0
        given_back += part
        before += n
        assert given_back <= net_vnd
        assert given_back == cumulative_share(net_vnd, 0, before, units)
    assert given_back == net_vnd


@PROPERTY
@given(scenarios(), st.integers(0, 2**32))
def test_deterministic_and_order_independent(scenario, seed):
    policy, ctx, cart, delivery = scenario
    rnd = random.Random(seed)  # shrinks as well as st.randoms() and draws nothing more per shuffle
    first = price_cart(policy, ctx, cart, delivery=delivery)
    assert price_cart(policy, ctx, cart, delivery=delivery) == first

    def shuffled(items):
        items = list(items)
        rnd.shuffle(items)
        return items

    lines = []
    for line in cart:  # the same quantities on more lines
        if line.qty > 1 and rnd.random() < 0.5:
            k = rnd.randint(1, line.qty - 1)
            lines += [replace(line, qty=k), replace(line, qty=line.qty - k)]
        else:
            lines.append(line)
    policy2 = replace(
        policy, price_lists=tuple(shuffled(policy.price_lists)), promotions=tuple(shuffled(policy.promotions)),
        fee_rules=tuple(shuffled(policy.fee_rules)), base_prices=dict(shuffled(policy.base_prices.items())),
    )
    ctx2 = replace(ctx, codes=tuple(shuffled(ctx.codes)), budgets=dict(shuffled(ctx.budgets.items())))
    assert price_cart(policy2, ctx2, shuffled(lines), delivery=delivery) == first


@PROPERTY
@given(scenarios(), st.integers(0, 48 * 3600))
def test_web_and_till_prices_agree(scenario, snapshot_age_s):
    """The website prices with the policy loaded from the database, an offline till with its snapshot's JSON."""
    policy, ctx, cart, delivery = scenario
    data = json.loads(json.dumps(policy_to_json(policy)))
    till_policy = policy_from_json(data)
    assert till_policy == policy
    assert policy_to_json(till_policy) == data
    assert price_cart(till_policy, ctx, cart, delivery=delivery) == priced_of(scenario)
    # A store's snapshot (its lists and promotions only, taken some time before the sale) prices its tills' sales
    # as the whole policy does.
    if ctx.store is not None:
        till_ctx = replace(ctx, channel="store")
        snapshot = selectors.store_snapshot(policy, store_code=ctx.store, channel="store",
                                            at=ctx.at - timedelta(seconds=snapshot_age_s))
        offline = policy_from_json(json.loads(json.dumps(snapshot)))
        assert price_cart(offline, till_ctx, cart) == price_cart(policy, till_ctx, cart)


@PROPERTY
@given(st.integers(0, 10**10), st.lists(st.integers(1, 7), min_size=1, max_size=30))
def test_a_line_refunded_in_any_chunks_gives_back_exactly_its_net(net_vnd, chunks):
    check_refund(net_vnd, chunks)
    check_refund(net_vnd, [1] * sum(chunks))


@PROPERTY
@given(st.lists(st.integers(0, 10**9), max_size=8), st.data())
def test_prorate_parts_add_up_and_stay_within_their_weights(weights, data):
    total = data.draw(st.integers(0, sum(weights)))
    parts = prorate(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == (total if sum(weights) else 0)
    assert all(0 <= p <= w for p, w in zip(parts, weights, strict=True))
