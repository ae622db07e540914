"""A simulated till goes offline, queues sales, comes back and syncs them out of order, twice, with lost answers."""

import pytest

from bench.pos.till import SimulatedTill
from inventory.models import MovementReason, StockMovement
from inventory.pos.models import TillReceipt
from loyalty.models import Member
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
