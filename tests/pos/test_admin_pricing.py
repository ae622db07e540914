"""The till receipt admin shows what the till said about its prices (codes, promotions, a manager's override) and
what the policy would have charged, read-only, with the price exceptions the receipt queued."""

import re

import pytest
from django.urls import reverse

from orders.pos.models import TillReceipt
from tests.pos.conftest import receipt, sync

pytestmark = pytest.mark.django_db


def test_a_receipts_pricing_is_shown_read_only(shop, admin_client):
    body = receipt([("NON-LA", 1, 30_000)], rid="ADM-1", codes=["SUMMER-X"],
                   promotions=[{"promotion": "hat-10", "code": "SUMMER-X", "discount_vnd": 5_000}],
                   price_override={"reason": "display unit, scratched", "staff_id": "QL-0042"})
    assert sync(shop["api_a"], [body]).json()["results"][0]["status"] == "applied"
    r = TillReceipt.objects.get(receipt_id="ADM-1")
    html = admin_client.get(reverse("admin:pos_tillreceipt_change", args=[r.pk])).content.decode()
    assert "SUMMER-X" in html and "hat-10 (SUMMER-X): 5,000 ₫" in html
    assert "display unit, scratched (staff QL-0042)" in html
    assert "50,000 ₫" in html  # the policy's total for the hat, beside the till's 30,000
    # Read-only: no form to save, and the queue is one click away with this receipt's exceptions (2: the code, the
    # hat sold below the policy under the override).
    assert 'name="_save"' not in html
    assert "receipt_id=ADM-1" in html and ">2</a>" in html
    listing = admin_client.get(reverse("admin:pos_tillreceipt_changelist")).content.decode()
    assert "ADM-1" in listing
    # The link opens the price-exception queue on this receipt's two exceptions.
    link = re.search(r'href="([^"]*receipt_id=ADM-1)"', html).group(1).replace("&amp;", "&")
    queue = admin_client.get(link)
    assert queue.status_code == 200 and "ADM-1" in queue.content.decode()
    assert queue.context["cl"].result_count == 2
