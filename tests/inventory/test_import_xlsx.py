"""Stock imports from Excel workbooks (.xlsx) through the admin: upload -> preview -> confirm -> the ledger, as for
CSV, with what Excel does to cells: quantities stored as floats, counted_at as a date-time cell (the store's local
time), codes kept as text or shown with leading zeros, formatted empty rows, a recorded sheet size that is wrong,
Vietnamese text; and files that are not workbooks refused with a form error. Workbooks are built in memory with
openpyxl, as Excel would save them."""

import csv
import io
import re
import zipfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from import_export.formats import base_formats
from openpyxl import Workbook, load_workbook

from inventory.models import Product, Stock, StockImport, StockMovement
from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, make_staff
from orders.pos import imports
from orders.pos.admin import IMPORT_FORMATS
from orders.pos.models import GoodsReceipt, StockCount
from tests.conftest import put_stock
from tests.factories import ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-passphrase-42"
GOODS = "goods_receipts"
COUNTS = "counts"
ICT = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX = str(next(i for i, f in enumerate(IMPORT_FORMATS) if f is base_formats.XLSX))
CSV = str(IMPORT_FORMATS.index(base_formats.CSV))


@pytest.fixture
def chain(db):
    a = StoreFactory(code="HCM-Q1-001", city="Ho Chi Minh City", timezone="Asia/Ho_Chi_Minh")
    b = StoreFactory(code="HN-HK-001", city="Hà Nội", timezone="Asia/Ho_Chi_Minh")
    shirt = ProductFactory(sku="AO-THUN-M")
    hat = ProductFactory(sku="NON-LA")
    for store in (a, b):
        put_stock(store, shirt, 10)
        put_stock(store, hat, 5)
    return {"a": a, "b": b, "shirt": shirt, "hat": hat}


@pytest.fixture
def hq(chain):
    return make_staff(username="hoa.hq", password=PASSWORD, role=HEAD_OFFICE, all_stores=True)


def _workbook(*rows, formats: dict[str, str] | None = None) -> Workbook:
    """A workbook whose first sheet holds `rows` as cells (the first row: the column names). `formats` gives cells
    a number format, by coordinate ("B2": "000")."""
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    for coordinate, number_format in (formats or {}).items():
        sheet[coordinate].number_format = number_format
    return workbook


def _bytes(workbook: Workbook) -> bytes:
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _upload(client, kind: str, content: bytes, *, name: str = "import.xlsx", file_format: str = XLSX):
    upload = SimpleUploadedFile(name, content, content_type=XLSX_TYPE)
    return client.post(reverse("admin:inventory_stockimport_upload", args=[kind]),
                       {"import_file": upload, "format": file_format, "resource": "0"})


def _issues(response) -> list[tuple[str, int | None]]:
    return [(issue.code, issue.row) for group in response.context["preview"].groups for issue in group.issues]


def _confirm(client, response):
    stock_import = response.context["stock_import"]
    assert stock_import is not None, _issues(response)
    return client.post(reverse("admin:inventory_stockimport_confirm", args=[stock_import.pk]))


def _form_error(response) -> str:
    assert response.status_code == 200 and "preview" not in response.context
    return " ".join(response.context["form"].errors["import_file"])


def _on_hand(store, product) -> int:
    return Stock.objects.get(store=store, product=product).on_hand


def _ledger() -> dict:
    return {
        "movements": sorted(StockMovement.objects.values_list("pk", flat=True)),
        "goods": GoodsReceipt.objects.count(),
        "counts": StockCount.objects.count(),
        "stock": sorted(Stock.objects.values_list("store_id", "product_id", "on_hand", "reserved", "needs_count")),
    }


