"""Every write to the loyalty ledger (see ledger.py). Callers import from here: `from loyalty import services`."""

from loyalty.services.ledger import (
    _LOTS_PAGE,  # noqa: F401 - tests size their data by it
    PostingSource,
    adjust_points,
    capture_redemption,
    earn_points,
    expire_and_vest,
    expire_lots,
    get_or_create_member,
    hold_redemption,
    lot_expiry,
    merge_members,
    points_for,
    recompute_tiers,
    redeem_points,
    refund_redemption,
    reverse_earning,
    rolling_spend,
    vest_pending,
    void_expired_holds,
    void_redemption,
)

__all__ = [
    "PostingSource", "adjust_points", "capture_redemption", "earn_points", "expire_and_vest", "expire_lots",
    "get_or_create_member", "hold_redemption", "lot_expiry", "merge_members", "points_for", "recompute_tiers",
    "redeem_points", "refund_redemption", "reverse_earning", "rolling_spend", "vest_pending", "void_expired_holds",
    "void_redemption",
]
