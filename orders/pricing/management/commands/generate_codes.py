from datetime import date, datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from orders.pricing import services
from orders.pricing.exceptions import InvalidPromotion
from orders.pricing.forms import end_of_day, write_codes_csv
from orders.pricing.models import Promotion


def _expiry(text: str | None) -> datetime | None:
    """ISO date (the last valid day: expires at the next midnight, chain time) or ISO date-time (naive: chain time)."""
    if not text:
        return None
    try:
        if len(text) == 10:
            return end_of_day(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--expires: {text!r} is neither a date (2025-12-31) nor a date-time") from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = (
        "Generate random coupon codes for a promotion and write them as CSV (code, promotion, campaign, max_uses, "
        "uses, expires_at, member), e.g. `generate_codes --promotion TET25 --count 5000 --prefix TET- "
        "--expires 2025-02-15 --campaign tet-2025 --csv tet.csv` (--csv - for standard output)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--promotion", required=True, help="The promotion's code.")
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--prefix", default="")
        parser.add_argument("--max-uses", type=int, default=1, help="Uses allowed per code; 0 for unlimited.")
        parser.add_argument("--expires", help="Last valid day (YYYY-MM-DD) or an ISO date-time.")
        parser.add_argument("--campaign", default="", help="Default: the promotion's own campaign.")
        parser.add_argument("--csv", required=True, help="Output file, or - for standard output.")

    def handle(self, *args, promotion, count, prefix, max_uses, expires, campaign, csv, **options):
        promo = Promotion.objects.filter(code=promotion).first()
        if promo is None:
            raise CommandError(f"no promotion with the code {promotion!r}")
        if max_uses < 0:
            raise CommandError("--max-uses: 0 (unlimited) or more")
        expires_at = _expiry(expires)
        try:
            with transaction.atomic():
                made = services.generate_codes(
                    promotion=promo, count=count, prefix=prefix, campaign=campaign, max_uses=max_uses or None,
                    expires_at=expires_at,
                )
                services.policy_changed()
        except InvalidPromotion as exc:
            raise CommandError(exc.message) from exc
        made.sort(key=lambda c: c.code)
        summary = f"{len(made)} codes for {promo.code} (campaign {made[0].campaign or '-'})"
        if csv == "-":
            write_codes_csv(made, self.stdout)
            self.stderr.write(summary)
        else:
            with open(csv, "w", newline="", encoding="utf-8") as out:
                write_codes_csv(made, out)
            self.stdout.write(f"{summary} written to {csv}")
