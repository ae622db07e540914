"""An allocation (which store ships which units of which order) and the sequential, one-order-at-a-time way of
building one that the greedy seed and both benchmark baselines share.

Keeping the residual stock and capacity in one small class means the greedy, the baselines and the split repair all
apply the same hard limits in the same integers as the CP-SAT model and the validator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .candidates import Candidate
from .problem import Order, Problem


@dataclass(slots=True)
class Shipment:
    store: int
    lines: dict[str, int]  # sku -> units, only positive
    cost: float
    workload_milli: int


# order index -> its shipments; an order absent (or with no shipments) is unassigned
Allocation = dict[int, list[Shipment]]


def shipment_workload(cand: Candidate, order: Order, lines: dict[str, int]) -> int:
    """The picking workload of a shipment: the shares of the lines it touches (all of them = the order's workload)."""
    return sum(w for line, w in zip(order.lines, cand.line_workloads, strict=True) if lines.get(line.sku, 0) > 0)


class Residual:
    """Stock and capacity left while orders are assigned one after another."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.stock: dict[tuple[int, str], int] = dict(problem.stock_by_index())
        self.capacity = [s.capacity_milli for s in problem.stores]

    def can_whole(self, order: Order, cand: Candidate) -> bool:
        if self.capacity[cand.store] < cand.workload_milli:
            return False
        return all(self.stock.get((cand.store, ln.sku), 0) >= ln.qty for ln in order.lines)

    def take(self, shipments: Iterable[Shipment], sign: int = 1) -> None:
        for sh in shipments:
            self.capacity[sh.store] -= sign * sh.workload_milli
            for sku, q in sh.lines.items():
                self.stock[(sh.store, sku)] = self.stock.get((sh.store, sku), 0) - sign * q

    def release(self, shipments: Iterable[Shipment]) -> None:
        self.take(shipments, sign=-1)

    def whole(self, order: Order, cand: Candidate) -> Shipment:
        return Shipment(cand.store, {ln.sku: ln.qty for ln in order.lines}, cand.cost, cand.workload_milli)

    def partial(self, order: Order, cand: Candidate, missing: dict[str, int]) -> dict[str, int]:
        """What this store could ship of the missing units now, within its remaining capacity (largest lines first,
        so that capacity goes where it saves most shipments elsewhere)."""
        room = self.capacity[cand.store]
        take: dict[str, int] = {}
        pairs = sorted(zip(order.lines, cand.line_workloads, strict=True), key=lambda p: -missing.get(p[0].sku, 0))
        for line, w in pairs:
            need = missing.get(line.sku, 0)
            have = min(need, self.stock.get((cand.store, line.sku), 0))
            if have > 0 and w <= room:
                take[line.sku] = have
                room -= w
        return take


SplitPicker = Callable[[Order, Sequence[Candidate], Residual, dict[str, int]], tuple[Candidate, dict[str, int]] | None]


def split_in_order(order: Order, cands: Sequence[Candidate], residual: Residual, missing: dict[str, int]):
    """Baseline split: the first store in the list (nearest, or highest ranked) that has anything missing."""
    for cand in cands:
        take = residual.partial(order, cand, missing)
        if take:
            return cand, take
    return None


def split_most_units(order: Order, cands: Sequence[Candidate], residual: Residual, missing: dict[str, int]):
    """Greedy set cover: the store that ships most of what is missing (cheaper on ties) -> usually fewest parcels."""
    best = None
    for cand in cands:
        take = residual.partial(order, cand, missing)
        units = sum(take.values())
        if units and (best is None or units > best[0]):
            best = (units, cand, take)
    return (best[1], best[2]) if best else None


def assign_split(
    order: Order, cands: Sequence[Candidate], residual: Residual, picker: SplitPicker
) -> list[Shipment] | None:
    """Serve the order from several stores, taking from `residual` as it goes; None (and nothing taken) if the
    stores cannot cover every unit."""
    missing = {ln.sku: ln.qty for ln in order.lines}
    shipments: list[Shipment] = []
    remaining = list(cands)
    while any(missing.values()):
        picked = picker(order, remaining, residual, missing)
        if picked is None:
            residual.release(shipments)
            return None
        cand, take = picked
        sh = Shipment(cand.store, take, cand.cost, shipment_workload(cand, order, take))
        residual.take([sh])
        shipments.append(sh)
        remaining.remove(cand)
        for sku, q in take.items():
            missing[sku] -= q
    return shipments


def assign_sequentially(
    problem: Problem,
    sequence: Iterable[int],
    cand_lists: Sequence[Sequence[Candidate]],
    *,
    choose_whole: Callable[[Order, list[Candidate], Residual], Candidate] | None,
    picker: SplitPicker,
    residual: Residual | None = None,
    split: bool = True,
) -> Allocation:
    """One order at a time in `sequence`: a single store that can serve it whole if any (chosen by `choose_whole`;
    None: the first in the candidate list),
    else a split if the order allows it, else it stays unassigned."""
    residual = residual or Residual(problem)
    alloc: Allocation = {}
    for oi in sequence:
        order = problem.orders[oi]
        cands = cand_lists[oi]
        if choose_whole is None:  # the first that can, in list order: no need to test the others
            found = next((c for c in cands if residual.can_whole(order, c)), None)
            whole = [found] if found else []
        else:
            whole = [c for c in cands if residual.can_whole(order, c)]
        if whole:
            sh = residual.whole(order, whole[0] if choose_whole is None else choose_whole(order, whole, residual))
            residual.take([sh])
            alloc[oi] = [sh]
        elif split and order.splittable and len(cands) > 1:
            shipments = assign_split(order, cands, residual, picker)
            if shipments:
                alloc[oi] = shipments
    return alloc
