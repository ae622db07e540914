"""One phone normaliser (loyalty.phones) for customers and members: a number the tills and loyalty refuse is refused
at order placement too. Before, orders had its own normaliser, which let phonenumbers turn letters into digits:
"0901 234 ABC" placed an order for +84901234222 while the till and loyalty refused the same number."""

import pytest

from inventory.models import StockMovement
from loyalty.exceptions import InvalidPhone
from loyalty.phones import normalize_phone
from orders.models import Order
from tests.orders.conftest import BEN_THANH

pytestmark = pytest.mark.django_db

REFUSED_BY_LOYALTY = ["0901 234 ABC", "0901234567 ext. 5", "tel:0901234567", "0901234567;", "123"]


@pytest.mark.parametrize("phone", REFUSED_BY_LOYALTY)
def test_a_number_loyalty_refuses_is_refused_at_placement(api, chain, phone):
    with pytest.raises(InvalidPhone):
        normalize_phone(phone)
    movements = StockMovement.objects.count()
    r = api.post("/api/v1/orders/", {
        "lines": [{"sku": "AO-THUN-M", "qty": 1}], "customer": {"name": "Khách", "phone": phone},
        "method": "delivery", "destination": BEN_THANH,
    }, format="json", HTTP_IDEMPOTENCY_KEY=f"phone-{phone}")
    assert r.status_code == 400, r.content
    assert r.json()["code"] == "invalid_phone"
    assert Order.objects.count() == 0 and StockMovement.objects.count() == movements


def test_the_same_number_written_three_ways_is_one_customer(api, chain):
    numbers = []
    for n, phone in enumerate(["0901 234 567", "+84 90 123 4567", "(090) 1234567"]):
        r = api.post("/api/v1/orders/", {
            "lines": [{"sku": "AO-THUN-M", "qty": 1}], "customer": {"name": "Khách", "phone": phone},
            "method": "delivery", "destination": BEN_THANH,
        }, format="json", HTTP_IDEMPOTENCY_KEY=f"same-{n}")
        assert r.status_code == 201, r.content
        numbers.append(r.json()["number"])
    assert set(Order.objects.filter(number__in=numbers).values_list("customer_phone", flat=True)) == {"+84901234567"}
    assert normalize_phone("(090) 1234567") == "+84901234567"
