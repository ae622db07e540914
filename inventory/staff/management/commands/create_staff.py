from django.core.management.base import BaseCommand, CommandError

from inventory.models import Store
from inventory.staff.roles import HEAD_OFFICE, REGIONAL_MANAGER, STORE_STAFF, make_staff

ROLE_NAMES = {"head-office": HEAD_OFFICE, "regional": REGIONAL_MANAGER, "store": STORE_STAFF}


class Command(BaseCommand):
    help = "Create a staff user with a role and a store scope, e.g. `create_staff lan.q1 --role store --stores HCM-Q1-001`."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=sorted(ROLE_NAMES), required=True)
        parser.add_argument("--stores", default="", help="Comma-separated store codes (not for head-office).")
        parser.add_argument("--password", required=True)

    def handle(self, *args, username, role, stores, password, **options):
        codes = [code.strip() for code in stores.split(",") if code.strip()]
        if role == "head-office" and codes:
            raise CommandError("head office works for every store; leave --stores out")
        if role != "head-office" and not codes:
            raise CommandError(f"a {role} user needs --stores")
        found = list(Store.objects.filter(code__in=codes))
        missing = sorted(set(codes) - {s.code for s in found})
        if missing:
            raise CommandError(f"unknown store code(s): {', '.join(missing)}")
        make_staff(username=username, password=password, role=ROLE_NAMES[role], stores=found,
                   all_stores=role == "head-office")
        scope = "every store" if role == "head-office" else ", ".join(sorted(codes))
        self.stdout.write(f"{username}: {ROLE_NAMES[role]} for {scope}")
