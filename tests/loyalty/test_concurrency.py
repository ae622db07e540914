"""Real threads on real PostgreSQL connections. PostgreSQL here allows 100 connections in all (shared with other
test runs), so "100 concurrent redemptions" are 100 attempts released together by a barrier onto a pool of worker
threads, each with its own connection."""

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty import services
from loyalty.exceptions import InsufficientPoints, NothingToReverse, RedemptionNotHeld
from loyalty.models import Member, Posting, PostingKind
from o2o.domain_errors import DomainError
from tests.loyalty.conftest import POS, WEB, assert_ledger_ok, fresh, give, key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

WORKERS = 25


def run_attempts(attempts: int, call, *, workers: int = WORKERS) -> list:
    """Run `call(i)` for i in range(attempts) on `workers` threads released together; each thread closes its
    connection at the end. Returns each attempt's result or exception."""
    results: list = [None] * attempts
    barrier = threading.Barrier(workers)
    lock = threading.Lock()
    todo = iter(range(attempts))

    def worker():
        try:
            barrier.wait()
            while True:
                with lock:
                    index = next(todo, None)
                if index is None:
                    return
                try:
                    results[index] = call(index)
                except BaseException as exc:  # noqa: BLE001 - the test inspects it
                    results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "threads did not finish: a deadlock?"
    return results


def test_100_concurrent_till_redemptions_against_a_balance_for_10(member):
    give(member, 10)

    def redeem(i):
        return services.redeem_points(member=member, points=1, source=POS, idempotency_key=f"till-{i}")

    results = run_attempts(100, redeem)
    ok = [r for r in results if isinstance(r, Posting)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert len(ok) == 10 and len(refused) == 90, [r for r in results if not isinstance(r, Posting | InsufficientPoints)]
    m = fresh(member)
    assert (m.available, m.held, m.balance) == (0, 0, 0)
    assert_ledger_ok()


def test_100_concurrent_checkout_holds_over_http(channel_key, member):
    give(member, 100)

    def attempt(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {channel_key}")
        response = client.post("/api/v1/loyalty/redemptions/", {"phone": "0901234567", "points": 10}, format="json",
                               HTTP_IDEMPOTENCY_KEY=f"checkout-{i}")
        return response.status_code

    codes = run_attempts(100, attempt)
    assert sorted(set(codes)) == [201, 409] and codes.count(201) == 10, codes
    m = fresh(member)
    assert (m.available, m.held) == (0, 100)
    for posting in Posting.objects.filter(kind=PostingKind.HOLD):
        services.capture_redemption(hold=posting.hold_id, reference=f"WEB-{posting.pk}")
    m = fresh(member)
    assert (m.available, m.held, m.balance) == (0, 0, 0)
    assert_ledger_ok()


def test_concurrent_earn_redeem_hold_expire_reverse_refund_merge_keep_the_ledger_balanced(db):
    members = [services.get_or_create_member(phone=f"090{1000000 + i}")[0] for i in range(4)]
    year_ago = timezone.now() - timedelta(days=400)
    for m in members:
        give(m, 30, now=year_ago)  # due to expire now
        give(m, 50)

    def history(i):
        rng = random.Random(i)
        done = 0
        earnings: list[int] = []
        redemptions: list[int] = []
        for step in range(25):
            m = members[rng.randrange(len(members))]
            op = rng.choice(["earn", "earn_old", "redeem", "hold", "reverse", "refund", "expire", "adjust"])
            try:
                if i == 0 and step == 12:
                    services.merge_members(keep=members[0], merge=members[3], actor="test")
                elif op == "earn":
                    earnings.append(services.earn_points(member=m, amount_paid_vnd=rng.randint(0, 300_000), source=POS,
                                                         idempotency_key=key(f"e{i}")).pk)
                elif op == "earn_old":
                    services.earn_points(member=m, amount_paid_vnd=100_000, source=WEB, idempotency_key=key(f"o{i}"),
                                         now=year_ago)
                elif op == "redeem":
                    redemptions.append(services.redeem_points(member=m, points=rng.randint(1, 25), source=POS,
                                                              idempotency_key=key(f"r{i}")).pk)
                elif op == "hold":
                    h = services.hold_redemption(member=m, points=rng.randint(1, 20), source=WEB,
                                                 idempotency_key=key(f"h{i}"))
                    if rng.random() < 0.5:
                        redemptions.append(services.capture_redemption(hold=h, reference="WEB").pk)
                    else:
                        services.void_redemption(hold=h)
                elif op == "reverse" and earnings:
                    services.reverse_earning(earning=rng.choice(earnings), fraction=rng.choice(["0.5", "1"]),
                                             source=POS, idempotency_key=key(f"v{i}"))
                elif op == "refund" and redemptions:
                    services.refund_redemption(redemption=rng.choice(redemptions), fraction="0.5", source=POS,
                                               idempotency_key=key(f"f{i}"))
                elif op == "expire":
                    services.expire_lots()
                elif op == "adjust":
                    services.adjust_points(member=m, points=rng.choice([-5, 5]), reason="test", staff="t")
                done += 1
            except (InsufficientPoints, NothingToReverse, RedemptionNotHeld):
                pass
            except DomainError as exc:  # anything else is a failure
                raise AssertionError(f"unexpected {exc!r}") from exc
        return done

    results = run_attempts(16, history, workers=16)
    assert all(isinstance(r, int) for r in results), [r for r in results if not isinstance(r, int)]
    services.expire_lots()
    assert_ledger_ok()
    assert Member.objects.get(pk=members[3].pk).merged_into_id == members[0].pk
    assert Posting.objects.filter(kind=PostingKind.EXPIRE).exists()
