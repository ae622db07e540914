"""Goods receipts and stock counts imported from a file in the admin.

A file is a table with one row per line (store, id, SKU, quantity). Rows are grouped by (store, id): each group is
one delivery note or one count and becomes ONE call to orders.pos.services.receive_goods or record_count. Those
are atomic and idempotent per (store, id) plus a hash of the content, so a group applies in full or not at all, the
same file imported again changes nothing (every group is a replay), and an id already used with other content is
refused. Stock is never written here: only the services move it, and the ledger records the staff member as actor.

The steps, all here so that the admin only renders them:
    * read_table: the file into rows, parsed by django-import-export's formats (tablib) for CSV and TSV, and read
      here with openpyxl for XLSX (cell types matter there: see _read_xlsx), columns checked;
    * build_preview: rows checked and grouped, and what each group would change, read from the ledger without
      writing anything; problems are reported per row and group;
    * prepare_import / confirm_import / apply_import: a preview without errors is kept as a StockImport, and on
      confirmation applied group by group, inline for a small file or by a Celery task (with progress recorded on
      the StockImport row) above settings.O2O_IMPORT_ASYNC_GROUPS groups.

Policy: a file whose preview shows any error is not applied at all; fix the file and upload it again. A group can
still be refused at the moment it is applied (the stock moved since the preview, e.g. a count now below what is
reserved): that group is reported in the import's results and the other groups still apply.
"""

import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from io import BytesIO
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from import_export.formats.base_formats import CSV, XLSX, Format

from inventory.models import Product, Stock, StockImport, Store
from o2o.domain_errors import DomainError, InvalidInput
from o2o.idempotency import request_fingerprint
from orders.pos import services as pos
from orders.pos.models import GoodsReceipt, StockCount

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_XLSX_UNZIPPED_BYTES = 200 * 1024 * 1024  # a workbook is a zip: what its parts may expand to (zip bombs)
MAX_ROWS = 100_000
MAX_LINES_PER_GROUP = 1000  # the POS API's limit for one count or delivery
MAX_QTY = 10**9
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")  # the POS API's ids, so both channels share one id space
RESULTS_EVERY = 50  # groups between two writes of the per-group results while applying (counters: every group)


@dataclass(frozen=True)
class Spec:
    kind: str
    id_column: str
    qty_column: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    example: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


SPECS: dict[str, Spec] = {
    StockImport.Kind.GOODS_RECEIPTS: Spec(
        kind=StockImport.Kind.GOODS_RECEIPTS,
        id_column="receipt_id",
        qty_column="qty",
        required=("store", "receipt_id", "sku", "qty"),
        optional=("source",),
        example=("HCM-Q1-001", "DN-2026-0001", "AO-THUN-M", "12", "DC Bình Dương"),
    ),
    StockImport.Kind.COUNTS: Spec(
        kind=StockImport.Kind.COUNTS,
        id_column="count_id",
        qty_column="counted",
        required=("store", "count_id", "sku", "counted"),
        optional=("counted_at", "expected_on_hand"),
        example=("HCM-Q1-001", "CC-2026-0001", "AO-THUN-M", "7", "2026-06-01 18:30", ""),
    ),
}


class ImportFileInvalid(InvalidInput):
    code = "import_file_invalid"
    default_message = "The file cannot be imported."


# --- reading ---------------------------------------------------------------------------------------------------------


