"""Local search on a complete allocation: moves that lower the objective (more orders served, then fewer
shipments, then less delivery cost), each checked against the same residual stock and capacity as everything else.

Why it exists: CP-SAT given two seconds on a shared two-core machine often stops with a plan that serves the most
orders and uses few shipments but leaves delivery km on the table (an order kept at a farther store because the
nearer one is full of orders that could go elsewhere just as cheaply). How close the search gets then depends on the
CPU it was given; these moves are deterministic and cheap, so the plan's km no longer does.

Moves, for every order in turn until a round changes nothing (or the deadline):
- relocate: serve the order whole from a cheaper store that has room now;
- eject: serve it whole from a cheaper (or, for an unserved or split order, any) store by moving one order that
  store serves to another store, when the two changes together lower the objective; failing that, a chain one
  level deeper (the moved order takes the place of a third order, which moves on);
- re-split: a split or unserved splittable order re-split over its nearest stores, if that is better.
Each move is scored with the problem's weights on the orders it touches; the workload-balance term is global, so
with a balance weight the search does not run (the CP-SAT model handles balance).
"""

from __future__ import annotations

import time
from collections import defaultdict

from .allocation import Allocation, Residual, Shipment, assign_split, split_most_units
from .candidates import OrderCandidates
from .problem import Problem

EPS = 1e-9


class _Search:
    def __init__(self, problem: Problem, ocs: list[OrderCandidates], alloc: Allocation, near: int) -> None:
        self.problem = problem
        self.w = problem.settings.weights
        self.alloc = alloc
        self.residual = Residual(problem)
        self.at_store: dict[int, set[int]] = defaultdict(set)
        for oi, shipments in alloc.items():
            self.residual.take(shipments)
            for sh in shipments:
                self.at_store[sh.store].add(oi)
        self.whole = [[c for c in oc.eligible if c.whole] for oc in ocs]
        self.near = [oc.eligible[:near] for oc in ocs]
        self.skip = [bool(oc.reason) for oc in ocs]
        self.eject_span = near
        self.chain_span = near // 4

    def value(self, shipments: list[Shipment] | None) -> float:
        if not shipments:
            return self.w.unserved
        return self.w.shipment * len(shipments) + self.w.cost * sum(sh.cost for sh in shipments)

    def _set(self, oi: int, shipments: list[Shipment] | None) -> None:
        """Replace the order's shipments (the old ones must already be released) and take the new ones."""
        if shipments:
            self.residual.take(shipments)
        self._record(oi, shipments)

    def _record(self, oi: int, shipments: list[Shipment] | None) -> None:
        """Replace the order's shipments in the plan; the residual already reflects the change."""
        for sh in self.alloc.get(oi, ()):
            self.at_store[sh.store].discard(oi)
        if shipments:
            self.alloc[oi] = shipments
            for sh in shipments:
                self.at_store[sh.store].add(oi)
        else:
            self.alloc.pop(oi, None)

    def improve_order(self, oi: int) -> bool:
        order = self.problem.orders[oi]
        old = self.alloc.get(oi) or []
        v_old = self.value(old)
        self.residual.release(old)
        # relocate: the cheapest store that can take it whole now
        for c in self.whole[oi]:
            v_new = self.w.shipment + self.w.cost * c.cost
            if v_new >= v_old - EPS:
                break
            if self.residual.can_whole(order, c):
                self._set(oi, [self.residual.whole(order, c)])
                return True
        if self._eject(oi, v_old):
            return True
        if order.splittable and (not old or len(old) > 1):
            split = assign_split(order, self.near[oi], self.residual, split_most_units)
            if split is not None:
                if self.value(split) < v_old - EPS:
                    # assign_split took its shipments already; record them without taking twice
                    self.residual.release(split)
                    self._set(oi, split)
                    return True
                self.residual.release(split)
        self.residual.take(old)
        return False

    def _eject(self, oi: int, v_old: float) -> bool:
        """Serve `oi` (released) whole at a store by moving one of that store's single-shipment orders elsewhere."""
        order = self.problem.orders[oi]
        res, w = self.residual, self.w
        for c in self.whole[oi][: self.eject_span]:
            v_new = w.shipment + w.cost * c.cost
            budget = v_old - v_new  # what the ejected order may cost more at its new store
            if budget <= EPS:
                break
            for b in list(self.at_store[c.store]):
                if b == oi:
                    continue
                b_ships = self.alloc[b]
                if len(b_ships) != 1:
                    continue
                b_order = self.problem.orders[b]
                b_cost = b_ships[0].cost
                res.release(b_ships)
                if not res.can_whole(order, c):
                    res.take(b_ships)
                    continue
                mine = res.whole(order, c)
                res.take([mine])
                moved = None
                for c3 in self.whole[b]:
                    if w.cost * (c3.cost - b_cost) >= budget - EPS:
                        break
                    if c3.store != c.store and res.can_whole(b_order, c3):
                        moved = c3
                        break
                if moved is not None:
                    theirs = res.whole(b_order, moved)
                    res.take([theirs])
                    self._record(b, [theirs])
                    self._record(oi, [mine])
                    return True
                if self._chain(oi, mine, b, b_cost, c.store, budget):
                    return True
                res.release([mine])
                res.take(b_ships)
        return False

    def _chain(self, oi: int, mine: Shipment, b: int, b_cost: float, taken: int, budget: float) -> bool:
        """One level deeper: `b` (released, `mine` taken at its store `taken`) goes to a store whose order `d` moves
        on to a third store, if the three changes together still lower the objective."""
        res, w = self.residual, self.w
        b_order = self.problem.orders[b]
        for c3 in self.whole[b][: self.chain_span]:
            extra_b = w.cost * (c3.cost - b_cost)
            if extra_b >= budget - EPS:
                break
            if c3.store == taken:
                continue
            for d in list(self.at_store[c3.store]):
                d_ships = self.alloc[d]
                if d in (oi, b) or len(d_ships) != 1:
                    continue
                d_order, d_cost = self.problem.orders[d], d_ships[0].cost
                res.release(d_ships)
                if not res.can_whole(b_order, c3):
                    res.take(d_ships)
                    continue
                theirs = res.whole(b_order, c3)
                res.take([theirs])
                for c4 in self.whole[d][: self.chain_span]:
                    if extra_b + w.cost * (c4.cost - d_cost) >= budget - EPS:
                        break
                    if c4.store != c3.store and res.can_whole(d_order, c4):
                        last = res.whole(d_order, c4)
                        res.take([last])
                        self._record(d, [last])
                        self._record(b, [theirs])
                        self._record(oi, [mine])
                        return True
                res.release([theirs])
                res.take(d_ships)
        return False

        return False


def improve(
    problem: Problem, ocs: list[OrderCandidates], alloc: Allocation, *, deadline: float, max_rounds: int = 6
) -> bool:
    """Improve `alloc` in place; True if anything changed. Stops at `deadline` (a time.perf_counter() value)."""
    if problem.settings.weights.balance > 0 or not problem.orders:
        return False
    search = _Search(problem, ocs, alloc, near=4 * problem.settings.candidates_k)
    changed_any = False
    # unserved first (the biggest gains), then split orders, then the farthest single shipments
    for _ in range(max_rounds):
        changed = False
        order_seq = sorted(
            (oi for oi in range(len(problem.orders)) if not search.skip[oi]),
            key=lambda oi: -search.value(search.alloc.get(oi)),
        )
        for n, oi in enumerate(order_seq):
            if n % 32 == 0 and time.perf_counter() > deadline:
                return changed_any
            if search.improve_order(oi):
                changed = changed_any = True
        if not changed:
            break
    return changed_any
