"""A simulated till goes offline, queues sales, comes back and syncs them out of order, twice, with lost answers."""

import pytest

from bench.pos.till import SimulatedTill
from inventory.models import MovementReason, StockMovement
from loyalty.models import Member
from orders.pos.models import TillReceipt
from tests.conftest import put_stock
from tests.pos.conftest import audits_clean, stock_of

pytestmark = pytest.mark.django_db


def _poster(client):
    def post(path, body):
        res = client.post(path, body, format="json")
        return res.status_code, res.json()

    return post


def test_offline_queue_then_sync_applies_every_receipt_once(shop):
    put_stock(shop["a"], shop["shirt"], 20)
    put_stock(shop["a"], shop["hat"], 5)
    till = SimulatedTill(name="A-T1", post=_poster(shop["api_a"]), batch_size=7, seed=3)
    till.sell([("AO-THUN-M", 1, 100_000)])  # online: sent at once
    assert not till.queue and len(till.confirmed) == 1
    till.online = False
    for i in range(20):
        lines = [("AO-THUN-M", 1, 100_000)] if i % 4 else [("NON-LA", 1, 50_000)]
        till.sell(lines, phone="0901234567" if i % 3 == 0 else None)
    assert len(till.queue) == 20 and TillReceipt.objects.count() == 1  # nothing reached the server
    till.online = True
    till.sync(shuffle=True, duplicate_share=0.3, lose_answer_share=0.5)
    assert not till.queue and not till.rejected and len(till.confirmed) == 21
    assert till.sent_batches > 4  # lost answers were resent
    assert TillReceipt.objects.filter(store=shop["a"]).count() == 21
    assert stock_of(shop["a"], shop["shirt"]).on_hand == 30 - 16
    assert stock_of(shop["a"], shop["hat"]).on_hand == 8 - 5
    assert StockMovement.objects.filter(reason=MovementReason.SALE).count() == 21
    assert Member.objects.get().available == sum(10 if i % 4 else 5 for i in range(20) if i % 3 == 0)
    assert audits_clean()


def test_two_offline_tills_and_a_count_in_between_end_with_the_shelf(shop):
    """The shop floor as it happens: two tills of one store lose the network and keep selling; the stock team counts
    the shelf (which already lacks what the offline tills sold) and sends the count at once; the tills sell a few
    more, then come back and sync everything, shuffled, with duplicates and lost answers. The ledger ends equal to
    the shelf: the sales made before the count are not taken twice, the ones after it are not lost."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.pos.conftest import backdate_ledger, store_client

    backdate_ledger(hours=4)
    now = timezone.now()
    shelf = stock_of(shop["a"], shop["shirt"]).on_hand  # 10 at the fixture
    tills = [SimulatedTill(name=f"A-T{n}", post=_poster(store_client(shop["a"], name=f"till-{n}")), online=False,
                           batch_size=4, seed=n) for n in (1, 2)]
    sent = []
    for i in range(6):  # before the count: 6 units leave the shelf
        sent += [tills[i % 2].sell([("AO-THUN-M", 1, 100_000)], at=now - timedelta(hours=3, minutes=-i))]
    shelf -= 6
    counted_at = now - timedelta(hours=2)
    res = shop["api_a"].post("/api/v1/pos/counts/", {"count_id": "A-CC-1", "counted_at": counted_at.isoformat(),
                                                      "lines": [{"sku": "AO-THUN-M", "counted": shelf}]}, format="json")
    assert res.status_code == 201 and res.json()["lines"][0]["adjustment"] == -6
    for i in range(3):  # after the count: 3 more
        sent.append(tills[i % 2].sell([("AO-THUN-M", 1, 100_000)], at=now - timedelta(hours=1, minutes=i)))
    shelf -= 3
    for till in tills:
        till.online = True
        till.sync(shuffle=True, duplicate_share=0.5, lose_answer_share=0.3)
        till.sync(shuffle=True)  # nothing left: a no-op
    assert all(not till.queue and not till.rejected for till in tills)
    assert sum(len(t.confirmed) for t in tills) == 9
    # Once more from scratch, as a till restored from a backup would: every receipt is a duplicate.
    again = shop["api_a"].post("/api/v1/pos/sales/", {"receipts": sent[::-1]}, format="json").json()
    assert again["summary"] == {"applied": 0, "duplicate": 9, "rejected": 0}
    assert stock_of(shop["a"], shop["shirt"]).on_hand == shelf == 1
    late = TillReceipt.objects.filter(lines__late_for_count__isnull=False).count()
    assert late == 6
    assert audits_clean()
