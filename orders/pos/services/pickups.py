"""Pickup handover: a web order's pickup code shown at the till, and the goods handed to the customer."""




from inventory.models import Store
from orders.pos.exceptions import (
    PickupNotFound,
)
from orders.pos.services.common import till_actor


def _pickup_code_here(store: Store, code: str, *, live_only: bool):
    from orders.models import PickupCode

    codes = PickupCode.objects.filter(code=code.strip().upper(), fulfillment__store_id=store.pk)
    if live_only:
        codes = codes.filter(is_live=True)
    found = codes.select_related("fulfillment__order").order_by("-is_live", "-id").first()
    if found is None:
        raise PickupNotFound(details={"code": code})
    return found


def pickup_at_store(*, store: Store, code: str):
    """The pickup with this code at this store (the live one, else the latest one). Another store's code is not
    found (404)."""
    return _pickup_code_here(store, code, live_only=False)


def hand_over_pickup(*, store: Store, code: str, till: str = ""):
    """The customer collects: the fulfillment becomes `collected` and its stock is committed (orders service).
    Handing over again returns the collected pickup (idempotent)."""
    from orders.exceptions import InvalidTransition
    from orders.models import FulfillmentStatus
    from orders.services import transition_fulfillment

    pickup = _pickup_code_here(store, code, live_only=False)
    if pickup.fulfillment.status == FulfillmentStatus.COLLECTED:
        return pickup, True
    try:
        transition_fulfillment(
            fulfillment=pickup.fulfillment_id, to=FulfillmentStatus.COLLECTED, actor=till_actor(store, till)
        )
    except InvalidTransition:
        pickup.fulfillment.refresh_from_db()
        if pickup.fulfillment.status == FulfillmentStatus.COLLECTED:  # a concurrent handover of the same code
            return pickup, True
        raise
    pickup.fulfillment.refresh_from_db()
    return pickup, False
