"""What a stock import file holds: its kinds (goods receipts, counts), their columns and the limits."""


import re
from dataclasses import dataclass

from inventory.models import StockImport
from o2o.domain_errors import InvalidInput

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