def test_goods_receipts_from_a_workbook_preview_confirm_and_replay(client, chain, hq):
    """Quantities as Excel stores them (12, 3.0), a blank row between groups, formatted empty rows and a cell of
    spaces at the end, column names as people type them, Vietnamese text."""
    workbook = _workbook(
        ("Store", "receipt_id", " SKU ", "qty", "source"),
        ("HCM-Q1-001", "DN-1", "AO-THUN-M", 12, "Kho Thủ Đức – Bình Dương"),
        ("HCM-Q1-001", "DN-1", "NON-LA", 3.0, None),
        (None, None, None, None, None),
        ("HN-HK-001", "DN-1", "AO-THUN-M", 4.0, "Kho Long Biên, Hà Nội"),
    )
    sheet = workbook.active
    for row in range(6, 40):  # what Excel leaves after a user formats whole columns and clears the cells
        sheet.cell(row=row, column=4).number_format = "0"
    sheet["E41"] = "   "
    content = _rewrite_sheet(_bytes(workbook), D3="3.0", D5="4E0")  # numbers stored as floats, as some tools do
    assert [row[3] for row in load_workbook(io.BytesIO(content)).worksheets[0].values][1:5] == [12, 3.0, None, 4.0]
    client.force_login(hq)
    before = _ledger()

    preview = _upload(client, GOODS, content)
    assert preview.status_code == 200
    groups = preview.context["preview"].groups
    assert [(g.store_code, g.group_id, g.status, g.rows) for g in groups] == [
        ("HCM-Q1-001", "DN-1", "new", [2, 3]), ("HN-HK-001", "DN-1", "new", [5])]
    assert [(line.sku, line.qty, line.on_hand, line.on_hand_after) for line in groups[0].lines] == [
        ("AO-THUN-M", 12, 10, 22), ("NON-LA", 3, 5, 8)]
    html = preview.content.decode()
    assert "Confirm import" in html and "Kho Thủ Đức – Bình Dương" in html
    assert _ledger() == before and StockImport.objects.get().file_name == "import.xlsx"

    assert _confirm(client, preview).status_code == 302
    assert StockImport.objects.get().status == "done"
    assert (_on_hand(chain["a"], chain["shirt"]), _on_hand(chain["a"], chain["hat"])) == (22, 8)
    assert _on_hand(chain["b"], chain["shirt"]) == 14
    booked = StockMovement.objects.filter(reason="goods_receipt", reference__startswith="goods:")
    assert sorted(booked.values_list("reference", "product__sku", "delta_on_hand", "actor")) == [
        ("goods:HCM-Q1-001:DN-1", "AO-THUN-M", 12, "staff:hoa.hq"),
        ("goods:HCM-Q1-001:DN-1", "NON-LA", 3, "staff:hoa.hq"),
        ("goods:HN-HK-001:DN-1", "AO-THUN-M", 4, "staff:hoa.hq")]
    assert GoodsReceipt.objects.get(store=chain["a"], receipt_id="DN-1").source == "Kho Thủ Đức – Bình Dương"
    assert GoodsReceipt.objects.get(store=chain["b"], receipt_id="DN-1").source == "Kho Long Biên, Hà Nội"

    # the same workbook again: every group a replay, and confirming it changes nothing
    after = _ledger()
    again = _upload(client, GOODS, content)
    assert [g.status for g in again.context["preview"].groups] == ["replay", "replay"]
    _confirm(client, again)
    assert _ledger() == after
    assert StockImport.objects.order_by("-pk").first().replayed_groups == 2


def test_a_fractional_quantity_is_a_row_error_and_nothing_is_imported(client, chain, hq):
    client.force_login(hq)
    before = _ledger()
    response = _upload(client, GOODS, _rewrite_sheet(_bytes(_workbook(
        ("store", "receipt_id", "sku", "qty"),
        ("HCM-Q1-001", "DN-2", "NON-LA", 5),
        ("HCM-Q1-001", "DN-2", "AO-THUN-M", 5.5),
    )), D2="5.0"))
    assert response.status_code == 200
    assert _issues(response) == [("bad_quantity", 3)]
    html = response.content.decode()
    assert "qty must be a whole number, not “5.5”" in html and "Nothing will be imported" in html
    assert response.context["stock_import"] is None and "Confirm import" not in html
    assert _ledger() == before and not StockImport.objects.exists()


def test_codes_keep_their_leading_zeros(client, chain, hq):
    """A SKU typed into a Text cell stays "00123"; an id Excel holds as the number 7 but shows as 007 (a "000"
    format) is read as the sheet shows it."""
    product = ProductFactory(sku="00123")
    put_stock(chain["a"], product, 1)
    client.force_login(hq)
    workbook = _workbook(("store", "receipt_id", "sku", "qty"), ("HCM-Q1-001", 7, "00123", 2),
                         formats={"B2": "000", "C2": "@"})
    response = _upload(client, GOODS, _bytes(workbook))
    (group,) = response.context["preview"].groups
    assert (group.group_id, [line.sku for line in group.lines], group.status) == ("007", ["00123"], "new")
    _confirm(client, response)
    assert GoodsReceipt.objects.filter(store=chain["a"], receipt_id="007").exists()
    assert _on_hand(chain["a"], product) == 3


