"""The preview: rows grouped into receipts and counts, each checked as the POS API would, replays recognised,
and the stock changes each group would make."""


import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from inventory.models import Product, Reservation, Stock, StockImport, Store
from o2o.idempotency import request_fingerprint
from orders.pos import services as pos
from orders.pos.imports.spec import ID_PATTERN, MAX_LINES_PER_GROUP, MAX_QTY, SPECS, Spec
from orders.pos.models import GoodsReceipt, StockCount
from orders.pos.services.counts import count_effect, shortfall_sold_after
from orders.services import takeable


@dataclass
class Issue:
    code: str
    message: str
    row: int | None = None

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "row": self.row}


@dataclass
class Line:
    row: int
    sku: str
    qty: int  # received (goods receipts) or counted (counts)
    expected_on_hand: int | None = None
    on_hand: int | None = None  # the stock row now
    ledger_as_of: int | None = None  # counts: the ledger's on-hand at counted_at
    change: int | None = None  # what the ledger will record on hand
    on_hand_after: int | None = None


@dataclass
class Group:
    store_code: str
    group_id: str
    rows: list[int] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    store: Store | None = None
    source: str = ""
    counted_at: datetime | None = None
    counted_at_given: str | None = None  # as written in the file (part of the content hash), None when left blank
    content_hash: str = ""
    replay: bool = False

    @property
    def status(self) -> str:
        return "error" if self.issues else "replay" if self.replay else "new"

    def fail(self, code: str, message: str, row: int | None = None) -> None:
        self.issues.append(Issue(code, message, row))


@dataclass
class Preview:
    kind: str
    groups: list[Group]
    row_count: int

    @property
    def has_errors(self) -> bool:
        return any(g.issues for g in self.groups)

    @property
    def error_groups(self) -> int:
        return sum(1 for g in self.groups if g.issues)

    @property
    def replay_groups(self) -> int:
        return sum(1 for g in self.groups if g.status == "replay")

    @property
    def new_groups(self) -> int:
        return sum(1 for g in self.groups if g.status == "new")

    @property
    def store_ids(self) -> list[int]:
        return sorted({g.store.pk for g in self.groups if g.store is not None})


def build_preview(
    *,
    kind: str,
    rows: list[dict[str, Any]],
    store_ids: frozenset[int] | None,
    default_counted_at: datetime,
    with_changes: bool = True,
) -> Preview:
    """Check and group `rows` for a user whose stores are `store_ids` (None: every store). Reads only.

    With `with_changes`, each valid group also says whether it is a replay and what it would change: the quantities
    received, or for a count the adjustment against the ledger as of `counted_at` (default_counted_at when the file
    leaves it blank: the upload's time)."""
    spec = SPECS[kind]
    grouped: dict[tuple[str, str], Group] = {}
    for row in rows:
        key = (row.get("store", ""), row.get(spec.id_column, ""))
        group = grouped.get(key)
        if group is None:
            group = grouped[key] = Group(store_code=key[0], group_id=key[1])
        group.rows.append(row["_row"])
    groups = list(grouped.values())
    stores = {s.code: s for s in Store.objects.filter(code__in={g.store_code for g in groups})}
    products = {p.sku: p for p in Product.objects.filter(sku__in={r.get("sku", "") for r in rows})}
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        by_key[(row.get("store", ""), row.get(spec.id_column, ""))].append(row)
    now = timezone.now()
    for group in groups:
        _check_store(group, stores, store_ids)
        _check_id(group, spec)
        _check_lines(group, spec, by_key[(group.store_code, group.group_id)], products, now)
        if not group.issues:
            if kind == StockImport.Kind.COUNTS and group.counted_at is None:
                group.counted_at = default_counted_at
            group.content_hash = _content_hash(kind, group)
    if kind == StockImport.Kind.COUNTS:
        _check_counted_once(groups)
    if with_changes:
        _check_replays(kind, [g for g in groups if not g.issues])
        _compute_changes(kind, [g for g in groups if not g.issues and not g.replay], products)
    return Preview(kind=kind, groups=groups, row_count=len(rows))


def _check_store(group: Group, stores: dict[str, Store], store_ids: frozenset[int] | None) -> None:
    first = group.rows[0]
    if not group.store_code:
        group.fail("store_missing", _("The store column is empty."), first)
        return
    store = stores.get(group.store_code)
    if store_ids is not None and (store is None or store.pk not in store_ids):
        # For staff with a store scope, another store and a store that does not exist read the same.
        group.fail(
            "store_not_in_scope", _("Store %(code)s is not one of your stores.") % {"code": group.store_code}, first
        )
        return
    if store is None:
        group.fail("unknown_store", _("No store has the code %(code)s.") % {"code": group.store_code}, first)
        return
    group.store = store


def _check_id(group: Group, spec: Spec) -> None:
    if not group.group_id:
        group.fail("id_missing", _("The %(column)s column is empty.") % {"column": spec.id_column}, group.rows[0])
    elif not ID_PATTERN.match(group.group_id):
        group.fail(
            "bad_id",
            _("%(column)s must be 1–64 letters, digits, '.', '_', ':' or '-'.") % {"column": spec.id_column},
            group.rows[0],
        )


