"""Head office's writes of the commercial policy from another system (a retailer's ERP or merchandising tool, through
orders.pricing.api.policy_views): promotions and price lists created, changed and deleted, a price list's rows
upserted in bulk, codes generated for a campaign.

The checks are the admin's: services.check_promotion for a promotion, the models' own rules (dates in order, channel
and tier codes that exist) for both, and what the database's CHECK constraints would refuse is refused here first
with the field at fault, never left to an IntegrityError. Each write and its services.policy_changed() run in one
transaction, so caches and tills' snapshots reload exactly when something changed: a write that changes nothing
(an ERP pushing the same promotion again every night) leaves the version alone."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models.deletion import ProtectedError
from django.utils import timezone
from django.utils.translation import gettext

from inventory.exceptions import UnknownSku
from inventory.models import Product
from loyalty import conf as loyalty_conf
from o2o.domain_errors import Conflict, DomainError, InvalidInput, NotFound
from o2o.models import SalesChannel

from . import selectors, services
from .exceptions import InvalidPromotion
from .models import Code, PriceList, PriceListRow, Promotion

# The fields a promotion's writer sets (the admin form's); the counters (uses, discount_given_vnd) are the services'.
PROMOTION_FIELDS = (
    "code", "name", "campaign", "is_active", "kind", "target", "skus", "categories", "percent", "amount_vnd",
    "buy_qty", "get_qty", "bundle", "bundle_price_vnd", "min_spend_vnd", "channels", "store_group", "tiers",
    "starts_at", "ends_at", "weekdays", "from_time", "until_time", "priority", "exclusive", "requires_code",
    "max_uses", "max_uses_per_member", "max_discount_vnd",
)
PRICE_LIST_FIELDS = ("code", "name", "is_active", "priority", "channels", "store_group", "starts_at", "ends_at")
# One PUT of a price list's rows: a whole regional list in one transaction, small enough for one request body.
MAX_ROWS = 20_000


class InvalidPriceList(DomainError):
    code = "invalid_price_list"
    status = 422
    default_message = "The price list is not valid."


class PolicyObjectExists(Conflict):
    code = "already_exists"
    default_message = "A promotion or price list with this code already exists."


class PolicyObjectInUse(Conflict):
    code = "in_use"
    default_message = "It has codes or results that refer to it: switch it off (is_active false) instead."


class UnknownPolicyObject(NotFound):
    code = "not_found"
    default_message = "No promotion or price list with this code."


@dataclass(frozen=True)
class RowsResult:
    """What a PUT of a price list's rows did, row by row counted."""

    price_list: str
    created: int
    updated: int
    unchanged: int
    deleted: int
    rows: int  # the list's rows afterwards
    version: int  # the policy's version afterwards


# --- shared -------------------------------------------------------------------------------------------------------


def _values(model: type[models.Model], fields: tuple[str, ...], instance: models.Model | None, data: Mapping,
            *, partial: bool) -> dict[str, Any]:
    """Every field's value after the write: a partial write (PATCH) keeps what is not given, a full one (POST, PUT)
    gives it its default, as a form posted without it would."""
    if instance is not None and partial:
        values = {f: getattr(instance, f) for f in fields}
    else:
        values = {f: model._meta.get_field(f).get_default() for f in fields}
    values.update({f: data[f] for f in fields if f in data})
    if instance is not None:
        values["code"] = instance.code  # the key: orders, receipts and tills name it
    return values


def _differs(instance: models.Model, field: str, value: Any) -> bool:
    if field == "store_group":  # compare keys: no query for the group
        return instance.store_group_id != (value.pk if value is not None else None)
    return getattr(instance, field) != value


def in_force_at(queryset: models.QuerySet, at: datetime) -> models.QuerySet:
    """Promotions or price lists in force at `at` by their dates (switched on, started, not ended: the end is
    exclusive), as the admin's "running now". Weekdays and hours are each store's local time: the engine's."""
    return queryset.filter(models.Q(starts_at__isnull=True) | models.Q(starts_at__lte=at),
                           models.Q(ends_at__isnull=True) | models.Q(ends_at__gt=at), is_active=True)


def _locked(model: type[models.Model], code: str) -> models.Model:
    obj = model.objects.select_for_update().filter(code=code).first()
    if obj is None:
        raise UnknownPolicyObject(details={"code": code})
    return obj


