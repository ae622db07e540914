"""Store scope in the admin: one mixin, StoreScopedAdmin, that every store-bound ModelAdmin inherits.

It narrows everything the admin reads for a model to the staff member's stores (StaffScope): the change list and
its search, the objects actions receive (Django hands actions the change list's queryset), exports built from it,
the change/history/delete pages and custom views that look an object up with get_object (another store's object is
a 404, exactly like one that does not exist), the store choices in forms and autocompletes, and the store list
filters. What a person may do (view, change, actions) stays with Django's permissions."""

from functools import reduce
from operator import or_

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest

from inventory.models import Store

ALL = None  # the scope of head office and superusers


def store_ids_for(user) -> frozenset[int] | None:
    """The ids of the stores `user` works for, or ALL (None). Cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return ALL
    cached = getattr(user, "_o2o_store_scope", False)
    if cached is not False:
        return cached
    from inventory.staff.models import StaffScope

    scope = StaffScope.objects.filter(user=user).first()
    if scope is None:
        result: frozenset[int] | None = frozenset()
    elif scope.all_stores:
        result = ALL
    else:
        result = frozenset(scope.stores.values_list("pk", flat=True))
    user._o2o_store_scope = result
    return result


def scoped_stores(request: HttpRequest) -> QuerySet[Store]:
    ids = store_ids_for(request.user)
    stores = Store.objects.all()
    return stores if ids is ALL else stores.filter(pk__in=ids)


def restrict(queryset: QuerySet, request: HttpRequest, paths: tuple[str, ...], *, multi: bool = False) -> QuerySet:
    """Rows of `queryset` whose store (through any of `paths`) is in the request user's scope."""
    ids = store_ids_for(request.user)
    if ids is ALL:
        return queryset
    if not ids:
        return queryset.none()
    condition = reduce(or_, (Q(**{f"{path}__in": ids}) for path in paths))
    if multi:
        # A path through a reverse relation (an order's fulfillments) would repeat rows: test membership instead.
        return queryset.filter(pk__in=queryset.model._default_manager.filter(condition).values("pk"))
    return queryset.filter(condition)


class ScopedStoreListFilter(admin.RelatedFieldListFilter):
    """The stock related-field filter, offering only the stores in scope."""

    def field_choices(self, field, request, model_admin):
        if field.related_model is not Store:
            return super().field_choices(field, request, model_admin)
        return [(store.pk, str(store)) for store in scoped_stores(request).order_by("code")]


class StoreScopedAdmin(admin.ModelAdmin):
    """Mix into (put before) a ModelAdmin of a store-bound model and name the path(s) to its store.

    store_scope_fields: lookups from the model to inventory.Store ("store", "ret__receiving_store", "pk" for Store
    itself); a row is in scope when any of them is. store_scope_multi: True when a path crosses a reverse relation."""

    store_scope_fields: tuple[str, ...] = ("store",)
    store_scope_multi: bool = False

    def get_queryset(self, request):
        return restrict(super().get_queryset(request), request, self.store_scope_fields, multi=self.store_scope_multi)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Out of scope and missing look the same: no hint that another store's object exists.
            raise Http404(f"No {self.opts.verbose_name} with id {object_id!r} in your stores.")
        return obj

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Store:
            kwargs["queryset"] = scoped_stores(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.related_model is Store:
            kwargs["queryset"] = scoped_stores(request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request):
        filters = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and _is_store_fk(self.model, entry):
                entry = (entry, ScopedStoreListFilter)
            filters.append(entry)
        return filters


def _is_store_fk(model, path: str) -> bool:
    from django.contrib.admin.utils import get_fields_from_path

    try:
        fields = get_fields_from_path(model, path)
    except Exception:  # noqa: BLE001 - not a model path (a callable or a custom filter): leave it alone
        return False
    return bool(fields) and getattr(fields[-1], "related_model", None) is Store


def is_store_bound(model) -> bool:
    """True when `model` has a foreign key to Store, directly or through the first hop (used by the test matrix)."""
    for field in model._meta.get_fields():
        target = getattr(field, "related_model", None)
        if target is Store and (field.many_to_one or field.one_to_one) and field.concrete:
            return True
    return False


# The store of each store-bound model whose admin lives in another module and does not inherit StoreScopedAdmin
# itself. scope_admin_site() wraps those admins at start-up, so no store-bound screen can be registered without a
# scope; tests/admin/test_matrix.py fails for a store-bound admin that is neither here nor scoped in its class.
STORE_PATHS: dict[str, tuple[str, ...]] = {
    "orders.Delivery": ("fulfillment__store",),
    "orders.CourierEvent": ("delivery__fulfillment__store",),
    "orders.FulfillmentAwaitingCourier": ("store",),
    "pos.StoreApiKey": ("store",),
    "pos.TillReceipt": ("store",),
    "pos.StockCount": ("store",),
    "pos.GoodsReceipt": ("store",),
    "pos.DamageReport": ("store",),
    "pos.StockTransfer": ("from_store", "to_store"),  # both ends see a transfer
    "returns.Return": ("receiving_store",),
    "returns.ReturnLine": ("ret__receiving_store",),
}


def scope_admin_site(site: admin.AdminSite) -> list[str]:
    """Re-register the admins of STORE_PATHS' models as StoreScopedAdmin subclasses. Returns the models wrapped."""
    wrapped = []
    for model, model_admin in list(site._registry.items()):
        paths = STORE_PATHS.get(model._meta.label)
        if paths is None or isinstance(model_admin, StoreScopedAdmin):
            continue
        cls = type(model_admin)
        scoped = type(
            cls.__name__,
            (StoreScopedAdmin, cls),
            {"__module__": cls.__module__, "__doc__": cls.__doc__, "store_scope_fields": paths},
        )
        site.unregister(model)
        site.register(model, scoped)
        wrapped.append(model._meta.label)
    return wrapped
