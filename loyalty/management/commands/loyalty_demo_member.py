"""The demo's loyalty member: +84901234567 (the customer of the demo's curl calls) with welcome points to spend.
Idempotent: running it again changes nothing."""

from django.core.management.base import BaseCommand

from loyalty import services

PHONE = "0901234567"
WELCOME_POINTS = 2_000  # 200,000 ₫ at the default point value


class Command(BaseCommand):
    help = "Create the demo loyalty member with welcome points (idempotent)."

    def handle(self, *args, **options):
        member, _ = services.get_or_create_member(phone=PHONE, name="Nguyễn Văn An", channel="website")
        services.adjust_points(
            member=member, points=WELCOME_POINTS, reason="demo welcome points", staff="demo",
            idempotency_key="demo:welcome-points",
        )
        member.refresh_from_db()
        self.stdout.write(f"loyalty demo member {member.phone}: {member.available} points available")
