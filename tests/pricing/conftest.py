"""Fixtures for the pricing tests, shared with the till and returns tests (import what you need from here).

- `_fresh_policy_cache` (autouse here): each process caches the policy by its version, and versions start again
  at each test's rolled-back database, so the cache is forgotten around every test.
- `pricing_chain`: tests.orders.conftest's `chain` (stores HCM-Q1-001 "near", HCM-Q3-001 "mid", HCM-Q7-001 "far"
  around Bến Thành; AO-THUN-M 199,000 ₫, TUI-VAI 99,000 ₫, NON-LA 150,000 ₫) with a policy on it:

      store group  q1           HCM-Q1-001 only
      price list   q1-prices    AO-THUN-M at 179,000 ₫ in group q1, every channel
      promotion    hats-10      10 % off NON-LA (a SKU promotion), everyone, every channel and store
      promotion    gold-5       5 % off the cart for gold members only
      promotion    tet-coupon   50,000 ₫ off a cart of 300,000 ₫ or more, with a code
      code         TET2025      tet-coupon's, single-use, anyone's
      fee rule     hcm-3km      up to 3 km: 15,000 ₫, free from 500,000 ₫ of goods
      fee rule     hcm-10km     up to 10 km: 30,000 ₫

  The dict it returns holds the stores and products of `chain` plus the policy's rows by name.
- `make_promotion(**fields)`, `make_code(promotion, text, **fields)`, `member_with(phone, tier=, points=)`: build
  more of the policy (each policy write raises the version, as the admin does).
"""

import itertools

import pytest

from loyalty import services as loyalty
from loyalty.models import Member
from orders.pricing import engine, selectors
from orders.pricing import services as pricing
from orders.pricing.models import Code, DeliveryFeeRule, PriceList, PriceListRow, Promotion, StoreGroup
from tests.orders.conftest import BEN_THANH, CUSTOMER, chain  # noqa: F401 (chain: a fixture used through pricing_chain)

PHONE = "+84901234567"  # CUSTOMER's phone in E.164
_keys = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_policy_cache():
    selectors.forget_cached_policy()
    yield
    selectors.forget_cached_policy()


def make_promotion(**fields) -> Promotion:
    """A promotion (a cart percent-off unless told otherwise), in force from now on, and the policy's version up."""
    fields.setdefault("name", fields["code"])
    fields.setdefault("kind", engine.Kind.PERCENT_OFF)
    fields.setdefault("target", engine.Target.CART)
    promo = Promotion.objects.create(**fields)
    pricing.policy_changed()
    return promo


def make_code(promotion: Promotion, text: str, **fields) -> Code:
    """A code of `promotion` (single-use unless max_uses says otherwise)."""
    code = Code.objects.create(code=text, promotion=promotion, **fields)
    pricing.policy_changed()
    return code


def member_with(phone: str = PHONE, *, tier: str = "member", points: int = 0) -> Member:
    """The loyalty member behind `phone`, of `tier`, with `points` available (earned at a till, vested at once)."""
    member, _ = loyalty.get_or_create_member(phone=phone, name="Nguyễn Văn A", channel="website")
    if points:  # at the base tier's rate: 10,000 ₫ a point
        loyalty.earn_points(
            member=member, amount_paid_vnd=points * 10_000, idempotency_key=f"test:give:{next(_keys)}",
            source=loyalty.PostingSource(channel="store", store="HCM-Q1-001", reference="R-1", actor="test"),
        )
    Member.objects.filter(pk=member.pk).update(tier=tier)
    return Member.objects.get(pk=member.pk)


@pytest.fixture
def pricing_chain(chain):  # noqa: F811 (the fixture imported above)
    q1 = StoreGroup.objects.create(code="q1", name="District 1", basis=StoreGroup.Basis.OTHER)
    q1.stores.add(chain["near"])
    prices = PriceList.objects.create(code="q1-prices", name="District 1 prices", store_group=q1)
    PriceListRow.objects.create(price_list=prices, product=chain["shirt"], price_vnd=179_000)
    hats = Promotion.objects.create(code="hats-10", name="Hats 10% off", kind=engine.Kind.PERCENT_OFF,
                                    target=engine.Target.SKU, skus=["NON-LA"], percent=10)
    gold = Promotion.objects.create(code="gold-5", name="Gold members 5% off", kind=engine.Kind.PERCENT_OFF,
                                    target=engine.Target.CART, percent=5, tiers=["gold"])
    tet = Promotion.objects.create(code="tet-coupon", name="Tết coupon", kind=engine.Kind.AMOUNT_OFF,
                                   target=engine.Target.CART, amount_vnd=50_000, min_spend_vnd=300_000,
                                   requires_code=True)
    coupon = Code.objects.create(code="TET2025", promotion=tet, max_uses=1)
    near_fee = DeliveryFeeRule.objects.create(code="hcm-3km", max_km=3, fee_vnd=15_000, free_over_vnd=500_000)
    far_fee = DeliveryFeeRule.objects.create(code="hcm-10km", max_km=10, fee_vnd=30_000)
    pricing.policy_changed()
    return {**chain, "q1": q1, "q1_prices": prices, "hats": hats, "gold": gold, "tet": tet, "coupon": coupon,
            "near_fee": near_fee, "far_fee": far_fee}


__all__ = ["BEN_THANH", "CUSTOMER", "PHONE", "make_code", "make_promotion", "member_with"]
