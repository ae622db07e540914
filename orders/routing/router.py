"""route(): a problem in, a plan out.

1. Candidates per order (rules, then the k cheapest that can serve it whole, or what a split needs).
2. Two complete seed plans: the greedy (hardest orders first, cheapest store that can serve whole, else the split
   that covers most units per parcel) and nearest-store-first, each improved by the local search (improve.py:
   relocations, ejections, re-splits). The better one is the fallback and the CP-SAT hint, and the stores the seeds
   used are added to the candidates, so the optimiser can never end up worse than that baseline on the objective,
   even where pruning dropped a store it needed.
3. A lower bound per order (one shipment from its cheapest whole store, or two from its two cheapest stores, or
   unserved). When the seed meets it, the seed is optimal and CP-SAT is skipped: a single order at checkout, and any
   wave where orders do not compete for stock or capacity, is answered in milliseconds.
4. Otherwise CP-SAT, hinted with the seed; the seed stays if CP-SAT finds nothing better. The local search then runs
   on CP-SAT's plan: under a short limit on a busy machine CP-SAT stops with km left on the table, and the search
   takes most of it back deterministically. CP-SAT stops early enough for that search, the merge below and writing
   the plan to fit in the limit.
5. Splits that the final plan no longer needs (a store could now serve the order whole) are merged back.

The objective is the weighted sum of the contract (unserved 1,000,000, shipment 500, cost 1 per km by default). With
distance costs inside delivery radii of a few km the weights are lexicographic in effect: one order served outweighs
any plausible number of shipments, one shipment outweighs the km of a whole reassignment chain.
"""

from __future__ import annotations

import time
from typing import Any

from .allocation import Allocation, Residual, assign_sequentially, split_in_order, split_most_units
from .baselines import nearest_allocation
from .candidates import Candidate, OrderCandidates, order_candidates, shared_index
from .cpsat import solve_wave
from .improve import improve
from .plan import build_plan, score
from .problem import Order, Problem

# Merging splits and writing the plan after the search: about 0.15 ms per order measured on a 1,000-order wave on a
# quiet 2-core machine, twice that when it is busy.
TAIL_S_PER_ORDER = 0.0003
FEW_ORDERS = 3  # up to this many: one CP-SAT worker and no local search (see route())


