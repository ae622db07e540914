"""The pricing engine's rules, one example each (pure: no database). The worked example of
orders/pricing/README.md is asserted at the end, so the document cannot drift from the engine."""

import json
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

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
    UnknownSkus,
    cumulative_share,
    delivery_fee,
    out_of_scope,
    percent_of,
    policy_from_json,
    policy_to_json,
    price_cart,
    prorate,
    unit_prices,
)

# Monday 2 March 2026, 03:00 UTC = 10:00 in Ho Chi Minh City (UTC+7).
T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
BASE = {"TEA": 50_000, "MILK": 20_000, "CAKE": 30_000, "CUP": 10_000, "PEN": 33_333}
CATEGORIES = {"TEA": "drinks", "MILK": "drinks", "CAKE": "bakery", "CUP": "goods", "PEN": "goods"}


def policy(*, price_lists=(), promotions=(), fee_rules=(), version=7) -> Policy:
    return Policy(version=version, base_prices=BASE, categories=CATEGORIES, price_lists=tuple(price_lists),
                  promotions=tuple(promotions), fee_rules=tuple(fee_rules))


def ctx(**kw) -> Context:
    return Context(**{"channel": "website", "at": T0, "store": "HCM-Q1", **kw})


def cart(**qty: int) -> list[CartLine]:
    return [CartLine(sku, q) for sku, q in qty.items()]


def promo(code: str, kind: str, **kw) -> Promotion:
    return Promotion(code=code, name=code.title(), kind=kind, **kw)