def _scope_errors(values: dict, instance: models.Model | None, *, tiers: bool) -> dict[str, str]:
    """Channel and tier codes that exist (what the admin's check boxes offer), and dates in order. A code already
    saved stays acceptable (a channel since removed), as in the admin, so that saving never fails on it."""
    errors: dict[str, str] = {}
    starts, ends = values.get("starts_at"), values.get("ends_at")
    if starts and ends and ends <= starts:
        errors["ends_at"] = gettext("The end must be after the start.")
    saved = set(getattr(instance, "channels", None) or ())
    known = set(SalesChannel.objects.values_list("code", flat=True)) | {settings.PRICING_TILL_CHANNEL} | saved
    unknown = [c for c in values.get("channels") or () if c not in known]
    if unknown:
        errors["channels"] = gettext("Unknown channel codes: %(codes)s (known: %(known)s).") % {
            "codes": ", ".join(unknown), "known": ", ".join(sorted(known))}
    if tiers:
        saved = set(getattr(instance, "tiers", None) or ())
        known = {t.code for t in loyalty_conf.tiers()} | saved
        unknown = [t for t in values.get("tiers") or () if t not in known]
        if unknown:
            errors["tiers"] = gettext("Unknown member tiers: %(codes)s (known: %(known)s).") % {
                "codes": ", ".join(unknown), "known": ", ".join(sorted(known))}
    return errors


def _insert(obj: models.Model) -> None:
    """Insert a new promotion or price list; its code taken (checked first, or by a concurrent writer): 409."""
    model = type(obj)
    if model.objects.filter(code=obj.code).exists():
        raise PolicyObjectExists(details={"code": obj.code})
    try:
        with transaction.atomic():
            obj.save(force_insert=True)
    except IntegrityError:
        if model.objects.filter(code=obj.code).exists():
            raise PolicyObjectExists(details={"code": obj.code}) from None
        raise


def _update(obj: models.Model, fields: tuple[str, ...], values: dict) -> bool:
    """Set and save the fields that changed (never the counters). Returns whether any did."""
    changed = [f for f in fields if f != "code" and _differs(obj, f, values[f])]
    if not changed:
        return False
    for field in changed:
        setattr(obj, field, values[field])
    obj.updated_at = timezone.now()
    obj.save(update_fields=[*changed, "updated_at"])
    return True


def _delete(obj: models.Model) -> None:
    try:
        obj.delete()
    except ProtectedError as exc:
        raise PolicyObjectInUse(details={
            "code": obj.code, "referred_to_by": sorted({o._meta.verbose_name_plural for o in exc.protected_objects}),
        }) from None


# --- promotions ---------------------------------------------------------------------------------------------------


def _check_promotion(values: dict, instance: Promotion | None) -> None:
    """services.check_promotion (the admin's check), and what only a saved promotion can break: a budget lowered
    below what it already gave (the database's CHECK constraints), channels and tiers that exist."""
    errors = _scope_errors(values, instance, tiers=True)
    if instance is not None:
        if values["max_uses"] is not None and values["max_uses"] < instance.uses:
            errors["max_uses"] = gettext("Already used %(uses)d times: allow at least that many.") % {
                "uses": instance.uses}
        if values["max_discount_vnd"] is not None and values["max_discount_vnd"] < instance.discount_given_vnd:
            errors["max_discount_vnd"] = gettext("%(given)s VND already given: allow at least that much.") % {
                "given": instance.discount_given_vnd}
    try:
        services.check_promotion(values)
    except InvalidPromotion as exc:
        errors = {**errors, **exc.details}
    if errors:
        raise InvalidPromotion(details=errors)


def create_promotion(*, data: Mapping) -> Promotion:
    """A new promotion from `data` (the fields of PROMOTION_FIELDS; the ones left out take their defaults). Raises
    InvalidPromotion (422, details per field) or PolicyObjectExists (409)."""
    values = _values(Promotion, PROMOTION_FIELDS, None, data, partial=False)
    with transaction.atomic():
        _check_promotion(values, None)
        promo = Promotion(**values, updated_at=timezone.now())
        _insert(promo)
        services.policy_changed()
    return promo


def update_promotion(*, code: str, data: Mapping, partial: bool) -> Promotion:
    """Change a promotion: `partial` (PATCH) changes the fields given, otherwise (PUT) the fields left out go back to
    their defaults. The row is locked, so a budget check against its counters holds against concurrent checkouts.
    The code never changes. The policy's version moves only when a field did."""
    with transaction.atomic():
        promo = _locked(Promotion, code)
        values = _values(Promotion, PROMOTION_FIELDS, promo, data, partial=partial)
        _check_promotion(values, promo)
        if _update(promo, PROMOTION_FIELDS, values):
            services.policy_changed()
    return promo


def delete_promotion(*, code: str) -> None:
    """Delete a promotion never used: one with codes or results (applications) is PolicyObjectInUse (409)."""
    with transaction.atomic():
        _delete(_locked(Promotion, code))
        services.policy_changed()


