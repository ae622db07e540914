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

from orders.pos.imports.applying import apply_import, confirm_import, prepare_import, progress, staff_actor
from orders.pos.imports.preview import Group, Issue, Line, Preview, build_preview
from orders.pos.imports.reading import read_table, template_rows, workbook_bytes
from orders.pos.imports.spec import MAX_FILE_BYTES, MAX_ROWS, SPECS, ImportFileInvalid, Spec

__all__ = [
    "MAX_FILE_BYTES", "MAX_ROWS", "SPECS", "Group", "ImportFileInvalid", "Issue", "Line", "Preview", "Spec",
    "apply_import", "build_preview", "confirm_import", "prepare_import", "progress", "read_table", "staff_actor",
    "template_rows", "workbook_bytes",
]