def _check_lines(group: Group, spec: Spec, rows: list[dict], products: dict[str, Product], now: datetime) -> None:
    if len(rows) > MAX_LINES_PER_GROUP:
        group.fail(
            "too_many_lines", _("More than %(max)d lines in one group.") % {"max": MAX_LINES_PER_GROUP}, group.rows[0]
        )
    seen: dict[str, int] = {}
    minimum = 1 if spec.kind == StockImport.Kind.GOODS_RECEIPTS else 0
    for row in rows:
        n = row["_row"]
        sku = row.get("sku", "")
        if not sku:
            group.fail("sku_missing", _("The sku column is empty."), n)
        elif sku not in products:
            group.fail("unknown_sku", _("Unknown SKU %(sku)s.") % {"sku": sku}, n)
        elif sku in seen:
            group.fail(
                "duplicate_sku",
                _("SKU %(sku)s is already on row %(row)d of this group; list each SKU once.")
                % {"sku": sku, "row": seen[sku]},
                n,
            )
        else:
            seen[sku] = n
        qty = _integer(group, row.get(spec.qty_column, ""), spec.qty_column, n, minimum=minimum)
        expected = None
        if row.get("expected_on_hand"):
            expected = _integer(group, row["expected_on_hand"], "expected_on_hand", n, minimum=0)
        if qty is not None and sku:
            group.lines.append(Line(row=n, sku=sku, qty=qty, expected_on_hand=expected))
    if spec.kind == StockImport.Kind.GOODS_RECEIPTS:
        group.source = _one_value(group, rows, "source", _("source")) or ""
        if len(group.source) > 120:
            group.fail("bad_source", _("The source is longer than 120 characters."), group.rows[0])
    else:
        given = _one_value(group, rows, "counted_at", _("counted_at"))
        if given:
            group.counted_at = _parse_time(group, given, now)
            if group.counted_at is not None:
                group.counted_at_given = group.counted_at.isoformat()


def _integer(group: Group, text: str, column: str, row: int, *, minimum: int) -> int | None:
    if not re.fullmatch(r"[+-]?\d+", text or ""):
        group.fail(
            "bad_quantity",
            _("%(column)s must be a whole number, not “%(value)s”.") % {"column": column, "value": text},
            row,
        )
        return None
    value = int(text)
    if not minimum <= value <= MAX_QTY:
        group.fail(
            "bad_quantity",
            _("%(column)s must be between %(min)d and %(max)d, not %(value)d.")
            % {"column": column, "min": minimum, "max": MAX_QTY, "value": value},
            row,
        )
        return None
    return value


def _one_value(group: Group, rows: list[dict], column: str, label: str) -> str | None:
    """The group's value of a per-group column: rows may leave it blank, but those that fill it must agree."""
    values = {r.get(column, "") for r in rows} - {""}
    if len(values) > 1:
        group.fail(
            "inconsistent_group",
            _("The rows of this group give different values of %(column)s: %(values)s.")
            % {"column": label, "values": ", ".join(sorted(values))},
            group.rows[0],
        )
        return None
    return next(iter(values), None)


def _parse_time(group: Group, text: str, now: datetime) -> datetime | None:
    try:
        parsed = parse_datetime(text.replace("/", "-"))
    except ValueError:
        parsed = None
    if parsed is not None and not re.search(r"\d:\d\d", text):
        # A day alone (which parse_datetime reads as midnight) would measure a count taken after the day's sales
        # against the ledger before them: the time is required.
        parsed = None
    if parsed is None:
        group.fail(
            "bad_counted_at",
            _("counted_at must be a date and time such as 2026-06-01 18:30, not “%(value)s”.") % {"value": text},
            group.rows[0],
        )
        return None
    if timezone.is_naive(parsed):
        # A time without an offset is the store's local time, as written on the count sheet.
        zone = ZoneInfo(group.store.timezone) if group.store else timezone.get_default_timezone()
        parsed = parsed.replace(tzinfo=zone)
    if parsed > now:
        group.fail("counted_at_in_future", _("counted_at %(value)s is in the future.") % {"value": text}, group.rows[0])
        return None
    return parsed


def _check_counted_once(groups: list[Group]) -> None:
    """Each count's adjustment is measured against the ledger as of its counted_at, which does not hold the other
    counts of the same file (they are recorded later): two counts of one SKU at one store would both apply."""
    first: dict[tuple[str, str], Group] = {}
    for group in groups:
        for line in group.lines:
            other = first.setdefault((group.store_code, line.sku), group)
            if other is not group:
                group.fail(
                    "counted_twice",
                    _("%(sku)s at %(store)s is also counted in %(other)s of this file; count each SKU once per file.")
                    % {"sku": line.sku, "store": group.store_code, "other": other.group_id},
                    line.row,
                )


