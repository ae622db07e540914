"""Store staff of store A, holding every permission there is, against every store-bound admin of the site, with
another store's (B's) objects: change lists, search, change/history/delete pages, every custom per-object URL,
every action and the store autocompletes. All refused, and nothing of B's changes. Built from admin.site._registry,
so a new store-bound admin is in the matrix (and fails it until it is scoped)."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db.models import Q
from django.urls import URLPattern, reverse

from inventory.models import StockMovement, Store
from inventory.staff.models import StaffScope
from inventory.staff.scope import StoreScopedAdmin

pytestmark = pytest.mark.django_db

# The oracle: which store owns a row, written independently of the admins' own declarations. A transfer belongs to
# both of its stores.
OWNER: dict[str, tuple[str, ...]] = {
    "inventory.Store": ("pk",),
    "inventory.Stock": ("store",),
    "inventory.StockMovement": ("store",),
    "inventory.Reservation": ("store",),
    "inventory.TakenReservation": ("store",),
    "pos.StoreApiKey": ("store",),
    "pos.TillReceipt": ("store",),
    "pos.StockCount": ("store",),
    "pos.GoodsReceipt": ("store",),
    "pos.DamageReport": ("store",),
    "pos.StockTransfer": ("from_store", "to_store"),
    "orders.Order": ("fulfillments__store",),
    "orders.Fulfillment": ("store",),
    "orders.FulfillmentAwaitingCourier": ("store",),
    "orders.Delivery": ("fulfillment__store",),
    "orders.CourierEvent": ("delivery__fulfillment__store",),
    "returns.Return": ("receiving_store",),
    "returns.ReturnLine": ("ret__receiving_store",),
    "pricing.PriceException": ("store",),
}
STANDARD_VIEWS = {"changelist", "add", "change", "history", "delete", "autocomplete"}


def _store_paths(model, depth: int = 3, prefix: str = "") -> list[str]:
    found = []
    for field in model._meta.get_fields():
        if not (field.concrete and (field.many_to_one or field.one_to_one) and field.related_model):
            continue
        if field.related_model is Store:
            found.append(prefix + field.name)
        elif depth > 1 and field.related_model is not model:
            found += _store_paths(field.related_model, depth - 1, f"{prefix}{field.name}__")
    return found


STORE_BOUND = sorted(
    model._meta.label for model in admin.site._registry if model is Store or _store_paths(model)
)


def _owned(model, stores) -> set:
    condition = Q()
    for path in OWNER[model._meta.label]:
        condition |= Q(**{f"{path}__in": [store.pk for store in stores]})
    return set(model._default_manager.filter(condition).values_list("pk", flat=True))


def _snapshot() -> dict:
    """Every row of every store-bound model, and the ledgers' sizes."""
    rows = {}
    for label in OWNER:
        model = _model(label)
        rows[label] = sorted(map(repr, model._default_manager.order_by("pk").values()))
    rows["movements"] = StockMovement.objects.count()
    return rows


def _model(label: str):
    return next(m for m in admin.site._registry if m._meta.label == label)


@pytest.fixture
def almighty_a(two_stores, django_user_model):
    """Store staff of store A with every permission of the site: only the scope can refuse them anything."""
    user = django_user_model.objects.create_user("all.perms.q1", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    StaffScope.objects.create(user=user).stores.set([two_stores["a"]])
    return user


@pytest.fixture
def almighty_hq(two_stores, django_user_model):
    user = django_user_model.objects.create_user("all.perms.hq", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    StaffScope.objects.create(user=user, all_stores=True)
    return user


def test_every_store_bound_admin_is_scoped_and_in_the_oracle():
    assert STORE_BOUND, "no store-bound admin found: the matrix would test nothing"
    assert set(STORE_BOUND) <= set(OWNER), f"add the owning store of {sorted(set(STORE_BOUND) - set(OWNER))} to OWNER"
    unscoped = [label for label in STORE_BOUND if not isinstance(admin.site._registry[_model(label)], StoreScopedAdmin)]
    assert unscoped == [], f"store-bound admins without a store scope: {unscoped}"


def _object_urls(model_admin, pk) -> list[str]:
    """The standard per-object pages and every custom URL of the admin that takes an object id."""
    info = (model_admin.opts.app_label, model_admin.opts.model_name)
    urls = [reverse(f"admin:{info[0]}_{info[1]}_{view}", args=[pk]) for view in ("change", "history", "delete")]
    for pattern in model_admin.get_urls():
        if isinstance(pattern, URLPattern) and pattern.name and "object_id" in str(pattern.pattern):
            view = pattern.name.removeprefix(f"{info[0]}_{info[1]}_")
            if view not in STANDARD_VIEWS:
                urls.append(reverse(f"admin:{pattern.name}", args=[pk]))
    return urls


@pytest.mark.parametrize("label", STORE_BOUND)
def test_store_staff_are_refused_another_stores_objects(client, two_stores, almighty_a, almighty_hq, label):
    model = _model(label)
    model_admin = admin.site._registry[model]
    a, b = two_stores["a"], two_stores["b"]
    info = (model_admin.opts.app_label, model_admin.opts.model_name)
    changelist = reverse(f"admin:{info[0]}_{info[1]}_changelist")
    # head office (same permissions, every store) lists and opens them: the refusals below come from the scope
    client.force_login(almighty_hq)
    hq_list = client.get(changelist)
    assert hq_list.status_code == 200
    theirs = (set(hq_list.context["cl"].queryset.values_list("pk", flat=True)) & _owned(model, [b])) - _owned(model, [a])
    assert theirs, f"the fixture made no {label} at store B: the matrix would test nothing for it"
    some = sorted(theirs)[:3]
    assert client.get(reverse(f"admin:{info[0]}_{info[1]}_change", args=[some[0]])).status_code == 200

    client.force_login(almighty_a)
    before = _snapshot()
    page = client.get(changelist)
    assert page.status_code == 200
    listed = set(page.context["cl"].queryset.values_list("pk", flat=True))
    assert not listed & theirs
    searched = client.get(changelist, {"q": b.code})
    assert searched.status_code == 200 and not set(searched.context["cl"].queryset.values_list("pk", flat=True)) & theirs
    for pk in some:
        for url in _object_urls(model_admin, pk):
            assert client.get(url).status_code in (403, 404, 405), url
            assert client.post(url, {"to": "picking", "post": "yes"}).status_code in (403, 404, 405), url
    request = page.wsgi_request
    actions = [name for name in model_admin.get_actions(request) if name != "delete_selected"] + ["delete_selected"]
    for action in actions:
        response = client.post(changelist, {"action": action, "_selected_action": some, "post": "yes"})
        assert response.status_code in (200, 302, 403), (action, response.status_code)
    assert _snapshot() == before, f"{label}: an action or page changed store B's data"


def test_store_autocompletes_offer_only_their_stores(client, two_stores, almighty_a):
    client.force_login(almighty_a)
    tried = 0
    for model, model_admin in admin.site._registry.items():
        for field_name in model_admin.get_autocomplete_fields(None):
            field = model._meta.get_field(field_name)
            if field.related_model is not Store:
                continue
            r = client.get(reverse("admin:autocomplete"), {
                "app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field_name,
            })
            assert r.status_code == 200
            ids = {int(item["id"]) for item in r.json()["results"]}
            assert ids == {two_stores["a"].pk}, (model._meta.label, field_name)
            tried += 1
    assert tried, "no admin has a store autocomplete"
