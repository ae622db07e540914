"""The two rules chains use without an optimiser, as the benchmark's yardsticks. Both take orders as they arrive
(problem order), never look ahead, and respect the same hard limits as the router, so the comparison is about
decisions, not about cheating on stock or capacity.

- nearest_store_first: the nearest (cheapest) store that has everything; else, if the order allows it, take what the
  nearest stores have, nearest first, until the order is complete.
- priority_list: the same with a fixed store ranking (e.g. flagship first) instead of distance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .allocation import Allocation, assign_sequentially, split_in_order
from .candidates import Candidate, ChainIndex, OrderCandidates, order_candidates
from .plan import build_plan
from .problem import Problem, parse_problem


def nearest_allocation(problem: Problem, ocs: list[OrderCandidates]) -> Allocation:
    return assign_sequentially(
        problem, range(len(problem.orders)), [oc.eligible for oc in ocs], choose_whole=None, picker=split_in_order
    )


def nearest_store_first(problem: Problem | dict[str, Any]) -> dict[str, Any]:
    """Plan by nearest-store-first, in the plan format (status "baseline")."""
    t0 = time.perf_counter()
    problem = parse_problem(problem)
    ocs = order_candidates(ChainIndex(problem))
    alloc = nearest_allocation(problem, ocs)
    return build_plan(problem, ocs, alloc, status="baseline", bound=None, solve_seconds=time.perf_counter() - t0)


def priority_list(problem: Problem | dict[str, Any], ranking: Sequence[str]) -> dict[str, Any]:
    """Plan by a fixed store ranking (first = preferred); stores not ranked come after, nearest first."""
    t0 = time.perf_counter()
    problem = parse_problem(problem)
    ocs = order_candidates(ChainIndex(problem))
    rank = {sid: i for i, sid in enumerate(ranking)}
    last = len(rank)

    def ranked(cands: list[Candidate]) -> list[Candidate]:
        # sorted() is stable: unranked stores keep their cheapest-first order
        return sorted(cands, key=lambda c: rank.get(problem.stores[c.store].id, last))

    alloc = assign_sequentially(
        problem,
        range(len(problem.orders)),
        [ranked(oc.eligible) for oc in ocs],
        choose_whole=None,
        picker=split_in_order,
    )
    return build_plan(problem, ocs, alloc, status="baseline", bound=None, solve_seconds=time.perf_counter() - t0)