def read_table(*, kind: str, content: bytes, file_format: Format) -> list[dict[str, Any]]:
    """The data rows of an uploaded file as {"_row": spreadsheet row number, column: text}. Blank rows are skipped.
    Raises ImportFileInvalid for a file that cannot be read, or whose columns are not the kind's."""
    spec = SPECS[kind]
    if len(content) > MAX_FILE_BYTES:
        raise ImportFileInvalid(_("The file is larger than %(mb)d MB.") % {"mb": MAX_FILE_BYTES // (1024 * 1024)})
    if isinstance(file_format, XLSX):
        header, body = _read_xlsx(content)
    else:
        header, body = _read_text(content, file_format)
    headers = [_cell(h).lower() for h in header]
    if not any(headers):
        raise ImportFileInvalid(_("The file is empty: the first row must name the columns."))
    missing = [c for c in spec.required if c not in headers]
    unknown = [h for h in headers if h and h not in spec.columns]
    repeated = sorted({h for h in headers if h and headers.count(h) > 1})
    if missing or unknown or repeated:
        problems = []
        if missing:
            problems.append(_("missing column(s): %(cols)s") % {"cols": ", ".join(missing)})
        if unknown:
            problems.append(_("unknown column(s): %(cols)s") % {"cols": ", ".join(unknown)})
        if repeated:
            problems.append(_("repeated column(s): %(cols)s") % {"cols": ", ".join(repeated)})
        raise ImportFileInvalid(
            _("The columns are not right (%(problems)s). Expected: %(expected)s.")
            % {"problems": "; ".join(problems), "expected": ", ".join(spec.columns)}
        )
    rows = []
    for index, values in body:
        stray = next((i for i in range(len(headers), len(values)) if _cell(values[i])), None)
        if stray is not None:
            # A value right of the last named column (tablib refuses such a CSV row outright).
            raise ImportFileInvalid(
                _("Cell %(cell)s has a value, but its column has no name in the first row.")
                % {"cell": f"{_column_letter(stray)}{index}"}
            )
        row = {h: _cell(v) for h, v in zip(headers, values, strict=False) if h}
        if not any(row.values()):
            continue
        if len(rows) >= MAX_ROWS:
            raise ImportFileInvalid(_("The file has more than %(max)d rows; split it.") % {"max": MAX_ROWS})
        rows.append({"_row": index, **{c: row.get(c, "") for c in spec.columns}})
    if not rows:
        raise ImportFileInvalid(_("The file has no data rows."))
    return rows


def _column_letter(index: int) -> str:
    """A 0-based column index as a spreadsheet names it: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _read_text(content: bytes, file_format: Format) -> tuple[list[Any], Any]:
    """CSV or TSV, through tablib: the header row, and the data rows numbered as a spreadsheet numbers them."""
    data: bytes | str = content
    if not file_format.is_binary():
        if content.startswith(b"PK\x03\x04"):
            # What staff do most: an Excel workbook uploaded with the format left at CSV.
            raise ImportFileInvalid(_("This file is an Excel workbook: choose the xlsx format and try again."))
        try:
            data = content.decode("utf-8-sig")  # spreadsheet programs often start a UTF-8 CSV with a BOM
        except UnicodeDecodeError:
            raise ImportFileInvalid(_("The file is not UTF-8 text. Save it as “CSV UTF-8” and try again.")) from None
    options = {}
    if isinstance(file_format, CSV) and isinstance(data, str):
        header = data.split("\n", 1)[0]
        if header.count(";") > header.count(","):
            # Spreadsheet programs set to Vietnamese (decimal comma) save "CSV" with semicolons.
            options["delimiter"] = ";"
    try:
        dataset = file_format.create_dataset(data, **options)
    except Exception as exc:  # noqa: BLE001 - tablib raises many kinds of errors for a malformed file
        raise ImportFileInvalid(_("The file could not be read: %(error)s") % {"error": exc}) from None
    return list(dataset.headers or []), enumerate(dataset, start=2)


OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 .xls, and password-protected .xlsx


def _read_xlsx(content: bytes) -> tuple[list[Any], list[tuple[int, tuple]]]:
    """The first worksheet of a workbook: its header row and its non-blank rows with their row numbers.

    Read here rather than through django-import-export's XLSX format, which hands over bare values and trusts the
    sheet's recorded size: the size some writers record is wrong (rows past it would be dropped without a word), a
    date-only cell would become midnight, and a number shown with leading zeros ("00123" through a 00000 format)
    would lose them. Values are turned into text by _cell, as for CSV, so both formats check the same way."""
    if content.startswith(OLE2_MAGIC):
        raise ImportFileInvalid(
            _("This is an Excel 97–2003 (.xls) or password-protected workbook: save it as an unprotected "
              "“Excel Workbook (.xlsx)” and try again.")
        )
    not_a_workbook = _("The file is not an Excel workbook (.xlsx). Choose the format that matches the file.")
    try:
        with zipfile.ZipFile(BytesIO(content)) as archive:
            unzipped = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError):
        raise ImportFileInvalid(not_a_workbook) from None
    if unzipped > MAX_XLSX_UNZIPPED_BYTES:
        raise ImportFileInvalid(
            _("The workbook expands to more than %(mb)d MB; split it.")
            % {"mb": MAX_XLSX_UNZIPPED_BYTES // (1024 * 1024)}
        )
    from openpyxl import load_workbook  # django-import-export[xlsx] installs it; only imports need it

    try:
        # data_only: a formula's value as last computed by the spreadsheet program, not the formula.
        workbook = load_workbook(BytesIO(content), read_only=True, data_only=True, keep_links=False)
    except Exception:  # noqa: BLE001 - a zip that is no workbook fails in many ways (missing parts, bad XML)
        raise ImportFileInvalid(not_a_workbook) from None
    try:
        if not workbook.worksheets:
            raise ImportFileInvalid(_("The workbook has no worksheet."))
        sheet = workbook.worksheets[0]  # the first tab, whichever tab was open when the file was saved
        sheet.reset_dimensions()  # read every row there is, not the size the file claims
        cells = sheet.iter_rows()
        header = [_xlsx_value(cell) for cell in next(cells, ())]
        while header and not _cell(header[-1]):
            header.pop()  # formatted but empty cells after the last column name
        body = []
        for number, row in enumerate(cells, start=2):
            values = tuple(_xlsx_value(cell) for cell in row)
            if not any(_cell(v) for v in values):
                continue  # blank, or only formatted: Excel keeps many such rows at the end of a sheet
            body.append((number, values))
            if len(body) > MAX_ROWS:
                break  # read_table says the file is too long; no need to read the rest
    except ImportFileInvalid:
        raise
    except Exception:  # noqa: BLE001 - a damaged sheet fails while it is read, not when it is opened
        raise ImportFileInvalid(
            _("The workbook could not be read; it may be damaged. Open it in Excel, save it again and retry.")
        ) from None
    finally:
        workbook.close()
    return header, body


_FORMAT_LITERALS = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')


def _xlsx_value(cell: Any) -> Any:
    """A cell's value as the sheet shows it, where the bare value would say something else."""
    value = cell.value
    number_format = cell.number_format or ""
    if isinstance(value, datetime):
        shown = _FORMAT_LITERALS.sub("", number_format.split(";")[0]).lower()
        if not re.search(r"[hs]", shown):
            # A date-formatted cell holds midnight: the sheet says a day, not a time, so it reads as the day alone
            # (a count's counted_at needs the time, exactly as in a CSV file).
            return value.date()
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and float(value).is_integer()
        and re.fullmatch(r"0+", number_format)
    ):
        return str(int(value)).zfill(len(number_format))  # a code kept with its leading zeros by a "00000" format
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 12.0
    if isinstance(value, date):  # a datetime too: naive, so read as the store's local time, like CSV text
        return value.isoformat()
    return str(value).strip()


def template_rows(*, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The headers of a kind's file and an example row (for the downloadable template)."""
    spec = SPECS[kind]
    return spec.columns, spec.example


NUMBER_COLUMNS = frozenset({"qty", "counted", "expected_on_hand"})
TIME_COLUMNS = frozenset({"counted_at"})


def workbook_bytes(*, kind: str, rows: list[tuple[str, ...]], stamp: datetime | None = None) -> bytes:
    """An .xlsx of a kind's columns and `rows` (text, as in a CSV file): the Excel template, and the samples in
    fixtures/imports/ (made by fixtures/imports/make_xlsx_samples.py). Quantities are numbers and counted_at a
    date-time cell, as staff would type them; every other column is formatted as Text, so that Excel keeps the
    leading zeros of a SKU or an id typed into it later instead of turning it into a number.

    `stamp` (naive UTC) is the time the workbook says it was made, inside it and on each part of its zip: a fixed
    one makes the same bytes every time (the committed samples), instead of the time of the call."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.xml.constants import ARC_CORE
    from openpyxl.xml.functions import tostring

    spec = SPECS[kind]
    formats = {
        column: "yyyy-mm-dd hh:mm" if column in TIME_COLUMNS else "General" if column in NUMBER_COLUMNS else "@"
        for column in spec.columns
    }
    workbook = Workbook()
    if stamp is not None:
        workbook.properties.created = workbook.properties.modified = stamp
    sheet = workbook.active
    sheet.title = kind
    sheet.append(spec.columns)
    for index, column in enumerate(spec.columns, start=1):
        sheet.cell(row=1, column=index).font = Font(bold=True)
        dimension = sheet.column_dimensions[get_column_letter(index)]
        dimension.width = max(14, len(column) + 4)
        dimension.number_format = formats[column]  # for the rows staff add
    for number, row in enumerate(rows, start=2):
        for index, (column, text) in enumerate(zip(spec.columns, row, strict=False), start=1):
            value: Any = text or None
            when = parse_datetime(text) if text and column in TIME_COLUMNS else None
            if column in NUMBER_COLUMNS and re.fullmatch(r"\d+", text):
                value = int(text)
            elif when is not None and timezone.is_naive(when):  # Excel has no time zones: a zone stays text
                value = when
            cell = sheet.cell(row=number, column=index, value=value)
            cell.number_format = formats[column]
    sheet.freeze_panes = "A2"
    out = BytesIO()
    workbook.save(out)
    if stamp is None:
        return out.getvalue()
    # Saving stamps the workbook's "modified" with the clock, and the zip's parts too: both are set back.
    workbook.properties.modified = stamp
    fixed = BytesIO()
    with zipfile.ZipFile(out) as made, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in made.infolist():
            part = zipfile.ZipInfo(member.filename, date_time=stamp.timetuple()[:6])
            part.compress_type = zipfile.ZIP_DEFLATED
            data = made.read(member)
            if member.filename == ARC_CORE:
                data = tostring(workbook.properties.to_tree())
            archive.writestr(part, data)
    return fixed.getvalue()


# --- preview ---------------------------------------------------------------------------------------------------------


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
    # Groups of one file touching the same stock row are shown one after the other, as they will be applied.
    running = {pair: on_hand for pair, (on_hand, _reserved, _unavailable) in rows.items()}
    for group in groups:
        as_of = {}
        if kind == StockImport.Kind.COUNTS:
            as_of = pos.ledger_on_hand_as_of(
                store=group.store, product_ids=[products[line.sku].pk for line in group.lines], at=group.counted_at
            )
        for line in group.lines:
            pid = products[line.sku].pk
            _on_hand, reserved, unavailable = rows.get((group.store.pk, pid), (0, 0, 0))
            on_hand = running.get((group.store.pk, pid), 0)
            line.on_hand = on_hand
            if kind == StockImport.Kind.GOODS_RECEIPTS:
                line.change = line.qty
            else:
                line.ledger_as_of = as_of[pid]
                line.change = line.qty - as_of[pid]
                if line.expected_on_hand is not None and line.expected_on_hand != on_hand:
                    group.fail(
                        "stale_quantity",
                        _("%(sku)s: expected on hand %(expected)d, but the ledger now has %(on_hand)d.")
                        % {"sku": line.sku, "expected": line.expected_on_hand, "on_hand": on_hand},
                        line.row,
                    )
            line.on_hand_after = running[(group.store.pk, pid)] = on_hand + line.change
            if kind == StockImport.Kind.COUNTS and line.on_hand_after < max(reserved + unavailable, 0):
                group.fail(
                    "count_below_set_aside",
                    _(
                        "%(sku)s: the count would leave %(after)d on hand, less than the "
                        "%(set_aside)d reserved or quarantined."
                    )
                    % {"sku": line.sku, "after": line.on_hand_after, "set_aside": reserved + unavailable},
                    line.row,
                )


# --- the import ------------------------------------------------------------------------------------------------------


def staff_actor(user) -> str:
    return f"staff:{user.get_username()}"[:150]


@transaction.atomic
def prepare_import(
    *, kind: str, rows: list[dict[str, Any]], file_name: str, user, store_ids: frozenset[int] | None
) -> tuple[Preview, StockImport | None]:
    """Preview `rows`; if nothing is wrong, keep them as a StockImport waiting for confirmation. No stock moves."""
    created_at = timezone.now()
    preview = build_preview(kind=kind, rows=rows, store_ids=store_ids, default_counted_at=created_at)
    if preview.has_errors:
        return preview, None
    stock_import = StockImport.objects.create(
        kind=kind,
        file_name=file_name[:255],
        uploaded_by=user,
        actor=staff_actor(user),
        rows=rows,
        total_groups=len(preview.groups),
        created_at=created_at,
    )
    stock_import.stores.set(preview.store_ids)
    return preview, stock_import


def confirm_import(*, stock_import_id: int, store_ids: frozenset[int] | None) -> tuple[StockImport, Preview | None]:
    """Apply a previewed import: checked again (the ledger may have moved since the preview), then applied inline,
    or queued for the Celery task when it has more than settings.O2O_IMPORT_ASYNC_GROUPS groups. Returns the import
    and, when the new check found errors (nothing applied), that preview. Confirming twice applies once."""
    with transaction.atomic():
        stock_import = StockImport.objects.select_for_update().get(pk=stock_import_id)
        if stock_import.status != StockImport.Status.PREVIEWED:
            return stock_import, None
        preview = build_preview(
            kind=stock_import.kind,
            rows=stock_import.rows,
            store_ids=store_ids,
            default_counted_at=stock_import.created_at,
        )
        if preview.has_errors:
            return stock_import, preview
        background = len(preview.groups) > settings.O2O_IMPORT_ASYNC_GROUPS
        StockImport.objects.filter(pk=stock_import.pk).update(
            status=StockImport.Status.QUEUED, total_groups=len(preview.groups), error=""
        )
        if background:
            transaction.on_commit(lambda: _queue(stock_import.pk))
    if not background:
        apply_import(stock_import_id=stock_import.pk)
    stock_import.refresh_from_db()
    return stock_import, None


def _queue(stock_import_id: int) -> None:
    from orders.pos.tasks import apply_stock_import

    try:
        apply_stock_import.delay(stock_import_id)
    except Exception as exc:  # noqa: BLE001 - no broker: say so and let the user confirm again later
        StockImport.objects.filter(pk=stock_import_id, status=StockImport.Status.QUEUED).update(
            status=StockImport.Status.PREVIEWED,
            error=_("The task queue could not be reached (%(error)s); nothing was applied. Confirm again later.")
            % {"error": exc},
        )


def apply_import(*, stock_import_id: int) -> StockImport:
    """Apply every group of a confirmed import through the POS services, recording progress as it goes.

    Safe to run again (a task delivered twice, or after a worker died): groups already applied are replays."""
    claimed = StockImport.objects.filter(
        pk=stock_import_id, status__in=[StockImport.Status.QUEUED, StockImport.Status.RUNNING]
    ).update(
        status=StockImport.Status.RUNNING,
        started_at=timezone.now(),
        done_groups=0,
        failed_groups=0,
        replayed_groups=0,
        results=[],
    )
    stock_import = StockImport.objects.get(pk=stock_import_id)
    if not claimed:
        return stock_import
    # The scope was checked when the import was confirmed; the groups are rebuilt the same way, without the reads
    # of the preview (each service reads and locks what it needs).
    preview = build_preview(
        kind=stock_import.kind,
        rows=stock_import.rows,
        store_ids=None,
        default_counted_at=stock_import.created_at,
        with_changes=False,
    )
    results: list[dict] = []
    done = failed = replayed = 0
    try:
        for group in preview.groups:
            outcome = _apply_group(stock_import, group)
            results.append(outcome)
            done += 1
            failed += outcome["status"] == "refused"
            replayed += outcome["status"] == "replayed"
            update: dict[str, Any] = {"done_groups": done, "failed_groups": failed, "replayed_groups": replayed}
            if done % RESULTS_EVERY == 0:
                update["results"] = results
            StockImport.objects.filter(pk=stock_import.pk).update(**update)
    except Exception as exc:
        StockImport.objects.filter(pk=stock_import.pk).update(
            status=StockImport.Status.FAILED, results=results, error=str(exc)[:2000], finished_at=timezone.now()
        )
        raise
    status = StockImport.Status.DONE_WITH_ERRORS if failed else StockImport.Status.DONE
    StockImport.objects.filter(pk=stock_import.pk).update(status=status, results=results, finished_at=timezone.now())
    stock_import.refresh_from_db()
    return stock_import


def _apply_group(stock_import: StockImport, group: Group) -> dict:
    outcome: dict[str, Any] = {
        "store": group.store_code,
        "id": group.group_id,
        "rows": group.rows,
        "lines": len(group.lines),
    }
    if group.issues:
        return {
            **outcome,
            "status": "refused",
            "code": group.issues[0].code,
            "message": "; ".join(i.message for i in group.issues),
        }
    try:
        if stock_import.kind == StockImport.Kind.GOODS_RECEIPTS:
            result, was_replay = pos.receive_goods(
                store=group.store,
                receipt_id=group.group_id,
                source=group.source,
                lines={line.sku: line.qty for line in group.lines},
                content_hash=group.content_hash,
                actor=stock_import.actor,
            )
            changes = [{"sku": line["sku"], "change": line["qty"]} for line in result.get("lines", [])]
        else:
            result, was_replay = pos.record_count(
                store=group.store,
                count_id=group.group_id,
                counted_at=group.counted_at,
                lines=[
                    pos.CountLine(sku=line.sku, counted=line.qty, expected_on_hand=line.expected_on_hand)
                    for line in group.lines
                ],
                content_hash=group.content_hash,
                actor=stock_import.actor,
            )
            changes = [{"sku": line["sku"], "change": line["adjustment"]} for line in result.get("lines", [])]
    except DomainError as exc:
        return {**outcome, "status": "refused", "code": exc.code, "message": exc.message}
    return {**outcome, "status": "replayed" if was_replay else "applied", "changes": changes}


def progress(stock_import: StockImport) -> dict:
    """What the progress bar shows."""
    finished = stock_import.status in (
        StockImport.Status.DONE,
        StockImport.Status.DONE_WITH_ERRORS,
        StockImport.Status.FAILED,
    )
    return {
        "id": stock_import.pk,
        "status": stock_import.status,
        "status_display": str(stock_import.get_status_display()),
        "total": stock_import.total_groups,
        "done": stock_import.done_groups,
        "refused": stock_import.failed_groups,
        "replayed": stock_import.replayed_groups,
        "percent": stock_import.percent,
        "finished": finished,
        "error": stock_import.error,
    }
