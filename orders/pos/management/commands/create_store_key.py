"""Create an API key for one store's till and print it once (it is stored hashed)."""

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Store
from orders.pos.models import StoreApiKey


class Command(BaseCommand):
    help = "Create a POS API key bound to a store; the key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("store_code")
        parser.add_argument("--name", default="till-1", help="A name for the key, e.g. the till it is for.")

    def handle(self, *args, store_code: str, name: str, **options):
        store = Store.objects.filter(code=store_code).first()
        if store is None:
            raise CommandError(f"No store with code {store_code!r}.")
        _, key = StoreApiKey.objects.create_key(name=name, store=store)
        self.stdout.write(key)
        self.stderr.write(f"Key {name!r} for {store.code} created. It is shown only now: keep it in the till.")
