"""The shop floor is the truth (issue #18): a physical event at a store (a till sale, a count that finds fewer units,
goods found damaged, a transfer shipped) is recorded as it happened, never refused for stock.

When the units it needs are not free on the locked row (on hand, not reserved, not quarantined), it takes them from
the reservations on that row, in the order the caller's policy gives (`takeable`, from orders: checkout holds, then
fulfilments not yet packed), and what even those cannot cover is beyond the ledger: a shortfall, which flags the row
for a count (the database demands it) and keeps the row's online ATP at zero until the count settles it.

ShopFloor plans the takes against rows locked by lock_stock_rows (so the reservations it reads cannot change under
it: every reservation write locks its stock row first), `write` shrinks or deletes the reservations taken and appends
one TakenReservation per (reservation, event) for orders to reconcile their holders after the commit; the caller
applies each take's movement (`FloorTake.delta`, or its own for a count) on the same rows. States of one row, all
kept by inventory_audit as sums of movement deltas:

    on_hand      units the ledger believes are in the store
    reserved     of those, set aside for checkout holds and placed orders (sum of live Reservation rows)
    unavailable  of those, quarantined (damaged, recalled)
    safety       a buffer online sales leave alone (tills may sell it)
    shortfall    units events took beyond on_hand: the ledger lost track; needs_count is set while it is > 0

Invariants (database constraints): every state >= 0, reserved + unavailable <= on_hand, shortfall = 0 or needs_count.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db.models import F
from django.utils import timezone

from inventory.models import Reservation, Stock, TakenReservation
from inventory.services.ledger import Pair, StockDelta

# The caller's policy: of a row's reservations, those an event may take, in the order to take them.
Takeable = Callable[[Sequence[Reservation]], list[Reservation]]


@dataclass
class FloorTake:
    """How one event's units of one row were found: `free` (on hand, not set aside), `reserved` (taken from
    reservations: `taken`, each with its units) and `beyond` (more than the ledger had: a shortfall)."""

    pair: Pair
    cause: str
    free: int = 0
    reserved: int = 0
    beyond: int = 0
    taken: list[tuple[Reservation, int]] = field(default_factory=list)

    @property
    def units(self) -> int:
        return self.free + self.reserved + self.beyond

    def leaving(self) -> StockDelta:
        """The movement of units that left the store (a sale, a transfer shipped): on hand down by what the ledger
        had of them, reserved down by what was taken from reservations, the rest a shortfall."""
        return StockDelta(on_hand=-(self.free + self.reserved), reserved=-self.reserved, shortfall=self.beyond)

    def quarantined(self) -> StockDelta:
        """The movement of units found damaged: they stay on hand but go to quarantine (unavailable), out of the
        reservations they were taken from; what the ledger did not have is a shortfall."""
        return StockDelta(unavailable=self.free + self.reserved, reserved=-self.reserved, shortfall=self.beyond)


class ShopFloor:
    """Takes for the events of one transaction, planned against `rows` (from lock_stock_rows, not changed by this
    class) in the order they are asked for: each take sees the free units and reservations the earlier ones left."""

    def __init__(self, rows: dict[Pair, Stock], *, takeable: Takeable) -> None:
        self.rows = rows
        self._takeable = takeable
        self._free_used: dict[Pair, int] = defaultdict(int)
        self._queues: dict[Pair, list[list]] = {}  # pair -> [[reservation, units left], ...] in taking order
        self._takes: list[FloorTake] = []

    def sellable(self, pair: Pair) -> int:
        """Units a till may still sell from the row without taking anyone's: on hand, not reserved or quarantined
        (safety included), less what earlier takes used."""
        row = self.rows.get(pair)
        if row is None:
            return 0
        return max(0, row.on_hand - row.reserved - row.unavailable - self._free_used[pair])

    def _queue(self, pair: Pair) -> list[list]:
        if pair not in self._queues:
            on_row = list(Reservation.objects.filter(store_id=pair[0], product_id=pair[1]).order_by("pk"))
            self._queues[pair] = [[r, r.quantity] for r in self._takeable(on_row)] if on_row else []
        return self._queues[pair]

    def take(self, pair: Pair, units: int, *, cause: str, use_free: bool = True) -> FloorTake:
        """Find `units` of the row for the event `cause` (its ledger reference): free units first (unless
        `use_free` is False: a count that already set on hand), then reservations in the policy's order, then
        beyond the ledger."""
        take = FloorTake(pair=pair, cause=cause)
        if use_free:
            take.free = min(units, self.sellable(pair))
            self._free_used[pair] += take.free
        need = units - take.free
        if need and pair in self.rows:
            for entry in self._queue(pair):
                if not need:
                    break
                n = min(need, entry[1])
                if n:
                    entry[1] -= n
                    take.taken.append((entry[0], n))
                    take.reserved += n
                    need -= n
        take.beyond = need
        self._takes.append(take)
        return take

    def undo(self, take: FloorTake) -> None:
        """Give back what `take` found (its event was refused for another reason, e.g. the points tender). A take
        given back already, or never made here, is refused before anything changes."""
        index = next((i for i, t in enumerate(self._takes) if t is take), None)
        if index is None:
            raise ValueError("this take is not pending on this floor")
        del self._takes[index]
        self._free_used[take.pair] -= take.free
        queue = {id(entry[0]): entry for entry in self._queues.get(take.pair, [])}
        for reservation, n in take.taken:
            queue[id(reservation)][1] += n

    @property
    def takes(self) -> list[FloorTake]:
        return list(self._takes)

    def write(self, *, kind: str, actor: str) -> list[int]:
        """Shrink (or delete, when nothing is left) every reservation taken, and append one TakenReservation per
        (reservation, event) for orders to reconcile the holders. Call once, in the events' transaction, with the
        takes' movements applied on the same rows. Returns the TakenReservation ids."""
        per_reservation: dict[int, int] = defaultdict(int)
        found: dict[int, Reservation] = {}
        per_event: dict[tuple[int, str], int] = defaultdict(int)
        for take in self._takes:
            for reservation, n in take.taken:
                per_reservation[reservation.pk] += n
                found[reservation.pk] = reservation
                per_event[(reservation.pk, take.cause)] += n
        gone = [pk for pk, n in per_reservation.items() if n >= found[pk].quantity]
        if gone:
            Reservation.objects.filter(pk__in=gone).delete()
        for pk, n in sorted(per_reservation.items()):
            if pk not in gone:
                Reservation.objects.filter(pk=pk).update(quantity=F("quantity") - n)
        now = timezone.now()
        rows = TakenReservation.objects.bulk_create([
            TakenReservation(
                store_id=found[pk].store_id, product_id=found[pk].product_id, reference=found[pk].reference,
                units=n, kind=kind, cause=cause[:120], channel_id=found[pk].channel_id, actor=actor[:150],
                created_at=now,
            )
            for (pk, cause), n in sorted(per_event.items())
        ])
        self._takes = []
        return [row.pk for row in rows]
