"""Reading an uploaded file (CSV, TSV or an Excel workbook) into rows, and the templates to download."""


import re
import zipfile
from datetime import date, datetime
from io import BytesIO
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from import_export.formats.base_formats import CSV, XLSX, Format

from orders.pos.imports.spec import MAX_FILE_BYTES, MAX_ROWS, MAX_XLSX_UNZIPPED_BYTES, SPECS, ImportFileInvalid


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
