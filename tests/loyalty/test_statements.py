"""What a posting costs the database: one statement to lock the member and read what the action needs, one for the
posting and everything that goes with it. And the reads made in the lock's statement stay right when another
posting for the same member commits while the statement waits for the lock (PostgreSQL returns the newest member
row, but the rest of the statement comes from the snapshot taken before the wait)."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from loyalty import services
from loyalty.models import Lot, Member, Posting, PostingKind
from tests.loyalty.conftest import POS, T0, WEB, assert_ledger_ok, fresh, give, key

FIRST_WORDS = ["SAVEPOINT", "SELECT", "WITH", "RELEASE"]  # inside the test's transaction: lock + reads, posting


def _statements(call) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"].split()[0] for q in queries.captured_queries]


@pytest.mark.django_db
def test_every_hot_action_is_two_statements(member, settings):
    settings.LOYALTY_PREPARED_STATEMENTS = False  # Django's cursor, so that every statement is counted here
    give(member, 300)
    earning = None

    def earn():
        nonlocal earning
        earning = services.earn_points(member=member, amount_paid_vnd=1_000_000, source=POS, idempotency_key=key())

    assert _statements(earn) == FIRST_WORDS
    assert _statements(lambda: services.redeem_points(member=member, points=150, source=POS,
                                                      idempotency_key=key())) == FIRST_WORDS
    holds = []
    assert _statements(lambda: holds.append(services.hold_redemption(member=member, points=100, source=WEB,
                                                                     idempotency_key=key()))) == FIRST_WORDS
    assert _statements(lambda: services.capture_redemption(hold=holds[0], reference="WEB-9")) == FIRST_WORDS
    holds.append(services.hold_redemption(member=member, points=30, source=WEB, idempotency_key=key()))
    assert _statements(lambda: services.void_redemption(hold=holds[1])) == FIRST_WORDS
    # The earning's own lot first (the member's oldest lots, if it is short, are read with the lock too).
    assert _statements(lambda: services.reverse_earning(earning=earning, points=100, source=POS,
                                                        idempotency_key=key())) == FIRST_WORDS
    assert fresh(member).available == 300 + 100 - 150 - 100 - 100
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_spend_over_more_lots_than_the_lock_reads_reads_on(member):
    for i in range(services._LOTS_PAGE + 3):
        give(member, 10, now=T0 + timedelta(days=40 * i))  # a lot a month: different expiries
    services.redeem_points(member=member, points=10 * (services._LOTS_PAGE + 2) + 5, source=POS,
                           idempotency_key=key())
    lots = list(Lot.objects.filter(member=member).order_by("expires_at", "id").values_list("remaining", flat=True))
    assert lots == [0] * (services._LOTS_PAGE + 2) + [5]
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_reversal_replayed_after_the_earning_was_reversed_in_full_returns_the_first(member):
    earning = services.earn_points(member=member, amount_paid_vnd=500_000, source=POS, idempotency_key=key())
    k = key("rev")
    first = services.reverse_earning(earning=earning, fraction=1, source=POS, idempotency_key=k)
    assert services.reverse_earning(earning=earning, fraction=1, source=POS, idempotency_key=k).pk == first.pk
    assert Posting.objects.filter(kind=PostingKind.REVERSE).count() == 1
    assert_ledger_ok()


@pytest.mark.django_db
def test_reversing_a_merged_members_earning_locks_the_kept_member(member, other):
    earning = services.earn_points(member=other, amount_paid_vnd=400_000, source=POS, idempotency_key=key())
    services.merge_members(keep=member, merge=other, actor="staff")
    reversal = services.reverse_earning(earning=earning, fraction="0.5", source=POS, idempotency_key=key())
    assert reversal.member_id == member.pk and fresh(member).available == 20
    assert_ledger_ok()


def _while_another_posting_holds_the_lock(member: Member, first_posting, second_posting) -> list:
    """Run `first_posting` in a transaction that keeps the member's lock until `second_posting` (another thread,
    another connection) is waiting for it, then commit; return what the second returned or raised."""
    done, waiting = [], threading.Event()

    def second():
        try:
            waiting.set()
            done.append(second_posting())
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            done.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        first_posting()
        thread = threading.Thread(target=second)
        thread.start()
        waiting.wait(10)
        for _ in range(100):  # until the other connection waits for our lock
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database()")
                if cursor.fetchone()[0]:
                    break
            time.sleep(0.05)
    thread.join(30)
    assert not thread.is_alive()
    return done


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_a_redemption_that_waited_for_the_lock_spends_the_lots_as_they_are_now(member):
    give(member, 10, now=T0)
    give(member, 10, now=T0 + timedelta(days=40))  # the next month's lot, spent second
    done = _while_another_posting_holds_the_lock(
        member,
        lambda: services.redeem_points(member=member, points=10, source=POS, idempotency_key=key()),
        lambda: services.redeem_points(member=member, points=10, source=POS, idempotency_key=key()),
    )
    assert isinstance(done[0], Posting), done
    assert list(Lot.objects.filter(member=member).values_list("remaining", flat=True)) == [0, 0]
    assert fresh(member).available == 0
    assert_ledger_ok()


@pytest.mark.django_db(transaction=True)
@pytest.mark.concurrency
def test_a_reversal_that_waited_for_the_lock_sees_the_reversal_before_it(member):
    earning = services.earn_points(member=member, amount_paid_vnd=1_000_000, source=POS, idempotency_key=key())
    done = _while_another_posting_holds_the_lock(
        member,
        lambda: services.reverse_earning(earning=earning, fraction="0.75", source=POS, idempotency_key=key()),
        lambda: services.reverse_earning(earning=earning, fraction="0.75", source=POS, idempotency_key=key()),
    )
    assert isinstance(done[0], Posting), done
    assert done[0].points == 25  # what was left, not another 75
    assert sum(Posting.objects.filter(kind=PostingKind.REVERSE).values_list("points", flat=True)) == 100
    assert fresh(member).available == 0 and fresh(member).shortfall == 0
    assert_ledger_ok()


@pytest.mark.django_db
def test_the_hot_statements_are_prepared_once_and_planned_once(member):
    """psycopg ignores prepare=True on Django's connections unless the loyalty cursor sets a prepare threshold; and
    PostgreSQL keeps re-planning a prepared statement whose generic plan looks dearer than a custom one."""
    give(member, 100)
    for _ in range(8):
        services.earn_points(member=member, amount_paid_vnd=100_000, source=POS, idempotency_key=key())
        services.redeem_points(member=member, points=3, source=POS, idempotency_key=key())
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                       "WHERE statement LIKE 'WITH p AS (INSERT INTO loyalty_posting%%'")
        plans = cursor.fetchall()
    assert plans, "the posting statements were not prepared"
    assert all(custom == 0 and generic >= 8 for generic, custom in plans), plans
