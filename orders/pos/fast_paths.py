"""The POS's PostgreSQL fast path beside its ORM twin (see o2o/fast_paths.py): a synced chunk's receipts and lines
go in with COPY on PostgreSQL (one round trip each, ids drawn in advance), with bulk_create anywhere else."""

from collections.abc import Sequence

from inventory.services import copy_insert
from o2o.fast_paths import use_sql
from orders.pos.models import TillReceipt, TillReceiptLine


def insert_receipts(receipts: Sequence[TillReceipt]) -> None:
    """Insert a chunk's receipts; afterwards each has its primary key (lines point at it)."""
    if use_sql():
        copy_insert(TillReceipt, receipts, with_ids=True)
    else:
        TillReceipt.objects.bulk_create(receipts)


def insert_receipt_lines(lines: Sequence[TillReceiptLine]) -> None:
    if use_sql():
        copy_insert(TillReceiptLine, lines)
    else:
        TillReceiptLine.objects.bulk_create(lines)