def test_counts_with_a_date_time_cell_are_measured_at_the_stores_local_time(client, chain, hq):
    """counted_at typed into Excel is a date-time cell without a zone: the store's local time (the chain's zone,
    settings.TIME_ZONE, for these stores), exactly as the same text in a CSV file would be."""
    assert chain["a"].timezone == settings.TIME_ZONE == "Asia/Ho_Chi_Minh"
    # the shirts arrived three days ago; the count was taken yesterday at 18:30 Saigon time; 3 more arrived two
    # hours after the count (as UTC, 18:30 would be 7 hours later, after that delivery)
    StockMovement.objects.update(created_at=timezone.now() - timedelta(days=3))
    local = (timezone.now().astimezone(ICT) - timedelta(days=1)).replace(hour=18, minute=30, second=0, microsecond=0)
    put_stock(chain["a"], chain["shirt"], 3)
    later = StockMovement.objects.filter(store=chain["a"], product=chain["shirt"]).latest("pk")
    StockMovement.objects.filter(pk=later.pk).update(created_at=local + timedelta(hours=2))
    counted_at = local.replace(tzinfo=None)
    workbook = _workbook(
        ("store", "count_id", "sku", "counted", "counted_at", "expected_on_hand"),
        ("HCM-Q1-001", "CC-1", "AO-THUN-M", 7.0, counted_at, 13),
        ("HCM-Q1-001", "CC-1", "NON-LA", 5, counted_at, None),
        formats={"E2": "dd/mm/yyyy hh:mm", "E3": "dd/mm/yyyy hh:mm"},
    )
    content = _rewrite_sheet(_bytes(workbook), D2="7.0")
    client.force_login(hq)
    before = _ledger()
    preview = _upload(client, COUNTS, content)
    (group,) = preview.context["preview"].groups
    assert (group.status, group.counted_at) == ("new", local)
    assert [(line.sku, line.ledger_as_of, line.change, line.on_hand, line.on_hand_after) for line in group.lines] == [
        ("AO-THUN-M", 10, -3, 13, 10), ("NON-LA", 5, 0, 5, 5)]
    assert _ledger() == before

    _confirm(client, preview)
    count = StockCount.objects.get(store=chain["a"], count_id="CC-1")
    assert count.counted_at == local
    assert _on_hand(chain["a"], chain["shirt"]) == 10 and _on_hand(chain["a"], chain["hat"]) == 5
    counted = StockMovement.objects.filter(reason="count", reference="count:HCM-Q1-001:CC-1")
    assert list(counted.values_list("product__sku", "delta_on_hand", "actor")) == [("AO-THUN-M", -3, "staff:hoa.hq")]

    # the same count written as text in a CSV file is the same count: a replay, not a second adjustment
    after = _ledger()
    text = local.strftime("%Y-%m-%d %H:%M")
    body = ("store,count_id,sku,counted,counted_at,expected_on_hand\n"
            f"HCM-Q1-001,CC-1,AO-THUN-M,7,{text},13\nHCM-Q1-001,CC-1,NON-LA,5,{text},\n").encode()
    as_csv = _upload(client, COUNTS, body, name="count.csv", file_format=CSV)
    assert [g.status for g in as_csv.context["preview"].groups] == ["replay"]
    # and the workbook again too
    again = _upload(client, COUNTS, content)
    assert [g.status for g in again.context["preview"].groups] == ["replay"]
    _confirm(client, again)
    assert _ledger() == after


def test_a_date_without_a_time_is_refused_for_counted_at(client, chain, hq):
    """A date-formatted cell holds midnight, but says only the day: a count needs the time (as in a CSV file)."""
    day = (timezone.now().astimezone(ICT) - timedelta(days=2)).replace(tzinfo=None, hour=0, minute=0, second=0,
                                                                        microsecond=0)
    workbook = _workbook(("store", "count_id", "sku", "counted", "counted_at"),
                         ("HCM-Q1-001", "CC-9", "NON-LA", 4, day), formats={"E2": "dd/mm/yyyy"})
    client.force_login(hq)
    response = _upload(client, COUNTS, _bytes(workbook))
    assert _issues(response) == [("bad_counted_at", 2)]
    assert f"not “{day.date().isoformat()}”" in response.content.decode()
    assert response.context["stock_import"] is None
    # the same day written in a CSV file is refused the same way (parse_datetime alone would read it as midnight)
    body = f"store,count_id,sku,counted,counted_at\nHCM-Q1-001,CC-9,NON-LA,4,{day.date().isoformat()}\n".encode()
    assert _issues(_upload(client, COUNTS, body, name="count.csv", file_format=CSV)) == [("bad_counted_at", 2)]