def generate_codes(
    *, code: str, count: int, prefix: str = "", campaign: str = "", max_uses: int | None = 1,
    expires_at: datetime | None = None,
) -> tuple[Promotion, list[Code]]:
    """`count` new codes of a promotion (services.generate_codes), the policy's version moved as by the admin."""
    with transaction.atomic():
        promo = Promotion.objects.filter(code=code).first()
        if promo is None:
            raise UnknownPolicyObject(details={"code": code})
        made = services.generate_codes(promotion=promo, count=count, prefix=prefix, campaign=campaign,
                                       max_uses=max_uses, expires_at=expires_at)
        services.policy_changed()
    return promo, made


# --- price lists --------------------------------------------------------------------------------------------------


def _check_price_list(values: dict, instance: PriceList | None) -> None:
    errors = _scope_errors(values, instance, tiers=False)
    if errors:
        raise InvalidPriceList(details=errors)


def create_price_list(*, data: Mapping) -> PriceList:
    """A new (empty) price list; its rows come with put_price_list_rows. Raises InvalidPriceList (422) or
    PolicyObjectExists (409)."""
    values = _values(PriceList, PRICE_LIST_FIELDS, None, data, partial=False)
    with transaction.atomic():
        _check_price_list(values, None)
        price_list = PriceList(**values, updated_at=timezone.now())
        _insert(price_list)
        services.policy_changed()
    return price_list


def update_price_list(*, code: str, data: Mapping, partial: bool) -> PriceList:
    """Change a price list's scope, period, priority or name (its rows: put_price_list_rows)."""
    with transaction.atomic():
        price_list = _locked(PriceList, code)
        values = _values(PriceList, PRICE_LIST_FIELDS, price_list, data, partial=partial)
        _check_price_list(values, price_list)
        if _update(price_list, PRICE_LIST_FIELDS, values):
            services.policy_changed()
    return price_list


def delete_price_list(*, code: str) -> None:
    """Delete a price list and its rows."""
    with transaction.atomic():
        _delete(_locked(PriceList, code))
        services.policy_changed()


def put_price_list_rows(*, code: str, prices: Mapping[str, int], replace: bool = False) -> RowsResult:
    """Set a price list's prices: `prices` is {sku: price_vnd}; a SKU already listed gets the new price, a new one a
    row, and with `replace` the rows of SKUs not given are deleted (an empty `prices` then empties the list).

    In bulk, whatever the number of rows: the list locked (concurrent PUTs of one list queue), the SKUs' products in
    one query, the list's current rows in one, every new and changed row in one INSERT ... ON CONFLICT DO UPDATE and
    the rows left out in one DELETE. Unknown SKUs refuse the whole request (UnknownSku, 422, with the list), a
    negative price or more than MAX_ROWS rows InvalidInput (400); nothing is written then."""
    if len(prices) > MAX_ROWS:
        raise InvalidInput(f"At most {MAX_ROWS} rows at a time.", details={"rows": len(prices)})
    negative = sorted(sku for sku, price in prices.items() if price < 0)
    if negative:
        raise InvalidInput("A price cannot be negative.", details={"skus": negative})
    with transaction.atomic():
        price_list = _locked(PriceList, code)
        products = dict(Product.objects.filter(sku__in=list(prices)).values_list("sku", "pk")) if prices else {}
        unknown = sorted(set(prices) - set(products))
        if unknown:
            raise UnknownSku(unknown)
        wanted = {products[sku]: price for sku, price in prices.items()}
        current = dict(PriceListRow.objects.filter(price_list=price_list).values_list("product_id", "price_vnd"))
        writes = [pid for pid, price in wanted.items() if current.get(pid) != price]
        created = sum(1 for pid in writes if pid not in current)
        deleted = sum(1 for pid in current if pid not in wanted) if replace else 0
        if writes:
            PriceListRow.objects.bulk_create(
                [PriceListRow(price_list=price_list, product_id=pid, price_vnd=wanted[pid]) for pid in writes],
                update_conflicts=True, unique_fields=["price_list", "product"], update_fields=["price_vnd"],
            )
        if deleted:
            PriceListRow.objects.filter(price_list=price_list).exclude(product_id__in=list(wanted)).delete()
        if writes or deleted:
            PriceList.objects.filter(pk=price_list.pk).update(updated_at=timezone.now())
            version = services.policy_changed()
        else:
            version = selectors.policy_version()
        return RowsResult(
            price_list=price_list.code, created=created, updated=len(writes) - created,
            unchanged=len(wanted) - len(writes), deleted=deleted, rows=len(current) + created - deleted,
            version=version,
        )
