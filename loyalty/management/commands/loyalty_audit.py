"""Prove the loyalty ledger: every posting sums to zero, every member counter equals its entries and its lots, no
counter is negative. Exits non-zero on any difference."""

from django.core.management.base import BaseCommand, CommandError

from loyalty.selectors import ledger_differences, negative_counters, system_totals, unbalanced_postings


class Command(BaseCommand):
    help = "Prove that every loyalty posting balances and every member's balance equals the sum of their entries."

    def add_arguments(self, parser):
        parser.add_argument("--show", type=int, default=20, help="How many differences to print (default 20).")

    def handle(self, *args, show: int, **options):
        unbalanced = unbalanced_postings()
        diffs = ledger_differences()
        negative = negative_counters()
        for posting_id, total in unbalanced[:show]:
            self.stdout.write(f"posting {posting_id}: entries sum to {total}, not 0")
        for diff in diffs[:show]:
            self.stdout.write(f"member {diff.member_id} {diff.phone}: {diff.what}: stored={diff.stored} computed={diff.computed}")
        if unbalanced or diffs or negative:
            raise CommandError(
                f"loyalty audit FAILED: {len(unbalanced)} unbalanced postings, {len(diffs)} member differences, "
                f"{negative} negative counters"
            )
        totals = ", ".join(f"{account}={total}" for account, total in sorted(system_totals().items()))
        self.stdout.write(self.style.SUCCESS(f"loyalty audit OK: every posting balances, every member equals its entries ({totals})"))
