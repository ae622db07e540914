"""Members: one per phone number across every channel, duplicates merged into one, and the locks that find the
member who holds a phone's points."""

from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from loyalty import conf
from loyalty.exceptions import InvalidMerge
from loyalty.models import Lot, Member, Posting, PostingKind, RedemptionHold
from loyalty.phones import normalize_phone
from loyalty.services.ledger import A, PostingSource, _post
from o2o.domain_errors import DomainError, InvalidInput


def get_or_create_member(
    *, phone: str, name: str | None = None, email: str | None = None, channel: str = "", store: str = ""
) -> tuple[Member, bool]:
    """The member behind a phone number (normalised to E.164; a merged member resolves to the one it was merged
    into), created on first purchase or sign-up from any channel. Fills a blank name or email, never overwrites.
    Returns (member, created). Raises InvalidPhone, InvalidInput (email)."""
    e164 = normalize_phone(phone)
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise InvalidInput("Not a valid email address.", details={"email": email}) from exc
    with transaction.atomic():
        member, created = Member.objects.get_or_create(
            phone=e164,
            defaults={"name": (name or "")[:200], "email": email or "", "created_channel": channel[:64],
                      "created_store": store[:64], "tier": conf.tiers()[0].code},
        )
        if member.merged_into_id:
            member = Member.objects.get(pk=member.merged_into_id)
        if not created:
            fill = {}
            if name and not member.name:
                fill["name"] = name[:200]
            if email and not member.email:
                fill["email"] = email
            if fill:
                Member.objects.filter(pk=member.pk).update(**fill, updated_at=timezone.now())
                for field, value in fill.items():
                    setattr(member, field, value)
        return member, created


def merge_members(*, keep: Member, merge: Member, actor: str, now: datetime | None = None) -> Posting:
    """Merge a duplicate sign-up into `keep`. Every ledger entry stays where it is; one MERGE posting moves
    `merge`'s balances (available, held, pending, shortfall) to `keep`, its lots and holds are re-pointed, and
    `merge.merged_into = keep` so its phone resolves to `keep` from then on."""
    now = now or timezone.now()
    if keep.pk == merge.pk:
        raise InvalidMerge("A member cannot be merged into itself.")
    with transaction.atomic():
        locked = {m.pk: m for m in Member.objects.select_for_update().filter(pk__in=[keep.pk, merge.pk]).order_by("pk")}
        kept, merged = locked[keep.pk], locked[merge.pk]
        if kept.merged_into_id or merged.merged_into_id:
            raise InvalidMerge("One of these members was already merged.", details={"keep": kept.phone, "merge": merged.phone})
        entries = [
            (A.AVAILABLE, -merged.available, merged), (A.AVAILABLE, merged.available, kept),
            (A.HELD, -merged.held, merged), (A.HELD, merged.held, kept),
            (A.PENDING, -merged.pending, merged), (A.PENDING, merged.pending, kept),
            (A.SHORTFALL, merged.shortfall, merged), (A.SHORTFALL, -merged.shortfall, kept),
        ]
        posting = _post(
            member=kept, kind=PostingKind.MERGE, entries=entries, source=PostingSource(actor=actor), now=now,
            points=merged.balance, reason=f"merged {merged.phone} into {kept.phone}",
        )
        Lot.objects.filter(member=merged).update(member=kept)
        RedemptionHold.objects.filter(member=merged).update(member=kept)
        Member.objects.filter(merged_into=merged).update(merged_into=kept, updated_at=now)  # flatten chains
        fill = {}
        if not kept.name and merged.name:
            fill["name"] = merged.name
        if not kept.email and merged.email:
            fill["email"] = merged.email
        Member.objects.filter(pk=kept.pk).update(**fill, updated_at=now)
        Member.objects.filter(pk=merged.pk).update(merged_into=kept, updated_at=now)
        return posting


def lock_members_for_phones(phones: Iterable[str]) -> dict[str, Member]:
    """Lock the existing members behind `phones` in primary-key order, for a caller about to post to several of
    them in one transaction (a chunk of till receipts): taken before any posting, so two callers with the same
    members in another order cannot deadlock. Call it inside the caller's transaction, after any stock rows it
    locks (stock rows first, then members: the same order as an order placement that reserves stock and then
    captures points).

    Returns {E.164 phone: the member that holds its points}: a merged member resolves to the member it was merged
    into (that one is locked too). Phones that do not parse are skipped (the caller refuses them on their own), and
    so are phones with no member yet (the caller creates them, get_or_create_member). The members are partial
    instances (pk, phone, merged_into_id): lock them again (every action does) before reading counters."""
    e164 = set()
    for phone in phones:
        try:
            e164.add(normalize_phone(phone))
        except DomainError:
            continue
    if not e164:
        return {}
    merged_into = Member.objects.filter(phone__in=e164, merged_into__isnull=False).values("merged_into_id")
    locked = {
        m.pk: m
        for m in Member.objects.select_for_update().filter(Q(phone__in=e164) | Q(pk__in=merged_into)).order_by("pk")
        .only("pk", "phone", "merged_into_id")
    }
    found = {}
    for m in locked.values():
        if m.phone in e164:
            root = m if m.merged_into_id is None else locked.get(m.merged_into_id)
            if root is not None and root.merged_into_id is None:
                found[m.phone] = root
    return found
