"""The demo's pricing policy (manage.py load_demo_pricing, run by manage.py demo): loaded twice it is the same
policy, and the website's and the tills' prices of demo carts show its promotions, price lists and delivery fees."""

from datetime import datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import TestCase

from inventory.models import Store
from loyalty.models import Member
from orders.pricing import engine, selectors, services
from orders.pricing.management.commands.load_demo_pricing import WELCOME, coming_weekend, single_use_codes
from orders.pricing.models import Code, DeliveryFeeRule, PriceList, PriceListRow, Promotion, StoreGroup

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TUESDAY_MORNING = datetime(2025, 6, 10, 10, 0, tzinfo=HCM)
TUESDAY_4PM = datetime(2025, 6, 10, 16, 0, tzinfo=HCM)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count()
            for model in (StoreGroup, PriceList, PriceListRow, Promotion, Code, DeliveryFeeRule)}


def applied(priced: engine.PricedCart) -> set[str]:
    return {a.promotion for a in priced.applied}


class DemoPricing(TestCase):
    """The demo chain (44 stores, 400 SKUs) and its pricing, loaded once for the class; each test in a savepoint."""

    @classmethod
    def setUpTestData(cls):
        call_command("load_demo_chain", stdout=StringIO())
        call_command("load_demo_pricing", stdout=StringIO())

    def setUp(self):
        # The process caches the policy by version; another test's rolled-back policy may have had the same one.
        selectors.forget_cached_policy()
        self.addCleanup(selectors.forget_cached_policy)

    def test_loading_twice_changes_nothing_but_the_version(self):
        before = counts()
        version = selectors.policy_version()
        groups = {g.code: set(g.stores.values_list("code", flat=True)) for g in StoreGroup.objects.all()}
        Code.objects.filter(code=single_use_codes()[0]).update(uses=1)  # a use survives a reload

        call_command("load_demo_pricing", stdout=StringIO())

        assert counts() == before
        assert before == {"StoreGroup": 4, "PriceList": 2, "PriceListRow": 11 + 23, "Promotion": 7, "Code": 6,
                          "DeliveryFeeRule": 3}
        assert {g.code: set(g.stores.values_list("code", flat=True)) for g in StoreGroup.objects.all()} == groups
        assert groups["hanoi"] == set(Store.objects.filter(city="Hanoi").values_list("code", flat=True))
        assert groups["kiosks"] == {"HCM-Q1-003", "HCM-Q10-001", "HCM-TB-002", "HN-HK-002", "DN-HC-003"}
        assert selectors.policy_version() == version + 1
        assert Code.objects.get(code=single_use_codes()[0]).uses == 1
        assert Code.objects.get(code=WELCOME).max_uses is None
        assert set(Code.objects.exclude(code=WELCOME).values_list("max_uses", flat=True)) == {1}

    def test_a_website_cart_of_three_t_shirts_gets_one_free(self):
        priced = services.price(channel="website", lines={"AT-COT-TRG-M": 2, "AT-COT-DEN-M": 1}, at=TUESDAY_MORNING)
        # Buy 2 get 1 (exclusive, 199,000 off) beats the stackable spend-500,000 promotion (50,000 off).
        assert applied(priced) == {"ao-thun-mua-2-tang-1"}
        assert priced.subtotal_vnd == 597_000 and priced.discount_vnd == 199_000 and priced.total_vnd == 398_000

    def test_stackable_promotions_add_up_and_the_fee_follows_the_distance(self):
        # Two shirts (10% off each) and a jeans: 798,000 + 549,000, less 79,800, then 50,000 off a cart over 500,000.
        lines = {"ASM-OX-TRG-M": 2, "QJ-SLIM-XD-30": 1}
        near = services.price(channel="website", lines=lines, at=TUESDAY_MORNING, delivery=engine.Delivery(2.5))
        assert applied(near) == {"so-mi-giam-10", "mua-500k-giam-50k"}
        assert near.discount_vnd == 79_800 + 50_000
        assert near.delivery_fee_vnd == 0 and near.fee_reason == "free over 700000 VND"
        small = {"MU-LUOI-DEN-OS": 1}
        fees = [services.price(channel="website", lines=small, at=TUESDAY_MORNING,
                               delivery=engine.Delivery(km)).delivery_fee_vnd for km in (2.5, 6, 12, 45)]
        assert fees == [15_000, 25_000, 35_000, 35_000]
        assert services.price(channel="website", lines=small, at=TUESDAY_MORNING).delivery_fee_vnd == 0  # pickup

    def test_the_beach_bundle_and_the_welcome_code(self):
        bundle = {"NON-LA-TN-OS": 1, "TUI-COI-TN-OS": 1, "DEP-LE-XNH-40": 1}
        priced = services.price(channel="website", lines=bundle, at=TUESDAY_MORNING)
        assert applied(priced) == {"combo-di-bien"} and priced.total_vnd == 329_000
        with_code = services.price(channel="website", lines=bundle, at=TUESDAY_MORNING, codes=["welcome50"])
        assert applied(with_code) == {"combo-di-bien", "welcome50"} and with_code.total_vnd == 279_000
        single = services.price(channel="website", lines=bundle, at=TUESDAY_MORNING, codes=[single_use_codes()[1]])
        assert single.total_vnd == 279_000

    def test_gold_members_get_5_percent_and_free_delivery(self):
        Member.objects.create(phone="+84909000111", name="Trần Thị Vàng", tier="gold")
        lines = {"MU-LUOI-DEN-OS": 2}
        priced = services.price(channel="website", lines=lines, member_phone="+84909000111", at=TUESDAY_MORNING,
                                delivery=engine.Delivery(6))
        assert applied(priced) == {"hoi-vien-vang-5"} and priced.discount_vnd == 14_900
        assert priced.delivery_fee_vnd == 0 and priced.fee_reason == "free for gold members"

    def test_happy_hour_at_the_tills_only_and_hanoi_prices_in_hanoi(self):
        till = settings.PRICING_TILL_CHANNEL
        hcm, hanoi = Store.objects.get(code="HCM-Q1-001"), Store.objects.get(code="HN-HK-001")
        lines = {"MU-LUOI-DEN-OS": 1}
        assert applied(services.price(channel=till, lines=lines, store=hcm, at=TUESDAY_4PM)) == {"gio-vang-cua-hang"}
        assert applied(services.price(channel=till, lines=lines, store=hcm, at=TUESDAY_MORNING)) == set()
        assert applied(services.price(channel="website", lines=lines, at=TUESDAY_4PM)) == set()
        saturday_4pm = TUESDAY_4PM + timedelta(days=4)
        assert applied(services.price(channel=till, lines=lines, store=hcm, at=saturday_4pm)) == set()
        ao_dai = {"AD-LUA-DO-M": 1}
        in_hanoi = services.price(channel=till, lines=ao_dai, store=hanoi, at=TUESDAY_MORNING)
        in_hcm = services.price(channel=till, lines=ao_dai, store=hcm, at=TUESDAY_MORNING)
        assert (in_hanoi.line("AD-LUA-DO-M").unit_price_vnd, in_hanoi.line("AD-LUA-DO-M").price_source) == (
            1_350_000, "hanoi-prices")
        assert in_hcm.line("AD-LUA-DO-M").unit_price_vnd == 1_290_000

    def test_weekend_online_prices_hold_on_the_website_at_the_weekend(self):
        saturday, monday = coming_weekend(datetime.now(HCM))
        assert saturday.weekday() == 5 and monday - saturday == timedelta(days=2)
        lines = {"GI-SNK-TRG-40": 1}
        weekend = services.price(channel="website", lines=lines, at=saturday + timedelta(hours=10))
        assert weekend.line("GI-SNK-TRG-40").unit_price_vnd == 590_000
        assert weekend.line("GI-SNK-TRG-40").price_source == "weekend-online"
        till = services.price(channel=settings.PRICING_TILL_CHANNEL, lines=lines, store=Store.objects.get(code="HCM-Q1-001"),
                              at=saturday + timedelta(hours=10))
        assert till.line("GI-SNK-TRG-40").unit_price_vnd == 690_000
        after = services.price(channel="website", lines=lines, at=monday + timedelta(hours=1))
        assert after.line("GI-SNK-TRG-40").unit_price_vnd == 690_000


@pytest.mark.parametrize(("now", "saturday"), [
    (datetime(2025, 6, 10, 9, 0, tzinfo=HCM), datetime(2025, 6, 14, tzinfo=HCM)),  # a Tuesday: the coming one
    (datetime(2025, 6, 14, 9, 0, tzinfo=HCM), datetime(2025, 6, 14, tzinfo=HCM)),  # a Saturday: this one
    (datetime(2025, 6, 15, 23, 0, tzinfo=HCM), datetime(2025, 6, 14, tzinfo=HCM)),  # a Sunday: this one
])
def test_the_weekend_is_this_one_or_the_next(now, saturday):
    assert coming_weekend(now) == (saturday, saturday + timedelta(days=2))