def utc(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def price(pol: Policy, context: Context | None = None, delivery: Delivery | None = None, **qty: int):
    return price_cart(pol, context or ctx(), cart(**qty), delivery=delivery)


def applied(priced) -> dict[str, int]:
    return {a.promotion: a.discount_vnd for a in priced.applied}


def assert_consistent(priced) -> None:
    assert priced.total_vnd == sum(line.net_vnd for line in priced.lines) == priced.subtotal_vnd - priced.discount_vnd
    assert priced.discount_vnd == sum(a.discount_vnd for a in priced.applied)
    for line in priced.lines:
        assert line.gross_vnd == line.qty * line.unit_price_vnd
        assert line.discount_vnd == sum(d.amount_vnd for d in line.discounts) == line.gross_vnd - line.net_vnd
        assert line.net_vnd >= 0
    assert priced.grand_total_vnd == priced.total_vnd + priced.delivery_fee_vnd


# --- base price and price lists ---------------------------------------------------------------------------------


def test_base_price_without_price_lists():
    priced = price(policy(), TEA=2, CUP=1)
    assert [(line.sku, line.unit_price_vnd, line.price_source, line.gross_vnd, line.net_vnd) for line in priced.lines] \
        == [("CUP", 10_000, "base", 10_000, 10_000), ("TEA", 50_000, "base", 100_000, 100_000)]
    assert (priced.subtotal_vnd, priced.discount_vnd, priced.total_vnd) == (110_000, 0, 110_000)
    assert (priced.delivery_fee_vnd, priced.fee_reason, priced.grand_total_vnd) == (0, "pickup", 110_000)
    assert priced.policy_version == 7
    assert_consistent(priced)


def test_store_scoped_list_beats_chain_wide_whatever_the_priority():
    lists = [PriceList("CHAIN", {"TEA": 45_000}, priority=9),
             PriceList("Q1", {"TEA": 48_000}, stores=frozenset({"HCM-Q1"}))]
    assert unit_prices(policy(price_lists=lists), ctx(), ["TEA"]) == {"TEA": (48_000, "Q1")}
    # Another store, or no store at all (the website without a serving store): the chain-wide list.
    assert unit_prices(policy(price_lists=lists), ctx(store="HN-1"), ["TEA"]) == {"TEA": (45_000, "CHAIN")}
    assert unit_prices(policy(price_lists=lists), ctx(store=None), ["TEA"]) == {"TEA": (45_000, "CHAIN")}


def test_channel_scoped_list_beats_every_channel_and_store_scope_beats_channel_scope():
    lists = [PriceList("ALL", {"TEA": 45_000}, priority=9),
             PriceList("WEB", {"TEA": 47_000, "MILK": 19_000}, channels=("website",))]
    assert unit_prices(policy(price_lists=lists), ctx(), ["TEA"]) == {"TEA": (47_000, "WEB")}
    assert unit_prices(policy(price_lists=lists), ctx(channel="store"), ["TEA"]) == {"TEA": (45_000, "ALL")}
    q1 = PriceList("Q1", {"TEA": 49_000}, stores=frozenset({"HCM-Q1"}))
    prices = unit_prices(policy(price_lists=[*lists, q1]), ctx(), ["MILK", "TEA"])
    assert prices == {"TEA": (49_000, "Q1"), "MILK": (19_000, "WEB")}  # a list without the SKU falls through


def test_same_scope_then_priority_then_later_start_then_code():
    a = PriceList("A", {"TEA": 41_000}, priority=1, starts_at=T0 - timedelta(days=9))
    b = PriceList("B", {"TEA": 42_000}, priority=1, starts_at=T0 - timedelta(days=1))
    c = PriceList("C", {"TEA": 43_000}, priority=0, starts_at=T0)
    assert unit_prices(policy(price_lists=[a, b, c]), ctx(), ["TEA"])["TEA"] == (42_000, "B")  # priority, later start
    d = PriceList("D", {"TEA": 44_000}, priority=1, starts_at=T0 - timedelta(days=1))
    assert unit_prices(policy(price_lists=[d, a, b, c]), ctx(), ["TEA"])["TEA"] == (44_000, "D")  # the greater code
    e = PriceList("E", {"TEA": 46_000}, priority=1)  # no start: the earliest possible start
    assert unit_prices(policy(price_lists=[e, a]), ctx(), ["TEA"])["TEA"] == (41_000, "A")


def test_price_list_validity_start_inclusive_end_exclusive():
    pl = PriceList("SPRING", {"TEA": 40_000}, starts_at=T0, ends_at=T0 + timedelta(hours=1))
    pol = policy(price_lists=[pl])
    assert unit_prices(pol, ctx(at=T0), ["TEA"])["TEA"] == (40_000, "SPRING")
    assert unit_prices(pol, ctx(at=T0 + timedelta(minutes=59)), ["TEA"])["TEA"] == (40_000, "SPRING")
    assert unit_prices(pol, ctx(at=T0 + timedelta(hours=1)), ["TEA"])["TEA"] == (50_000, "base")
    assert unit_prices(pol, ctx(at=T0 - timedelta(microseconds=1)), ["TEA"])["TEA"] == (50_000, "base")


def test_price_list_price_is_what_promotions_take_from():
    pol = policy(price_lists=[PriceList("L", {"TEA": 40_000})],
                 promotions=[promo("P10", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10)])
    line = price(pol, TEA=1).line("TEA")
    assert (line.base_price_vnd, line.unit_price_vnd, line.price_source, line.net_vnd) == (50_000, 40_000, "L", 36_000)


# --- each kind of promotion -------------------------------------------------------------------------------------


def test_percent_off_sku_rounds_down_per_line():
    pol = policy(promotions=[promo("P15", Kind.PERCENT_OFF, target=Target.SKU, skus=("PEN",), percent=15)])
    priced = price(pol, PEN=1, TEA=1)
    assert priced.line("PEN").discount_vnd == 4_999  # 15 % of 33,333 = 4,999.95
    assert priced.line("TEA").discount_vnd == 0
    assert priced.applied[0].rule == "15% off" and priced.applied[0].lines == (("PEN", 4_999),)
    assert_consistent(priced)


def test_percent_off_category():
    pol = policy(promotions=[promo("DRINKS", Kind.PERCENT_OFF, target=Target.CATEGORY, categories=("drinks",),
                                   percent=20)])
    priced = price(pol, TEA=1, MILK=2, CAKE=1)
    assert {line.sku: line.discount_vnd for line in priced.lines} == {"CAKE": 0, "MILK": 8_000, "TEA": 10_000}
    assert applied(priced) == {"DRINKS": 18_000}


def test_percent_off_cart_is_split_over_lines_by_largest_remainder():
    pol = policy(promotions=[promo("CART10", Kind.PERCENT_OFF, percent=10)])
    priced = price(pol, TEA=1, PEN=1)  # 10 % of 83,333 = 8,333
    # 8,333 × 33,333 / 83,333 = 3,333.18 and 8,333 × 50,000 / 83,333 = 4,999.82: the larger remainder gets the đồng.
    assert {line.sku: line.discount_vnd for line in priced.lines} == {"PEN": 3_333, "TEA": 5_000}
    assert priced.applied[0].rule == "10% off the cart"
    assert_consistent(priced)


def test_cart_split_ties_go_to_the_earlier_line_in_sku_order():
    one = policy(promotions=[promo("ONE", Kind.AMOUNT_OFF, amount_vnd=1)])
    # 1 đồng over weights CAKE 30,000, MILK 20,000, TEA 50,000: the remainders are the weights, TEA's is the largest.
    priced = price(one, TEA=1, CAKE=1, MILK=1)
    assert {line.sku: line.discount_vnd for line in priced.lines} == {"CAKE": 0, "MILK": 0, "TEA": 1}
    # Equal weights (CUP 2 × 10,000 and MILK 20,000): the earlier SKU.
    priced = price(one, MILK=1, CUP=2)
    assert (priced.line("CUP").discount_vnd, priced.line("MILK").discount_vnd) == (1, 0)


def test_amount_off_per_unit_capped_at_the_line():
    pol = policy(promotions=[
        promo("TEA5K", Kind.AMOUNT_OFF, target=Target.SKU, skus=("TEA",), amount_vnd=5_000),
        promo("CUP15K", Kind.AMOUNT_OFF, target=Target.SKU, skus=("CUP",), amount_vnd=15_000),
    ])
    priced = price(pol, TEA=3, CUP=2)
    assert priced.line("TEA").discount_vnd == 15_000  # 5,000 × 3 units
    assert (priced.line("CUP").discount_vnd, priced.line("CUP").net_vnd) == (20_000, 0)  # never below zero
    assert_consistent(priced)


def test_amount_off_the_cart_once():
    pol = policy(promotions=[promo("CART20K", Kind.AMOUNT_OFF, amount_vnd=20_000)])
    assert price(pol, TEA=3).discount_vnd == 20_000
    assert price(pol, CUP=1).discount_vnd == 10_000  # capped at the goods
    assert price(pol, TEA=3).applied[0].rule == "20000 VND off the cart"


def test_buy_x_get_y_gives_the_cheapest_units_of_each_group():
    b2g1 = promo("B2G1", Kind.BUY_X_GET_Y, target=Target.CATEGORY, categories=("drinks",), buy_qty=2, get_qty=1,
                 percent=100)
    priced = price(policy(promotions=[b2g1]), TEA=2, MILK=1)
    assert (priced.line("MILK").discount_vnd, priced.line("TEA").discount_vnd) == (20_000, 0)
    assert priced.applied[0].rule == "buy 2 get 1 free"
    # Units by value, dearest first: TEA TEA TEA | TEA MILK MILK: one TEA and one MILK free.
    priced = price(policy(promotions=[b2g1]), TEA=4, MILK=2)
    assert (priced.line("TEA").discount_vnd, priced.line("MILK").discount_vnd) == (50_000, 20_000)
    # Not a complete group: nothing.
    assert price(policy(promotions=[b2g1]), TEA=1, MILK=1).applied == ()
    # 7 units = two groups and a leftover: TEA TEA TEA | TEA TEA MILK | MILK.
    priced = price(policy(promotions=[b2g1]), TEA=5, MILK=2)
    assert (priced.line("TEA").discount_vnd, priced.line("MILK").discount_vnd) == (50_000, 20_000)
    assert_consistent(priced)


def test_buy_x_get_y_equal_unit_values_sorted_by_sku():
    prices = {**BASE, "MILK": 50_000}
    pol = Policy(version=1, base_prices=prices, categories=CATEGORIES, promotions=(promo(
        "B1G1", Kind.BUY_X_GET_Y, target=Target.CATEGORY, categories=("drinks",), buy_qty=1, get_qty=1, percent=100),))
    priced = price_cart(pol, ctx(), cart(TEA=1, MILK=1))
    # MILK and TEA at 50,000 each: MILK (the earlier SKU) is the dearer one, TEA the free one.
    assert (priced.line("MILK").discount_vnd, priced.line("TEA").discount_vnd) == (0, 50_000)


def test_buy_x_get_y_partial_percent_on_y():
    pol = policy(promotions=[promo("B1G1HALF", Kind.BUY_X_GET_Y, target=Target.SKU, skus=("PEN",), buy_qty=1,
                                   get_qty=1, percent=50)])
    priced = price(pol, PEN=3)  # one group of 2; 50 % of one unit of 99,999 / 3 = 33,333
    assert priced.line("PEN").discount_vnd == 16_666
    assert priced.applied[0].rule == "buy 1 get 1 50% off"


def test_buy_x_get_y_values_units_after_earlier_line_promotions():
    pol = policy(promotions=[
        promo("TEA10K", Kind.AMOUNT_OFF, target=Target.SKU, skus=("TEA",), amount_vnd=35_000, priority=5),
        promo("B1G1", Kind.BUY_X_GET_Y, target=Target.CATEGORY, categories=("drinks",), buy_qty=1, get_qty=1,
              percent=100),
    ])
    priced = price(pol, TEA=1, MILK=1)  # TEA now 15,000 a unit, MILK 20,000: TEA is the free one
    assert applied(priced) == {"TEA10K": 35_000, "B1G1": 15_000}
    assert priced.line("TEA").net_vnd == 0 and priced.line("MILK").net_vnd == 20_000


def test_bundle_price_with_several_bundles_and_leftovers():
    pol = policy(promotions=[promo("TEATIME", Kind.BUNDLE, target=Target.SKU, skus=("TEA", "CAKE"),
                                   bundle=(("TEA", 1), ("CAKE", 1)), bundle_price_vnd=65_000)])
    priced = price(pol, TEA=3, CAKE=2)
    # Two bundles (TEA 100,000 + CAKE 60,000 for 130,000): 30,000 saved, split 100:60; the third TEA at full price.
    assert (priced.line("TEA").discount_vnd, priced.line("CAKE").discount_vnd) == (18_750, 11_250)
    assert priced.total_vnd == 180_000
    assert priced.applied[0].rule == "2 × bundle for 65000 VND"
    assert price(pol, TEA=3).applied == ()  # incomplete: no bundle
    assert_consistent(priced)


def test_bundle_with_two_units_of_a_sku():
    pol = policy(promotions=[promo("TWOCUPS", Kind.BUNDLE, target=Target.SKU, skus=("CUP", "MILK"),
                                   bundle=(("CUP", 2), ("MILK", 1)), bundle_price_vnd=35_000)])
    priced = price(pol, CUP=5, MILK=3)  # 2 bundles (5 // 2 cups); 80,000 for 70,000
    assert applied(priced) == {"TWOCUPS": 10_000}
    assert (priced.line("CUP").discount_vnd, priced.line("MILK").discount_vnd) == (5_000, 5_000)


def test_bundle_saving_nothing_does_not_apply():
    pol = policy(promotions=[
        promo("HALF", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=50),
        promo("TEATIME", Kind.BUNDLE, target=Target.SKU, skus=("TEA", "CAKE"), bundle=(("TEA", 1), ("CAKE", 1)),
              bundle_price_vnd=65_000),
    ])
    assert applied(price(pol, TEA=1, CAKE=1)) == {"HALF": 25_000}  # 25,000 + 30,000 is below 65,000 already


def test_spend_threshold_amount_and_percent():
    amount = promo("SPEND100", Kind.SPEND_THRESHOLD, min_spend_vnd=100_000, amount_vnd=20_000)
    assert applied(price(policy(promotions=[amount]), TEA=2)) == {"SPEND100": 20_000}  # 100,000 reaches it
    assert applied(price(policy(promotions=[amount]), TEA=1, MILK=2)) == {}  # 90,000
    percent = promo("SPEND5", Kind.SPEND_THRESHOLD, min_spend_vnd=100_000, percent=5)
    priced = price(policy(promotions=[percent]), TEA=2, PEN=1)
    assert applied(priced) == {"SPEND5": 6_666}  # 5 % of 133,333
    assert priced.applied[0].rule == "5% off the cart on a cart of 100000 VND or more"


def test_spend_threshold_counts_goods_after_line_promotions():
    pol = policy(promotions=[
        promo("TEA10", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10),
        promo("SPEND100", Kind.SPEND_THRESHOLD, min_spend_vnd=100_000, amount_vnd=20_000),
    ])
    assert applied(price(pol, TEA=2)) == {"TEA10": 10_000}  # 90,000 after the line promotion
    assert applied(price(pol, TEA=2, CUP=1)) == {"TEA10": 10_000, "SPEND100": 20_000}


def test_cart_promotions_min_spend():
    pol = policy(promotions=[promo("BIG10", Kind.PERCENT_OFF, percent=10, min_spend_vnd=200_000)])
    assert applied(price(pol, TEA=3)) == {}
    assert applied(price(pol, TEA=4)) == {"BIG10": 20_000}


# --- scope: tiers, channels, stores, time ---------------------------------------------------------------------


def test_member_tier_only():
    pol = policy(promotions=[promo("GOLD", Kind.PERCENT_OFF, percent=10, tiers=("gold", "diamond"))])
    assert applied(price(pol, ctx(), TEA=1)) == {}  # not a member
    assert applied(price(pol, ctx(member="+84901234567", tier="silver"), TEA=1)) == {}
    assert applied(price(pol, ctx(member="+84901234567", tier="gold"), TEA=1)) == {"GOLD": 5_000}


def test_channel_and_store_scope():
    till = promo("TILL", Kind.PERCENT_OFF, percent=10, channels=("store",))
    q1 = promo("Q1", Kind.PERCENT_OFF, percent=10, stores=frozenset({"HCM-Q1", "HCM-Q3"}))
    pol = policy(promotions=[till, q1])
    assert applied(price(pol, ctx(channel="website", store="HN-1"), TEA=1)) == {}
    assert applied(price(pol, ctx(channel="store", store="HN-1"), TEA=1)) == {"TILL": 5_000}
    assert applied(price(pol, ctx(channel="website", store="HCM-Q3"), TEA=1)) == {"Q1": 5_000}
    assert applied(price(pol, ctx(channel="website", store=None), TEA=1)) == {}
    local = T0.astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert out_of_scope(till, ctx(), local) == "channel"
    assert out_of_scope(q1, ctx(store="HN-1"), local) == "store"


def test_out_of_scope_reasons():
    local = T0
    assert out_of_scope(promo("G", Kind.PERCENT_OFF, tiers=("gold",)), ctx(), local) == "tier"
    assert out_of_scope(promo("M", Kind.PERCENT_OFF, max_uses_per_member=1), ctx(), local) == "member"
    assert out_of_scope(promo("M", Kind.PERCENT_OFF, max_uses_per_member=1), ctx(member="+84901234567"), local) == ""
    assert out_of_scope(promo("D", Kind.PERCENT_OFF, ends_at=T0), ctx(), local) == "dates"
    assert out_of_scope(promo("W", Kind.PERCENT_OFF, weekdays=(1,)), ctx(), local) == "time_window"


def test_promotion_dates_start_inclusive_end_exclusive():
    pol = policy(promotions=[promo("WEEK", Kind.PERCENT_OFF, percent=10, starts_at=T0,
                                   ends_at=T0 + timedelta(days=7))])
    assert applied(price(pol, ctx(at=T0), TEA=1)) == {"WEEK": 5_000}
    assert applied(price(pol, ctx(at=T0 + timedelta(days=7)), TEA=1)) == {}
    assert applied(price(pol, ctx(at=T0 - timedelta(seconds=1)), TEA=1)) == {}


def test_happy_hour_in_the_store_time_zone():
    pol = policy(promotions=[promo("HAPPY", Kind.PERCENT_OFF, percent=10, from_time=time(14), until_time=time(16))])
    assert applied(price(pol, ctx(at=utc(7)), TEA=1)) == {"HAPPY": 5_000}  # 14:00 local: from is inclusive
    assert applied(price(pol, ctx(at=utc(8, 59)), TEA=1)) == {"HAPPY": 5_000}
    assert applied(price(pol, ctx(at=utc(9)), TEA=1)) == {}  # 16:00 local: until is exclusive
    assert applied(price(pol, ctx(at=utc(6, 59)), TEA=1)) == {}
    assert applied(price(pol, ctx(at=utc(14), timezone="UTC"), TEA=1)) == {"HAPPY": 5_000}  # another store's zone


def test_from_only_and_until_only_windows():
    early = promo("EARLY", Kind.PERCENT_OFF, percent=10, until_time=time(9))
    late = promo("LATE", Kind.PERCENT_OFF, percent=10, from_time=time(20))
    pol = policy(promotions=[early, late])
    assert applied(price(pol, ctx(at=utc(1, 59)), TEA=1)) == {"EARLY": 5_000}  # 08:59 local
    assert applied(price(pol, ctx(at=utc(2)), TEA=1)) == {}
    assert applied(price(pol, ctx(at=utc(13)), TEA=1)) == {"LATE": 5_000}  # 20:00 local
    assert applied(price(pol, ctx(at=utc(12, 59)), TEA=1)) == {}


def test_window_over_midnight():
    pol = policy(promotions=[promo("NIGHT", Kind.PERCENT_OFF, percent=10, from_time=time(22), until_time=time(2))])
    for hour, minute, expected in [(15, 0, True), (18, 59, True), (14, 59, False), (19, 0, False), (3, 0, False)]:
        got = applied(price(pol, ctx(at=utc(hour, minute)), TEA=1))  # local = UTC + 7
        assert got == ({"NIGHT": 5_000} if expected else {}), (hour, minute)


def test_weekdays_use_the_local_date():
    weekend = promo("WEEKEND", Kind.PERCENT_OFF, percent=10, weekdays=(5, 6))
    friday = promo("FRIDAY", Kind.PERCENT_OFF, percent=20, weekdays=(4,), exclusive=True)
    pol = policy(promotions=[weekend, friday])
    # Friday 6 March, 20:00 UTC is Saturday 03:00 in Ho Chi Minh City.
    assert applied(price(pol, ctx(at=utc(20, day=6)), TEA=1)) == {"WEEKEND": 5_000}
    assert applied(price(pol, ctx(at=utc(16, day=6)), TEA=1)) == {"FRIDAY": 10_000}  # 23:00 local, still Friday
    assert applied(price(pol, ctx(at=utc(20, day=6), timezone="UTC"), TEA=1)) == {"FRIDAY": 10_000}


# --- stacking -------------------------------------------------------------------------------------------------


def test_stackable_promotions_all_apply_line_level_first():
    pol = policy(promotions=[
        promo("CART10", Kind.PERCENT_OFF, percent=10, priority=99),  # cart-level: after every line promotion
        promo("TEA10", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10),
    ])
    priced = price(pol, TEA=2)
    assert [(a.promotion, a.discount_vnd) for a in priced.applied] == [("TEA10", 10_000), ("CART10", 9_000)]
    assert priced.line("TEA").discounts[0].promotion == "CART10"  # the line's discounts are listed by code
    assert_consistent(priced)


def test_line_promotions_in_priority_order_then_code():
    amount = promo("AMT", Kind.AMOUNT_OFF, target=Target.SKU, skus=("TEA",), amount_vnd=10_000)
    percent = promo("PCT", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10)
    # Same priority: by code, AMT first (50,000 - 10,000 = 40,000, then 10 % = 4,000).
    assert applied(price(policy(promotions=[percent, amount]), TEA=1)) == {"AMT": 10_000, "PCT": 4_000}
    # PCT of higher priority first: 5,000, then 10,000.
    percent = promo("PCT", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10, priority=1)
    assert applied(price(policy(promotions=[amount, percent]), TEA=1)) == {"PCT": 5_000, "AMT": 10_000}


def test_one_exclusive_alone_when_it_is_best_for_the_customer():
    stack = [promo("TEA10", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10),
             promo("CART10", Kind.PERCENT_OFF, percent=10)]
    flash = promo("FLASH30", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=30, exclusive=True)
    assert applied(price(policy(promotions=[*stack, flash]), TEA=2)) == {"FLASH30": 30_000}  # vs 10,000 + 9,000
    # With more in the cart, the stackable set gives more (5,000 + 34,500 vs 15,000): the exclusive does not apply.
    assert applied(price(policy(promotions=[*stack, flash]), TEA=1, CAKE=10)) == {"TEA10": 5_000, "CART10": 34_500}


def test_the_best_of_several_exclusives():
    a = promo("EXA", Kind.PERCENT_OFF, percent=10, exclusive=True)
    b = promo("EXB", Kind.AMOUNT_OFF, amount_vnd=8_000, exclusive=True)
    assert applied(price(policy(promotions=[a, b]), TEA=1)) == {"EXB": 8_000}
    assert applied(price(policy(promotions=[a, b]), TEA=2)) == {"EXA": 10_000}


def test_ties_are_deterministic():
    stack = promo("STACK", Kind.AMOUNT_OFF, amount_vnd=5_000)
    ex_low = promo("EXZ", Kind.PERCENT_OFF, percent=10, exclusive=True)
    ex_high = promo("EXY", Kind.AMOUNT_OFF, amount_vnd=5_000, exclusive=True, priority=1)
    # All three give 5,000: the stackable set wins a tie with an exclusive.
    assert applied(price(policy(promotions=[ex_low, ex_high, stack]), TEA=1)) == {"STACK": 5_000}
    # Exclusives tied: the higher priority, then the earlier code.
    assert applied(price(policy(promotions=[ex_low, ex_high]), TEA=1)) == {"EXY": 5_000}
    ex_a = promo("EXA", Kind.AMOUNT_OFF, amount_vnd=5_000, exclusive=True)
    assert applied(price(policy(promotions=[ex_low, ex_a]), TEA=1)) == {"EXA": 5_000}


# --- codes and vouchers ---------------------------------------------------------------------------------------

VOUCHER = promo("points-voucher", Kind.AMOUNT_OFF, requires_code=True)


def test_requires_code_only_with_a_grant():
    coupon = promo("WELCOME", Kind.PERCENT_OFF, percent=10, requires_code=True)
    pol = policy(promotions=[coupon])
    assert applied(price(pol, TEA=1)) == {}
    priced = price(pol, ctx(codes=(CodeGrant("HELLO2026", "WELCOME"),)), TEA=1)
    assert applied(priced) == {"WELCOME": 5_000}
    assert priced.applied[0].code == "HELLO2026"
    assert priced.line("TEA").discounts[0].promotion == "WELCOME#HELLO2026"
    assert [(c.code, c.promotion, c.applied, c.reason) for c in priced.codes] == [
        ("HELLO2026", "WELCOME", True, "")]


def test_code_outcomes():
    coupon = promo("WELCOME", Kind.PERCENT_OFF, percent=10, requires_code=True)
    tea = promo("TEAC", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10, requires_code=True)
    till = promo("TILLONLY", Kind.PERCENT_OFF, percent=10, requires_code=True, channels=("store",))
    big = promo("BIG", Kind.PERCENT_OFF, percent=50, exclusive=True)
    small = promo("SMALL", Kind.PERCENT_OFF, percent=5, requires_code=True, exclusive=True)
    capped = promo("CAPPED", Kind.PERCENT_OFF, percent=5, requires_code=True, max_uses=10)
    pol = policy(promotions=[coupon, tea, till, big, small, capped])
    grants = (CodeGrant("A1", "WELCOME"), CodeGrant("A2", "WELCOME"), CodeGrant("B", "TEAC"),
              CodeGrant("C", "TILLONLY"), CodeGrant("D", "NOSUCH"), CodeGrant("E", "SMALL"),
              CodeGrant("F", "CAPPED"))
    priced = price(pol, ctx(codes=grants, budgets={"CAPPED": Budget(uses_left=0)}), CAKE=2)
    assert {c.code: (c.applied, c.reason) for c in priced.codes} == {
        "A1": (False, "not_best"),  # WELCOME is stackable: it would apply, but the exclusive BIG gives more
        "A2": (False, "duplicate"),  # a second code of the same promotion
        "B": (False, "conditions_not_met"),  # no TEA in the cart
        "C": (False, "out_of_scope"),  # a till promotion on the website
        "D": (False, "out_of_scope"),  # no such promotion in the policy
        "E": (False, "not_best"),
        "F": (False, "budget_exhausted"),
    }
    assert applied(priced) == {"BIG": 30_000}


def test_voucher_stacks_with_an_exclusive_promotion_and_replaces_the_amount():
    flash = promo("FLASH30", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=30, exclusive=True)
    stack = promo("CART10", Kind.PERCENT_OFF, percent=10)
    pol = policy(promotions=[flash, stack, VOUCHER])
    grants = (CodeGrant("V1", "points-voucher", value_vnd=10_000), CodeGrant("V2", "points-voucher", value_vnd=3_000))
    priced = price(pol, ctx(codes=grants), TEA=2)
    assert [(a.promotion, a.code, a.discount_vnd) for a in priced.applied] == [
        ("FLASH30", None, 30_000), ("points-voucher", "V1", 10_000), ("points-voucher", "V2", 3_000)]
    assert all(c.applied for c in priced.codes)
    assert priced.total_vnd == 57_000
    assert_consistent(priced)


def test_voucher_capped_at_the_goods():
    priced = price(policy(promotions=[VOUCHER]), ctx(codes=(CodeGrant("V1", "points-voucher", value_vnd=99_000),)),
                   CUP=1)
    assert (priced.discount_vnd, priced.total_vnd) == (10_000, 0)


# --- budgets --------------------------------------------------------------------------------------------------


def test_budget_uses_left_zero_and_member_uses_left_zero():
    p = promo("CAP", Kind.PERCENT_OFF, percent=10, max_uses=100, max_uses_per_member=1)
    pol = policy(promotions=[p])
    member = "+84901234567"
    assert applied(price(pol, ctx(member=member, budgets={"CAP": Budget(uses_left=1, member_uses_left=1)}),
                         TEA=1)) == {"CAP": 5_000}
    assert applied(price(pol, ctx(member=member, budgets={"CAP": Budget(uses_left=0)}), TEA=1)) == {}
    assert applied(price(pol, ctx(member=member, budgets={"CAP": Budget(member_uses_left=0)}), TEA=1)) == {}
    assert applied(price(pol, ctx(budgets={"CAP": Budget(uses_left=5)}), TEA=1)) == {}  # not a known member


def test_budget_money_left_caps_the_discount_exactly():
    p = promo("DRINKS", Kind.PERCENT_OFF, target=Target.CATEGORY, categories=("drinks",), percent=50,
              max_discount_vnd=1_000_000)
    pol = policy(promotions=[p])
    priced = price(pol, ctx(budgets={"DRINKS": Budget(vnd_left=12_345)}), TEA=1, MILK=1)
    assert applied(priced) == {"DRINKS": 12_345}
    # 25,000 and 10,000 wanted, 12,345 left: split 25:10 by the largest remainder.
    assert (priced.line("MILK").discount_vnd, priced.line("TEA").discount_vnd) == (3_527, 8_818)
    assert applied(price(pol, ctx(budgets={"DRINKS": Budget(vnd_left=0)}), TEA=1)) == {}
    assert applied(price(pol, ctx(budgets={"DRINKS": Budget(vnd_left=-5)}), TEA=1)) == {}
    assert applied(price(pol, ctx(budgets={"DRINKS": Budget(vnd_left=99_999)}), TEA=1)) == {"DRINKS": 25_000}
    assert_consistent(priced)


# --- delivery fees ----------------------------------------------------------------------------------------------

FEES = (
    FeeRule("ANY-3", max_km=3, fee_vnd=15_000),
    FeeRule("ANY-10", max_km=10, fee_vnd=30_000),
    FeeRule("HCM-5", max_km=5, fee_vnd=10_000, city="HCM", free_over_vnd=300_000),
    FeeRule("HCM-15", max_km=15, fee_vnd=20_000, city="HCM", free_tiers=("gold",)),
    FeeRule("TILL", max_km=100, fee_vnd=1, channels=("store",)),
)


def fee(distance: float, city: str = "", goods: int = 100_000, **kw) -> tuple[int, str | None, str]:
    return delivery_fee(policy(fee_rules=FEES), ctx(**kw), Delivery(distance, city), goods_vnd=goods)


def test_delivery_fee_bands():
    assert fee(4, "HCM") == (10_000, "HCM-5", "up to 5 km in HCM")  # the city's zone before chain-wide rules
    assert fee(5, "HCM") == (10_000, "HCM-5", "up to 5 km in HCM")  # a band reaches its max_km
    assert fee(5.01, "HCM") == (20_000, "HCM-15", "up to 15 km in HCM")
    assert fee(40, "HCM") == (20_000, "HCM-15", "up to 15 km in HCM")  # beyond every band: the widest
    assert fee(2, "HN") == (15_000, "ANY-3", "up to 3 km")  # no zone for HN: chain-wide
    assert fee(7) == (30_000, "ANY-10", "up to 10 km")
    assert fee(70) == (30_000, "ANY-10", "up to 10 km")


def test_delivery_free_over_a_threshold_after_discounts_and_for_tiers():
    assert fee(1, "HCM", goods=300_000) == (0, "HCM-5", "free over 300000 VND")
    assert fee(1, "HCM", goods=299_999)[0] == 10_000
    assert fee(9, "HCM", tier="gold") == (0, "HCM-15", "free for gold members")
    assert fee(1, "HCM", tier="gold")[0] == 10_000  # the tier is free only on the band that says so
    pol = policy(promotions=[promo("CART10", Kind.PERCENT_OFF, percent=10)], fee_rules=FEES)
    priced = price(pol, delivery=Delivery(1, "HCM"), TEA=6)  # 300,000 - 30,000: under the threshold
    assert (priced.total_vnd, priced.delivery_fee_vnd, priced.fee_rule, priced.grand_total_vnd) == \
        (270_000, 10_000, "HCM-5", 280_000)


def test_pickup_free_and_channel_filter():
    pol = policy(fee_rules=FEES)
    assert price(pol, TEA=1).delivery_fee_vnd == 0
    assert price(pol, TEA=1).fee_reason == "pickup"
    assert fee(50, channel="store") == (1, "TILL", "up to 100 km")  # the till's rule, chain-wide, reaches 50 km
    only_till = policy(fee_rules=[FEES[-1]])
    assert delivery_fee(only_till, ctx(), Delivery(1), goods_vnd=1) == (0, None, "no delivery fee configured")


# --- carts ------------------------------------------------------------------------------------------------------


def test_unknown_skus():
    with pytest.raises(UnknownSkus) as caught:
        price_cart(policy(), ctx(), [CartLine("ZZZ", 1), CartLine("TEA", 1), CartLine("AAA", 2)])
    assert caught.value.skus == ["AAA", "ZZZ"]


def test_duplicate_sku_lines_are_merged():
    pol = policy(promotions=[promo("B2G1", Kind.BUY_X_GET_Y, target=Target.SKU, skus=("TEA",), buy_qty=2, get_qty=1,
                                   percent=100)])
    priced = price_cart(pol, ctx(), [CartLine("TEA", 1), CartLine("CUP", 1), CartLine("TEA", 2)])
    assert [(line.sku, line.qty) for line in priced.lines] == [("CUP", 1), ("TEA", 3)]
    assert priced.line("TEA").discount_vnd == 50_000


# --- money ------------------------------------------------------------------------------------------------------


def test_percent_of_rounds_down():
    assert percent_of(99, 50) == 49
    assert percent_of(33_333, 15) == 4_999
    assert percent_of(0, 30) == 0
    assert percent_of(12_345, 100) == 12_345
    assert percent_of(12_345, 0) == 0


def test_prorate_edge_cases():
    assert prorate(10, [1, 1, 1]) == [4, 3, 3]  # ties: the earlier weight
    assert prorate(2, [1, 1, 1]) == [1, 1, 0]
    assert prorate(0, [5, 7]) == [0, 0]
    assert prorate(7, [0, 0]) == [0, 0]  # nothing to weigh by
    assert prorate(7, []) == []
    assert prorate(5, [0, 3, 0]) == [0, 5, 0]
    assert prorate(100, [100, 0]) == [100, 0]
    assert prorate(3, [2, 1]) == [2, 1]  # parts never exceed the weights when the total does not
    assert prorate(5, [1, 3]) == [1, 4]  # 1.25 and 3.75: the larger remainder
    assert sum(prorate(999_999, [3, 7, 11, 13])) == 999_999


def test_cumulative_share_is_the_refund_rule():
    assert [cumulative_share(100, k, 1, 3) for k in range(3)] == [33, 33, 34]  # 3 units worth 100 together
    assert cumulative_share(100, 0, 3, 3) == 100
    assert cumulative_share(100, 1, 2, 3) == 67  # the rest after one unit
    assert cumulative_share(100, 2, 0, 3) == 0
    assert cumulative_share(0, 0, 2, 2) == 0
    assert sum(cumulative_share(99_999, k, 1, 7) for k in range(7)) == 99_999


# --- the snapshot format ------------------------------------------------------------------------------------------


def test_policy_json_round_trip_prices_identically():
    pol = policy(
        price_lists=[PriceList("Q1", {"TEA": 45_000}, priority=2, channels=("store",), stores=frozenset({"HCM-Q1"}),
                               starts_at=T0 - timedelta(days=1), ends_at=T0 + timedelta(days=1))],
        promotions=[
            promo("HAPPY", Kind.PERCENT_OFF, target=Target.CATEGORY, categories=("drinks",), percent=15,
                  from_time=time(9, 30), until_time=time(11), weekdays=(0, 1), tiers=("gold",), priority=3),
            promo("TEATIME", Kind.BUNDLE, target=Target.SKU, skus=("TEA", "CAKE"), bundle=(("TEA", 1), ("CAKE", 1)),
                  bundle_price_vnd=60_000, exclusive=True, max_uses=5, max_discount_vnd=100_000),
            VOUCHER,
        ],
        fee_rules=FEES,
    )
    data = json.loads(json.dumps(policy_to_json(pol)))
    assert policy_from_json(data) == pol
    assert data["promotions"][0]["from_time"] == "09:30" and data["price_lists"][0]["stores"] == ["HCM-Q1"]
    context = ctx(channel="store", tier="gold", member="+84901234567", codes=(
        CodeGrant("V1", "points-voucher", value_vnd=7_000),))
    assert price_cart(policy_from_json(data), context, cart(TEA=2, CAKE=1, MILK=1), delivery=Delivery(4, "HCM")) == \
        price_cart(pol, context, cart(TEA=2, CAKE=1, MILK=1), delivery=Delivery(4, "HCM"))


# --- fixed bugs -------------------------------------------------------------------------------------------------


def test_bundle_and_buy_x_get_y_with_the_cart_target_apply():
    # The cart target is the default: such promotions were taken as cart-level ones and silently never applied.
    bundle = promo("TEATIME", Kind.BUNDLE, bundle=(("TEA", 1), ("CAKE", 1)), bundle_price_vnd=65_000)
    assert bundle.target == Target.CART and bundle.line_level
    assert applied(price(policy(promotions=[bundle]), TEA=1, CAKE=1)) == {"TEATIME": 15_000}
    any3 = promo("ANY3", Kind.BUY_X_GET_Y, buy_qty=2, get_qty=1, percent=100)  # any 3 items, the cheapest free
    assert applied(price(policy(promotions=[any3]), TEA=1, CAKE=1, CUP=1)) == {"ANY3": 10_000}


def test_a_code_for_a_promotion_that_needs_none_does_not_apply_it_twice():
    pol = policy(promotions=[promo("TEA10", Kind.PERCENT_OFF, target=Target.SKU, skus=("TEA",), percent=10)])
    priced = price(pol, ctx(codes=(CodeGrant("EXTRA", "TEA10"),)), TEA=1)
    assert applied(priced) == {"TEA10": 5_000}  # was 5,000 + 4,500: once by itself and once more for the code
    assert [(c.code, c.applied, c.reason) for c in priced.codes] == [("EXTRA", False, "duplicate")]


def test_window_over_midnight_belongs_to_the_day_it_opens():
    # The weekday was that of the moment: a Friday-night window ran Friday 00:00-02:00 and not Saturday 00:00-02:00.
    pol = policy(promotions=[promo("FRINIGHT", Kind.PERCENT_OFF, percent=10, weekdays=(4,), from_time=time(22),
                                   until_time=time(2))])
    assert applied(price(pol, ctx(at=utc(15, day=6)), TEA=1)) == {"FRINIGHT": 5_000}  # Friday 22:00 local
    assert applied(price(pol, ctx(at=utc(18, 30, day=6)), TEA=1)) == {"FRINIGHT": 5_000}  # Saturday 01:30
    assert applied(price(pol, ctx(at=utc(19, day=6)), TEA=1)) == {}  # Saturday 02:00
    assert applied(price(pol, ctx(at=utc(18, 30, day=5)), TEA=1)) == {}  # Friday 01:30: Thursday night's window
    sunday = policy(promotions=[promo("SUNNIGHT", Kind.PERCENT_OFF, percent=10, weekdays=(6,), from_time=time(23),
                                      until_time=time(1))])
    assert applied(price(sunday, ctx(at=utc(17, 30, day=1)), TEA=1)) == {"SUNNIGHT": 5_000}  # Monday 00:30


def test_min_spend_is_the_goods_after_line_promotions_not_after_other_cart_promotions():
    # It was the goods after every earlier cart promotion, so a voucher or another cart promotion whose code sorted
    # first could take a threshold away, as documented it is the goods after the line promotions.
    pol = policy(promotions=[
        promo("AAA30K", Kind.AMOUNT_OFF, amount_vnd=30_000),  # same priority, earlier code: applied first
        promo("SPEND100", Kind.SPEND_THRESHOLD, min_spend_vnd=100_000, amount_vnd=20_000),
    ])
    assert applied(price(pol, TEA=2)) == {"AAA30K": 30_000, "SPEND100": 20_000}
    grant = CodeGrant("V1", "points-voucher", value_vnd=50_000)
    pol = policy(promotions=[VOUCHER, promo("spend100", Kind.SPEND_THRESHOLD, min_spend_vnd=100_000,
                                            amount_vnd=20_000)])
    assert applied(price(pol, ctx(codes=(grant,)), TEA=2)) == {"points-voucher": 50_000, "spend100": 20_000}


def test_several_vouchers_of_one_promotion_keep_its_budget():
    # Each use was capped on its own: two vouchers could together pass the money and use caps.
    grants = (CodeGrant("V1", "points-voucher", value_vnd=10_000), CodeGrant("V2", "points-voucher", value_vnd=8_000))
    pol = policy(promotions=[VOUCHER])
    priced = price(pol, ctx(codes=grants, budgets={"points-voucher": Budget(vnd_left=15_000)}), TEA=2)
    assert [(a.code, a.discount_vnd) for a in priced.applied] == [("V1", 10_000), ("V2", 5_000)]
    priced = price(pol, ctx(codes=grants, budgets={"points-voucher": Budget(uses_left=1)}), TEA=2)
    assert priced.discount_vnd == 10_000
    assert [(c.code, c.applied, c.reason) for c in priced.codes] == [("V1", True, ""), ("V2", False, "budget_exhausted")]
    priced = price(pol, ctx(member="+84901234567", codes=grants,
                            budgets={"points-voucher": Budget(uses_left=9, member_uses_left=1)}), TEA=2)
    assert priced.discount_vnd == 10_000


def test_json_keeps_seconds_of_local_times():
    # "HH:MM" dropped the seconds: a till with the snapshot priced 09:59:45 otherwise than the website.
    pol = policy(promotions=[promo("ODD", Kind.PERCENT_OFF, percent=10, from_time=time(9, 59, 30), until_time=time(11))])
    data = policy_to_json(pol)
    assert (data["promotions"][0]["from_time"], data["promotions"][0]["until_time"]) == ("09:59:30", "11:00")
    assert policy_from_json(json.loads(json.dumps(data))) == pol


def test_bundle_listing_a_sku_twice_needs_both_units():
    # Each entry was counted on its own: one CUP made the bundle, and the saving of one entry was lost.
    pol = policy(promotions=[promo("TWOCUPS", Kind.BUNDLE, bundle=(("CUP", 1), ("MILK", 1), ("CUP", 1)),
                                   bundle_price_vnd=35_000)])
    assert applied(price(pol, CUP=1, MILK=1)) == {}
    priced = price(pol, CUP=2, MILK=1)
    assert (priced.line("CUP").discount_vnd, priced.line("MILK").discount_vnd) == (2_500, 2_500)
    assert price(policy(promotions=[promo("ZERO", Kind.BUNDLE, bundle=(("CUP", 0),))]), CUP=1).applied == ()


# --- the worked example of orders/pricing/README.md -----------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "orders" / "pricing" / "README.md"


def readme_block(marker: str) -> dict:
    text = README.read_text()
    start = text.index(f"<!-- worked-example:{marker} -->")
    body = text[text.index("```json\n", start) + len("```json\n"):]
    return json.loads(body[: body.index("```")])


def test_the_readme_worked_example_is_what_the_engine_answers():
    given = readme_block("input")
    c = given["context"]
    context = Context(channel=c["channel"], at=datetime.fromisoformat(c["at"]), timezone=c["timezone"],
                      store=c["store"], tier=c["tier"],
                      codes=tuple(CodeGrant(g["code"], g["promotion"], g.get("value_vnd")) for g in c["codes"]))
    priced = price_cart(policy_from_json(given["policy"]), context, [CartLine(s, q) for s, q in given["cart"]])
    answer = {
        "lines": [
            {"sku": line.sku, "qty": line.qty, "unit_price_vnd": line.unit_price_vnd, "price_source": line.price_source,
             "gross_vnd": line.gross_vnd, "discount_vnd": line.discount_vnd, "net_vnd": line.net_vnd,
             "discounts": {d.promotion: d.amount_vnd for d in line.discounts}}
            for line in priced.lines
        ],
        "promotions": [{"promotion": a.promotion, "code": a.code, "discount_vnd": a.discount_vnd}
                       for a in priced.applied],
        "codes": [{"code": o.code, "applied": o.applied, "reason": o.reason} for o in priced.codes],
        "subtotal_vnd": priced.subtotal_vnd, "discount_vnd": priced.discount_vnd, "total_vnd": priced.total_vnd,
    }
    assert answer == readme_block("output")
    assert (priced.subtotal_vnd, priced.discount_vnd, priced.total_vnd) == (956_000, 316_253, 639_747)
    # The exclusive flash sale was in force and lost (239,000 + the voucher's 30,000 < 316,253).
    alone = replace(policy_from_json(given["policy"]), promotions=tuple(
        p for p in policy_from_json(given["policy"]).promotions if p.code in ("flash-25", "points-voucher")))
    assert price_cart(alone, context, [CartLine(s, q) for s, q in given["cart"]]).discount_vnd == 269_000
    # The refund of the hats, one by one.
    hats = priced.line("NON-LA").net_vnd
    assert [cumulative_share(hats, k, 1, 2) for k in range(2)] == [113_007, 113_007]


def test_vouchers_come_off_after_every_promotion():
    # They took their turn by priority and code among the cart promotions: a 10 % off the cart whose code sorted
    # after "points-voucher" (lower case) was computed on the goods less the voucher, one in upper case was not.
    voucher = (CodeGrant("V1", "points-voucher", value_vnd=100_000),)
    for code in ("summer10", "SUMMER10"):
        pol = policy(promotions=[VOUCHER, promo(code, Kind.PERCENT_OFF, percent=10)])
        priced = price(pol, ctx(codes=voucher), TEA=20)
        assert [(a.promotion, a.discount_vnd) for a in priced.applied] == [(code, 100_000), ("points-voucher", 100_000)]
    urgent = promo("URGENT", Kind.AMOUNT_OFF, amount_vnd=5_000, priority=9)  # cart promotions keep their order
    pol = policy(promotions=[VOUCHER, urgent, promo("CART10", Kind.PERCENT_OFF, percent=10)])
    priced = price(pol, ctx(codes=voucher), TEA=20)
    assert [(a.promotion, a.discount_vnd) for a in priced.applied] == [
        ("URGENT", 5_000), ("CART10", 99_500), ("points-voucher", 100_000)]
