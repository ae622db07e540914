"""The import itself: prepared from a preview, confirmed, applied group by group through the POS services (in a
Celery task for large files), with its progress."""


from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from inventory.models import StockImport
from o2o.domain_errors import DomainError
from orders.pos import services as pos
from orders.pos.imports.preview import Group, Preview, build_preview
from orders.pos.imports.spec import RESULTS_EVERY


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
