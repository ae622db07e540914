"""The rounding rules of money, each written once (integer VND everywhere).

- A percentage of an amount is rounded down to the whole đồng: a discount never gives more than its percent.
- A sum split over lines (a cart discount over its lines, an order's goods total over its lines for a refund) is
  split in proportion to the lines' weights by the largest remainder, ties to the earlier line: the parts add up
  exactly and no part exceeds its weight when the sum does not exceed the weights' total.
- A refund is cumulative per line: after k of n units, floor(net × k / n) has been given back, so refunding a line
  unit by unit gives back exactly what was paid for it (orders.returns).
"""


def percent_of(amount_vnd: int, percent: int) -> int:
    """`percent` % of `amount_vnd`, rounded down."""
    return amount_vnd * percent // 100


def prorate(total: int, weights: list[int]) -> list[int]:
    """Split `total` in proportion to `weights` (largest remainder, ties to the earlier weight): parts add up."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def cumulative_share(net_vnd: int, units_before: int, units_now: int, units_total: int) -> int:
    """What `units_now` more units of a line of `units_total` units worth `net_vnd` are worth, after `units_before`
    (the refund rule: floor of the cumulative share)."""
    return net_vnd * (units_before + units_now) // units_total - net_vnd * units_before // units_total