def route(
    problem: Problem | dict[str, Any],
    *,
    time_limit_s: float | None = None,
    num_workers: int | None = None,
    candidates_k: int | None = None,
    explain: bool | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Route a wave (or a single order) and return the plan JSON. Raises ProblemError for an invalid problem.
    `time_limit_s` (default: the problem's settings) bounds the CP-SAT search; 0 returns the seed plan."""
    t0 = time.perf_counter()
    index = shared_index(problem)
    problem = index.problem
    settings = problem.settings
    time_limit_s = settings.time_limit_s if time_limit_s is None else time_limit_s
    num_workers = num_workers or settings.num_workers

    ocs = order_candidates(index, candidates_k)
    greedy = greedy_allocation(problem, ocs)
    nearest = nearest_allocation(problem, ocs)
    # The limit covers the whole call: the local search on the seeds gets a tenth of it at most; the search on the
    # final plan and the merge and plan writing after it get what they are expected to take (a few times the seeds'
    # search, and a fraction of a millisecond per order), each capped at a tenth; CP-SAT gets the rest.
    ls_budget = 0.1 * time_limit_s if time_limit_s > 0 else 0.05
    tail = min(ls_budget, TAIL_S_PER_ORDER * len(problem.orders))
    final_ls = 0.0
    greedy_obj, nearest_obj = score(problem, greedy).objective, score(problem, nearest).objective
    seed_alloc, seed_obj = (greedy, greedy_obj) if greedy_obj <= nearest_obj else (nearest, nearest_obj)
    cand_lists = _with_seed_stores(problem, ocs, greedy, nearest)
    bound = lower_bound(problem, cand_lists, ocs)
    # A handful of orders (checkout) go to CP-SAT, which settles them in milliseconds; the search would only add to
    # the checkout's p99. Without CP-SAT (no time limit) it is all there is.
    searching = len(problem.orders) > FEW_ORDERS or time_limit_s <= 0
    if searching and seed_obj > bound + 1e-9:
        # not proven optimal already (a single order at checkout usually is): improve both seeds, keep the better
        ls_deadline = time.perf_counter() + ls_budget
        seeds = []
        for base in (greedy, nearest):
            improved = {oi: list(s) for oi, s in base.items()}
            t_ls = time.perf_counter()
            improve(problem, ocs, improved, deadline=ls_deadline)
            # CP-SAT's plan differs from the seed in more places, and CP-SAT stops a little late: reserve more
            final_ls = max(final_ls, 3 * (time.perf_counter() - t_ls), 0.05 * time_limit_s)
            seeds.append(improved)
        seed_alloc = min(seeds, key=lambda a: score(problem, a).objective)
        seed_obj = score(problem, seed_alloc).objective
        cand_lists = _with_seed_stores(problem, ocs, greedy, nearest, *seeds)
        bound = lower_bound(problem, cand_lists, ocs)  # more candidates: a bound at most as high, still valid
    alloc, status = seed_alloc, "greedy"

    if seed_obj <= bound + 1e-9:
        status = "optimal"
    elif time_limit_s > 0:
        # A handful of orders do not need the parallel portfolio; its start-up costs more than the search.
        workers = 1 if len(problem.orders) <= FEW_ORDERS else num_workers
        # The limit covers the whole call (parsing, candidates, model building), not only the search.
        result = solve_wave(
            problem,
            cand_lists,
            seed_alloc,
            time_limit_s=time_limit_s,
            num_workers=workers,
            seed=seed,
            deadline=t0 + time_limit_s - tail - min(ls_budget, final_ls),
        )
        if result.bound is not None:
            bound = max(bound, result.bound)
        if result.alloc is not None and score(problem, result.alloc).objective <= seed_obj + 1e-9:
            alloc, status = result.alloc, result.status
        if searching and improve(problem, ocs, alloc, deadline=t0 + time_limit_s - tail) and status == "optimal":
            status = "feasible"  # the search used stores the pruned model did not have

    if merge_needless_splits(problem, ocs, alloc) and status == "optimal":
        status = "feasible"  # the merged plan is better, so the model's optimum was not the true one
    return build_plan(
        problem, ocs, alloc, status=status, bound=bound, solve_seconds=time.perf_counter() - t0, explain=explain
    )


def greedy_allocation(problem: Problem, ocs: list[OrderCandidates]) -> Allocation:
    """The seed: pickups first (no alternative), then the orders with the fewest stores able to serve them whole,
    bigger baskets first, each to its cheapest store that can serve it whole; then the fewest-parcel split for
    splittable orders still unserved."""
    w = problem.settings.weights

    def key(oi: int) -> tuple:
        order = problem.orders[oi]
        # splittable orders last among equals: they have a way out that the others lack
        whole = sum(c.whole for c in ocs[oi].eligible)
        return (order.method != "pickup", whole, order.splittable, -len(order.lines), oi)

    def choose(order: Order, whole: list[Candidate], residual: Residual) -> Candidate:
        def cost(c: Candidate) -> float:
            cap = problem.stores[c.store].capacity_milli
            used = cap - residual.capacity[c.store] + c.workload_milli
            return w.cost * c.cost + w.balance * (used / cap if cap else 0.0)

        return min(whole, key=cost)

    # Two passes: whole orders first, splits for what is left. A split takes a little of many stores' stock and
    # capacity; done early it breaks whole-order options of orders that come later.
    # It looks at every eligible store, not only the pruned ones: when the nearest stores run out of capacity, a
    # farther one keeps the order served (and the stores it used are added to the solver's candidates).
    sequence = sorted((oi for oi, oc in enumerate(ocs) if oc.pruned), key=key)
    cand_lists = [oc.eligible for oc in ocs]
    choose = choose if w.balance else None  # None: the first (cheapest) that can, without testing all of them
    residual = Residual(problem)
    alloc = assign_sequentially(
        problem, sequence, cand_lists, choose_whole=choose, picker=split_most_units, residual=residual, split=False
    )
    rest = [oi for oi in sequence if oi not in alloc]
    # the split search scans the cheapest 4k stores only: each step tries every store, and far ones rarely win
    near = [oc.eligible[: 4 * problem.settings.candidates_k] for oc in ocs]
    alloc.update(
        assign_sequentially(problem, rest, near, choose_whole=choose, picker=split_most_units, residual=residual)
    )
    # ... and where the neighbourhood has run dry, nearest-first over every eligible store (cheap: first fit)
    rest = [oi for oi in rest if oi not in alloc]
    alloc.update(
        assign_sequentially(problem, rest, cand_lists, choose_whole=None, picker=split_in_order, residual=residual)
    )
    return alloc


def lower_bound(problem: Problem, cand_lists: list[list[Candidate]], ocs: list[OrderCandidates]) -> float:
    """A valid lower bound of the objective over these candidates: each order alone, at its cheapest (costs and
    weights are non-negative, and the workload-balance term is at least 0)."""
    w = problem.settings.weights
    total = 0.0
    for oi, cands in enumerate(cand_lists):
        best = w.unserved
        if cands and not ocs[oi].reason:
            whole = [c.cost for c in cands if c.whole]
            if whole:
                best = min(best, w.shipment + w.cost * min(whole))
            if problem.orders[oi].splittable and len(cands) >= 2:
                c1, c2 = sorted(c.cost for c in cands)[:2]
                best = min(best, 2 * w.shipment + w.cost * (c1 + c2))
        total += best
    return total


def merge_needless_splits(problem: Problem, ocs: list[OrderCandidates], alloc: Allocation) -> bool:
    """Give a split order to one store where, with what the rest of the plan leaves, one store can serve it whole
    (the contract allows a split only then). Looks at every eligible store, not only the pruned ones. Merging only
    frees stock and capacity, so a pass never breaks an earlier one; repeat until nothing changes."""
    residual = Residual(problem)
    for shipments in alloc.values():
        residual.take(shipments)
    changed_any = changed = False
    while True:
        changed = False
        for oi, shipments in alloc.items():
            if len(shipments) < 2:
                continue
            order = problem.orders[oi]
            residual.release(shipments)
            whole = next((c for c in ocs[oi].eligible if residual.can_whole(order, c)), None)
            if whole is None:
                residual.take(shipments)
                continue
            alloc[oi] = [residual.whole(order, whole)]
            residual.take(alloc[oi])
            changed = changed_any = True
        if not changed:
            return changed_any


def _with_seed_stores(problem: Problem, ocs: list[OrderCandidates], *seeds: Allocation) -> list[list[Candidate]]:
    out = []
    for oi, oc in enumerate(ocs):
        cands = list(oc.pruned)
        have = {c.store for c in cands}
        extra = {sh.store for seed in seeds for sh in seed.get(oi, [])} - have
        if extra:
            cands += [c for c in oc.eligible if c.store in extra]
        out.append(cands)
    return out