def _content_hash(kind: str, group: Group) -> str:
    if kind == StockImport.Kind.GOODS_RECEIPTS:
        content = {"source": group.source, "lines": sorted([line.sku, line.qty] for line in group.lines)}
    else:
        content = {
            "counted_at": group.counted_at_given,
            "lines": sorted([line.sku, line.qty, line.expected_on_hand] for line in group.lines),
        }
    return request_fingerprint({"admin_import": kind, "id": group.group_id, **content})


def _same_content(kind: str, booked: GoodsReceipt | StockCount, group: Group) -> bool:
    if kind == StockImport.Kind.GOODS_RECEIPTS:
        return pos.goods_receipt_matches(booked, lines={line.sku: line.qty for line in group.lines})
    return group.counted_at is not None and pos.count_matches(
        booked, counted_at=group.counted_at,
        lines=[pos.CountLine(sku=line.sku, counted=line.qty, expected_on_hand=None) for line in group.lines],
    )


def _check_replays(kind: str, groups: list[Group]) -> None:
    if not groups:
        return
    model, id_field, content_field = (
        (GoodsReceipt, "receipt_id", "lines") if kind == StockImport.Kind.GOODS_RECEIPTS
        else (StockCount, "count_id", "counted_at")
    )
    existing = {
        (booked.store_id, getattr(booked, id_field)): booked
        for booked in model.objects.filter(
            store_id__in={g.store.pk for g in groups}, **{f"{id_field}__in": {g.group_id for g in groups}}
        ).only("store_id", id_field, "content_hash", content_field)  # not each booking's stored result
    }
    for group in groups:
        booked = existing.get((group.store.pk, group.group_id))
        if booked is None:
            continue
        if booked.content_hash == group.content_hash or _same_content(kind, booked, group):
            group.replay = True  # this file again, or the same note or count booked at the till
        else:
            group.fail(
                "id_reused",
                _("%(id)s was already booked at %(store)s with other content; give this one a new id.")
                % {"id": group.group_id, "store": group.store_code},
                group.rows[0],
            )


def _takeable_units(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Per stock row, the reserved units a count may take (orders.services.takeable's reservations, as record_count
    takes them); the rest (packed orders) stays on hand whatever the count finds. Two queries for all the rows."""
    if not pairs:
        return {}
    stores, products = {s for s, _ in pairs}, {p for _, p in pairs}
    on_rows = [r for r in Reservation.objects.filter(store_id__in=stores, product_id__in=products)
               if (r.store_id, r.product_id) in pairs]
    units: dict[tuple[int, int], int] = defaultdict(int)
    for r in takeable(on_rows):
        units[(r.store_id, r.product_id)] += r.quantity
    return units


def _compute_changes(kind: str, groups: list[Group], products: dict[str, Product]) -> None:
    if not groups:
        return
    rows = {
        (s, p): (on_hand, reserved, unavailable)
        for s, p, on_hand, reserved, unavailable in Stock.objects.filter(
            store_id__in={g.store.pk for g in groups},
            product_id__in={products[line.sku].pk for g in groups for line in g.lines},
        ).values_list("store_id", "product_id", "on_hand", "reserved", "unavailable")
    }
    can_take = _takeable_units(set(rows)) if kind == StockImport.Kind.COUNTS else {}
    # Groups of one file touching the same stock row are shown one after the other, as they will be applied.
    running = {pair: on_hand for pair, (on_hand, _reserved, _unavailable) in rows.items()}
    for group in groups:
        as_of, sold_after = {}, {}
        if kind == StockImport.Kind.COUNTS:
            pids = [products[line.sku].pk for line in group.lines]
            as_of = pos.ledger_on_hand_as_of(store=group.store, product_ids=pids, at=group.counted_at)
            sold_after = shortfall_sold_after(store=group.store, product_ids=pids, at=group.counted_at)
        for line in group.lines:
            pid = products[line.sku].pk
            pair = (group.store.pk, pid)
            on_hand = running.get(pair, 0)
            line.on_hand = on_hand
            if kind == StockImport.Kind.GOODS_RECEIPTS:
                line.change = line.qty
            else:
                line.ledger_as_of = as_of[pid]
                # What record_count will do (count_effect, its rule): a count below what is set aside is recorded
                # too, taking from the reservations, so no issue to show; what it shows is what it applies.
                _on_hand, reserved, unavailable = rows.get(pair, (0, 0, 0))
                effect = count_effect(
                    on_hand=on_hand, reserved=reserved, unavailable=unavailable, counted=line.qty, as_of=as_of[pid],
                    sold_after=sold_after.get(pid, 0), take=lambda units, pair=pair: min(units, can_take.get(pair, 0)),
                )
                line.change = effect.on_hand_after - on_hand
                if line.expected_on_hand is not None and line.expected_on_hand != on_hand:
                    group.fail(
                        "stale_quantity",
                        _("%(sku)s: expected on hand %(expected)d, but the ledger now has %(on_hand)d.")
                        % {"sku": line.sku, "expected": line.expected_on_hand, "on_hand": on_hand},
                        line.row,
                    )
            line.on_hand_after = running[pair] = on_hand + line.change
