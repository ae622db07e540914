"""A small simulated till: it sells while offline, queues its receipts, and syncs them later in batches — possibly
out of order, more than once, or with the answer lost on the way back. The server must end up with every receipt
applied exactly once.

`post` is any callable `(path, body) -> (status_code, json)`: a DRF test client in the tests, an HTTP session in
the benchmark.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

Post = Callable[[str, dict], tuple[int, dict]]
SYNC_PATH = "/api/v1/pos/sales/"


@dataclass
class SimulatedTill:
    name: str
    post: Post
    online: bool = True
    batch_size: int = 200
    seed: int = 0
    queue: list[dict] = field(default_factory=list)  # receipts not yet confirmed by the server
    confirmed: dict[str, str] = field(default_factory=dict)  # receipt id -> applied | duplicate
    rejected: dict[str, dict] = field(default_factory=dict)
    sent_batches: int = 0
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def sell(self, lines: list[tuple[str, int, int]], *, phone: str | None = None, at: datetime | None = None) -> dict:
        """Ring up a sale: lines are (sku, qty, unit price). Paid in cash. Queued; sent at once if online."""
        self._seq += 1
        total = sum(qty * price for _, qty, price in lines)
        receipt = {
            "receipt_id": f"{self.name}-{self._seq:07d}",
            "sold_at": (at or datetime.now(UTC)).isoformat(),
            "lines": [{"sku": sku, "qty": qty, "unit_price_vnd": price} for sku, qty, price in lines],
            "tenders": [{"type": "cash", "amount_vnd": total}],
        }
        if phone:
            receipt["member_phone"] = phone
        self.queue.append(receipt)
        if self.online:
            self.sync()
        return receipt

    def sync(self, *, shuffle: bool = False, duplicate_share: float = 0.0, lose_answer_share: float = 0.0) -> int:
        """Send the queue in batches. With `shuffle` the order is mixed, `duplicate_share` of receipts are sent twice
        in the same batch, and `lose_answer_share` of batches have their answer lost (the till keeps them queued and
        sends them again). Returns the number of batches sent."""
        if not self.online:
            return 0
        sent = 0
        while self.queue:
            pending = list(self.queue)
            if shuffle:
                self.rng.shuffle(pending)
            batch = pending[: self.batch_size]
            extra = [r for r in batch if self.rng.random() < duplicate_share]
            status, body = self.post(SYNC_PATH, {"receipts": batch + extra})
            sent += 1
            self.sent_batches += 1
            if status != 200:
                raise RuntimeError(f"sync failed: {status} {body}")
            if self.rng.random() < lose_answer_share:
                continue  # the answer never reached the till: it will send the same receipts again
            done = set()
            for outcome in body["results"]:
                rid = outcome["receipt_id"]
                if outcome["status"] in ("applied", "duplicate"):
                    self.confirmed.setdefault(rid, outcome["status"])
                else:
                    self.rejected[rid] = outcome
                done.add(rid)
            self.queue = [r for r in self.queue if r["receipt_id"] not in done]
        return sent
