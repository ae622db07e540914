"""The three operations roles as Django groups with permissions. The store scope (StaffScope) says where; the
group says what. `manage.py setup_roles` (and every migrate) brings the groups up to date with ROLES."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

HEAD_OFFICE = "Head office"
REGIONAL_MANAGER = "Regional manager"
STORE_STAFF = "Store staff"

# Store staff run their store's day: see stock and its ledger, work the fulfillment queue, see orders, deliveries,
# till records and returns of their store.
_STORE_STAFF = {
    "inventory.view_stock",
    "inventory.view_stockmovement",
    "inventory.view_reservation",
    "inventory.view_takenreservation",  # what the store's tills, counts and damage took from online orders
    "inventory.view_store",
    "inventory.view_product",
    "orders.view_order",
    "orders.view_fulfillment",
    "orders.change_fulfillment",
    "orders.view_fulfillmentline",
    "orders.view_delivery",
    "orders.view_fulfillmentawaitingcourier",
    "pos.view_tillreceipt",
    "pos.view_stockcount",
    "pos.view_goodsreceipt",
    "pos.view_damagereport",
    "pos.view_stocktransfer",
    "returns.view_return",
    "returns.view_returnline",
    "inventory.view_stockimport",
    # Counts and delivery notes are the store's own daily work: importing them for its own stores (the import is
    # store-scoped and goes through the same services as the till).
    "inventory.import_stock",
    # Prices and promotions: what runs (read-only, with the price preview and the calendar) and the price exceptions
    # their tills caused (the exception queue is store-scoped).
    "pricing.view_promotion",
    "pricing.view_priceexception",
}
# Regional managers also correct stock by hand, release holds, cancel and re-route orders (re-routing moves work
# onto other stores, so store staff only report short picks) and act on deliveries and returns.
_REGIONAL = _STORE_STAFF | {
    "inventory.change_stock",
    "inventory.change_reservation",
    "orders.change_order",
    "orders.reroute_order",
    "orders.change_delivery",
    "returns.change_return",
    "returns.change_returnline",
    "pricing.change_priceexception",  # review their stores' price exceptions (accept, followed up)
}
# Head office also configures stores and products, looks up loyalty members and adjusts their points, and sets the
# prices and promotions.
_HEAD_OFFICE = _REGIONAL | {
    "inventory.change_store",
    "inventory.add_store",
    "inventory.change_product",
    "inventory.add_product",
    "loyalty.view_member",
    "loyalty.change_member",
    "loyalty.adjust_points",
    "loyalty.view_posting",
    "staff.view_staffscope",
    # Head office sets the commercial policy: every change raises its version (tills and caches reload).
    *(f"pricing.{verb}_{model}" for verb in ("view", "add", "change", "delete")
      for model in ("storegroup", "pricelist", "pricelistrow", "promotion", "code", "deliveryfeerule")),
    "pricing.view_promotionapplication",  # the results per promotion
    "pricing.view_codeuse",
}
ROLES: dict[str, set[str]] = {HEAD_OFFICE: _HEAD_OFFICE, REGIONAL_MANAGER: _REGIONAL, STORE_STAFF: _STORE_STAFF}


def _permissions(names: set[str], using: str) -> list[Permission]:
    wanted = {tuple(name.split(".", 1)) for name in names}
    rows = Permission.objects.using(using).select_related("content_type")
    # Permissions of models that do not exist (yet) are left out rather than failing a migrate.
    return [p for p in rows if (p.content_type.app_label, p.codename) in wanted]


@transaction.atomic
def ensure_roles(*, using: str = "default") -> dict[str, int]:
    """Create or update the role groups so they hold exactly ROLES' permissions. Returns permissions per role."""
    counts = {}
    for name, perms in ROLES.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        found = _permissions(perms, using)
        group.permissions.set(found)
        counts[name] = len(found)
    return counts


def make_staff(*, username: str, password: str, role: str, stores=(), all_stores: bool = False):
    """A staff user with one role and a store scope (used by the demo and the tests; the admin does the same)."""
    from inventory.staff.models import StaffScope

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {sorted(ROLES)}")
    ensure_roles()
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    scope = StaffScope.objects.create(user=user, all_stores=all_stores)
    scope.stores.set(stores)
    return user
