from django.core.management.base import BaseCommand

from inventory.staff.roles import ensure_roles


class Command(BaseCommand):
    help = "Create or update the operations roles (head office, regional manager, store staff) as groups."

    def handle(self, *args, **options):
        for role, count in ensure_roles().items():
            self.stdout.write(f"{role}: {count} permissions")
