"""The order router: a pure module (no ORM, no database). A problem in, a plan out; see
shared/design/routing-problem.md for the JSON contract and router.py for how a plan is found.

    from orders.routing import route, check_plan
    plan = route(problem_dict, time_limit_s=2)
    assert not check_plan(problem_dict, plan)
"""

from .baselines import nearest_store_first, priority_list
from .plan import PlanViolation, check_plan
from .problem import Problem, ProblemError, parse_problem
from .router import route

__all__ = [
    "Problem",
    "ProblemError",
    "PlanViolation",
    "check_plan",
    "nearest_store_first",
    "parse_problem",
    "priority_list",
    "route",
]