def _rewrite_sheet(content: bytes, **cells_or_dimension: str) -> bytes:
    """The workbook with its first sheet's XML changed as other programs write it: `dimension="A1:B2"` replaces
    the recorded sheet size, `D3="3.0"` the stored value of a number cell (openpyxl writes 3.0 as "3")."""
    source, out = zipfile.ZipFile(io.BytesIO(content)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "xl/worksheets/sheet1.xml":
                for key, value in cells_or_dimension.items():
                    if key == "dimension":
                        pattern, replacement = rb'<dimension ref="[^"]*"', f'<dimension ref="{value}"'.encode()
                    else:
                        pattern = f'(<c r="{key}" t="n"><v>)[^<]*(</v>)'.encode()
                        replacement = rb"\g<1>" + value.encode() + rb"\g<2>"
                    data, n = re.subn(pattern, replacement, data)
                    assert n == 1, key
            target.writestr(member, data)
    return out.getvalue()


def test_rows_past_a_wrongly_recorded_sheet_size_are_read(client, chain, hq):
    content = _rewrite_sheet(_bytes(_workbook(
        ("store", "receipt_id", "sku", "qty"),
        ("HCM-Q1-001", "DN-3", "NON-LA", 1),
        ("HCM-Q1-001", "DN-3", "AO-THUN-M", 2),
        ("HN-HK-001", "DN-4", "NON-LA", 3),
    )), dimension="A1:B2")
    assert load_workbook(io.BytesIO(content), read_only=True).worksheets[0].max_row == 2  # the size it claims
    client.force_login(hq)
    response = _upload(client, GOODS, content)
    assert [(g.group_id, g.rows) for g in response.context["preview"].groups] == [("DN-3", [2, 3]), ("DN-4", [4])]


def test_a_value_outside_the_named_columns_is_refused(client, chain, hq):
    workbook = _workbook(("store", "receipt_id", "sku", "qty"), ("HCM-Q1-001", "DN-5", "NON-LA", 1))
    workbook.active["F2"] = "xem lại"
    client.force_login(hq)
    assert "Cell F2 has a value" in _form_error(_upload(client, GOODS, _bytes(workbook)))
    assert not StockImport.objects.exists()


def _zip_of(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x00\x13\x88garbage bytes, not a workbook" * 50, "not an Excel workbook (.xlsx)"),
        (b"store,receipt_id,sku,qty\nHCM-Q1-001,DN-6,NON-LA,1\n", "not an Excel workbook (.xlsx)"),
        (_zip_of("notes.txt", b"a zip, but no workbook in it"), "not an Excel workbook (.xlsx)"),
        (_zip_of("[Content_Types].xml", b"<Types><broken"), "not an Excel workbook (.xlsx)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "Excel 97–2003 (.xls) or password-protected"),
        (_bytes(_workbook()), "The file is empty"),
        (_bytes(_workbook(("store", "receipt_id", "sku", "qty"))), "no data rows"),
        (_bytes(_workbook(("Phiếu nhập kho tháng 6",), ("store", "receipt_id", "sku", "qty"))),
         "missing column(s): store, receipt_id, sku, qty"),
    ],
    ids=["garbage", "csv-as-xlsx", "zip-without-workbook", "broken-xml", "xls", "empty-sheet", "header-only",
         "title-row"],
)
def test_a_file_that_is_no_usable_workbook_is_a_form_error(client, chain, hq, content, says):
    client.force_login(hq)
    before = _ledger()
    response = _upload(client, GOODS, content)
    assert says in _form_error(response)
    assert _ledger() == before and not StockImport.objects.exists()


def test_a_workbook_uploaded_as_csv_says_to_choose_xlsx(client, chain, hq):
    client.force_login(hq)
    content = _bytes(_workbook(("store", "receipt_id", "sku", "qty"), ("HCM-Q1-001", "DN-7", "NON-LA", 1)))
    response = _upload(client, GOODS, content, file_format=CSV)
    assert "choose the xlsx format" in _form_error(response)


def test_a_damaged_sheet_is_a_form_error(client, chain, hq):
    content = _bytes(_workbook(("store", "receipt_id", "sku", "qty"), ("HCM-Q1-001", "DN-8", "NON-LA", 1)))
    source, out = zipfile.ZipFile(io.BytesIO(content)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]  # cut off in the middle of the rows
            target.writestr(member, data)
    client.force_login(hq)
    assert "could not be read" in _form_error(_upload(client, GOODS, out.getvalue()))


def test_the_upload_page_offers_xlsx_and_an_excel_template_that_imports(client, chain):
    manager = make_staff(username="minh.q1", password=PASSWORD, role=REGIONAL_MANAGER, stores=[chain["a"]])
    client.force_login(manager)
    for kind in (GOODS, COUNTS):
        page = client.get(reverse("admin:inventory_stockimport_upload", args=[kind])).content.decode()
        assert f'<option value="{XLSX}">xlsx</option>' in page
        template_url = reverse("admin:inventory_stockimport_template", args=[kind])
        assert f'href="{template_url}?format=xlsx"' in page
        template = client.get(template_url, {"format": "xlsx"})
        assert template["Content-Type"] == XLSX_TYPE
        assert template["Content-Disposition"] == f'attachment; filename="{kind}_template.xlsx"'
        sheet = load_workbook(io.BytesIO(template.content)).worksheets[0]
        assert [cell.value for cell in sheet[1]] == list(imports.SPECS[kind].columns)
        # codes typed into the template later stay text (leading zeros kept); quantities are numbers
        assert sheet.column_dimensions["A"].number_format == "@" and sheet.column_dimensions["C"].number_format == "@"
        assert isinstance(sheet["D2"].value, int)
        if kind == COUNTS:
            assert sheet["E2"].value == datetime(2026, 6, 1, 18, 30) and sheet["E2"].is_date
        # the template as downloaded, with its example row, previews without an error
        preview = _upload(client, kind, template.content, name=f"{kind}_template.xlsx")
        assert _issues(preview) == [], kind
        assert preview.context["stock_import"] is not None


@pytest.mark.parametrize("kind", [GOODS, COUNTS])
def test_the_excel_samples_hold_the_csv_samples_rows_and_import(client, chain, hq, kind):
    """fixtures/imports/*_sample.xlsx are made from the CSV samples by fixtures/imports/make_xlsx_samples.py."""
    folder = settings.BASE_DIR / "fixtures" / "imports"
    xlsx = (folder / f"{kind}_sample.xlsx").read_bytes()
    from_csv = imports.read_table(kind=kind, content=(folder / f"{kind}_sample.csv").read_bytes(),
                                  file_format=base_formats.CSV())
    assert imports.read_table(kind=kind, content=xlsx, file_format=base_formats.XLSX()) == from_csv
    with open(folder / f"{kind}_sample.csv", encoding="utf-8-sig", newline="") as sample:
        assert len(list(csv.DictReader(sample))) == len(from_csv) == 3
    for sku in ("AT-COT-TRG-M", "AT-COT-TRG-L"):
        product = ProductFactory(sku=sku)
        put_stock(chain["a"], product, 8)
        put_stock(chain["b"], product, 8)
    client.force_login(hq)
    response = _upload(client, kind, xlsx, name=f"{kind}_sample.xlsx")
    assert _confirm(client, response).status_code == 302
    assert StockImport.objects.get().status == "done"
    m = Product.objects.get(sku="AT-COT-TRG-M")
    assert _on_hand(chain["a"], m) == (8 + 12 if kind == GOODS else 9)


def test_stock_exports_as_xlsx_too(client, chain, hq):
    """The dependency also turns on the stock list's Excel export: aware times must not break it."""
    formats = admin.site._registry[Stock].get_export_formats()
    index = str(next(i for i, f in enumerate(formats) if f is base_formats.XLSX))
    fields = {"stockresource_store": "on", "stockresource_sku": "on", "stockresource_on_hand": "on",
              "stockresource_updated_at": "on"}
    client.force_login(hq)
    response = client.post(reverse("admin:inventory_stock_export"), {"format": index, "resource": "0", **fields})
    assert response.status_code == 200 and response["Content-Type"] == XLSX_TYPE
    rows = list(load_workbook(io.BytesIO(response.content)).worksheets[0].values)
    assert rows[0][:3] == ("store", "sku", "on_hand")
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == [
        ("HCM-Q1-001", "AO-THUN-M", 10), ("HCM-Q1-001", "NON-LA", 5), ("HN-HK-001", "AO-THUN-M", 10),
        ("HN-HK-001", "NON-LA", 5)]
    assert all(isinstance(r[3], datetime) for r in rows[1:])
