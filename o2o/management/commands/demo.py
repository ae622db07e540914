"""The one-command demo: migrate, load the demo chain, create a login and an API key, print curl calls, serve."""

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from inventory.models import Store
from inventory.staff.roles import HEAD_OFFICE, STORE_STAFF, make_staff
from o2o.models import SalesChannel, SalesChannelKey

DEMO_STORE = "HCM-Q1-001"  # the store nearest the demo's curl orders (Bến Thành): its queue fills first


class Command(BaseCommand):
    help = "Set up and serve the demo on http://127.0.0.1:8000 (SQLite by default; PostgreSQL with DATABASE_URL)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where to serve (default 127.0.0.1:8000).")
        parser.add_argument("--no-serve", action="store_true", help="Set up and print, but do not start the server.")

    def handle(self, *args, addr: str, no_serve: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("load_demo_chain")
        call_command("load_demo_pricing")  # by name: o2o does not import orders
        call_command("loyalty_demo_member")
        credentials = self._credentials()
        self._print(addr, credentials)
        if not no_serve:
            call_command("runserver", addr, use_reloader=False)

    def _credentials(self) -> dict:
        """Demo credentials are kept in .demo/credentials.json (git-ignored): API keys are stored hashed, so the
        plain key can only be shown from there."""
        path = Path(settings.BASE_DIR) / ".demo" / f"credentials-{connection.vendor}.json"
        path.parent.mkdir(exist_ok=True)
        saved = json.loads(path.read_text()) if path.exists() else {}
        User = get_user_model()
        if not User.objects.filter(username="admin").exists() or "admin_password" not in saved:
            saved["admin_password"] = secrets.token_urlsafe(9)
            user, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.vn"})
            user.is_staff = user.is_superuser = True
            user.set_password(saved["admin_password"])
            user.save()
        self._staff(saved, username="hq", role=HEAD_OFFICE, all_stores=True)
        self._staff(saved, username="manager.q1", role=STORE_STAFF, store_code=DEMO_STORE)
        channel, _ = SalesChannel.objects.get_or_create(code="website", defaults={"name": "Website"})
        key = saved.get("website_api_key")
        if not key or not SalesChannelKey.objects.is_valid(key):
            _, key = SalesChannelKey.objects.create_key(name="demo website", channel=channel)
            saved["website_api_key"] = key
        path.write_text(json.dumps(saved, indent=2))
        return saved

    def _staff(self, saved: dict, *, username: str, role: str, all_stores: bool = False, store_code: str = "") -> None:
        """A demo staff login with a role and a store scope, as operations would set one up (`create_staff`)."""
        User = get_user_model()
        field = f"{username}_password"
        if User.objects.filter(username=username).exists() and field in saved:
            return
        User.objects.filter(username=username).delete()  # a stale demo login whose password was not kept
        saved[field] = secrets.token_urlsafe(9)
        stores = [] if all_stores else list(Store.objects.filter(code=store_code))
        make_staff(username=username, password=saved[field], role=role, stores=stores, all_stores=all_stores)

    def _print(self, addr: str, credentials: dict) -> None:
        base = f"http://{addr}"
        key = credentials["website_api_key"]
        self.stdout.write(
            f"""
o2o demo is ready ({connection.vendor}).

  Admin:    {base}/admin/   user: admin   password: {credentials["admin_password"]}
            head office (the network board): user: hq   password: {credentials["hq_password"]}
            store staff of {DEMO_STORE} (its queue): user: manager.q1   password: {credentials["manager.q1_password"]}
  API docs: {base}/api/docs/   (schema: {base}/api/schema/)
  Website API key: {key}

Try:
  curl -s -G -H 'Authorization: Api-Key {key}' {base}/api/v1/stores/ \\
       --data-urlencode 'address=Chợ Bến Thành, Quận 1' -d service=pickup -d limit=3

  curl -s -H 'Authorization: Api-Key {key}' -H 'Content-Type: application/json' \\
       -d '{{"lat": 10.7769, "lon": 106.7009, "radius_km": 5, "limit": 3, "lines": [{{"sku": "AT-COT-TRG-M", "qty": 1}}]}}' \\
       {base}/api/v1/availability/

  curl -s -H 'Authorization: Api-Key {key}' '{base}/api/v1/availability/network/?sku=AT-COT-TRG-M'

  # checkout: the options the chain can keep now, then place the order with one of them
  curl -s -H 'Authorization: Api-Key {key}' -H 'Content-Type: application/json' \\
       -d '{{"destination": {{"lat": 10.7769, "lon": 106.7009}}, "lines": [{{"sku": "AT-COT-TRG-M", "qty": 1}}]}}' \\
       {base}/api/v1/promises/
  curl -s -H 'Authorization: Api-Key {key}' -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-order-1' \\
       -d '{{"method": "delivery", "destination": {{"lat": 10.7769, "lon": 106.7009}}, \
            "customer": {{"name": "Nguyễn Văn An", "phone": "0901234567"}}, "lines": [{{"sku": "AT-COT-TRG-M", "qty": 1}}]}}' \\
       {base}/api/v1/orders/

  # pay part of an order with points: hold 500 points (50,000 ₫), place the order with the hold, see the balance
  HOLD=$(curl -s -H 'Authorization: Api-Key {key}' -H 'Content-Type: application/json' \\
       -H "Idempotency-Key: demo-hold-$RANDOM" -d '{{"phone": "0901234567", "points": 500}}' \\
       {base}/api/v1/loyalty/redemptions/ | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  curl -s -H 'Authorization: Api-Key {key}' -H 'Content-Type: application/json' -H "Idempotency-Key: demo-order-$HOLD" \\
       -d '{{"method": "delivery", "destination": {{"lat": 10.7769, "lon": 106.7009}}, "loyalty": {{"hold_id": '$HOLD'}}, \
            "customer": {{"name": "Nguyễn Văn An", "phone": "0901234567"}}, "lines": [{{"sku": "AT-COT-TRG-M", "qty": 1}}]}}' \\
       {base}/api/v1/orders/
  curl -s -H 'Authorization: Api-Key {key}' {base}/api/v1/loyalty/members/0901234567/balance/

  # prices: three T-shirts (buy 2 get 1 free) and the WELCOME50 code at {DEMO_STORE}: each discount and why
  curl -s -H 'Authorization: Api-Key {key}' -H 'Content-Type: application/json' \\
       -d '{{"store": "{DEMO_STORE}", "lines": [{{"sku": "AT-COT-TRG-M", "qty": 3}}], "codes": ["WELCOME50"]}}' \\
       {base}/api/v1/pricing/quote/
  # the same cart at a till of {DEMO_STORE}: a store key (printed once; run it with the demo's DATABASE_URL),
  # then the till's price call: the same engine's breakdown, in the till's context (its store, the tills' channel)
  POS_KEY=$(python3 manage.py create_store_key {DEMO_STORE} --name demo-till)
  curl -s -H "Authorization: Api-Key $POS_KEY" -H 'Content-Type: application/json' \\
       -d '{{"lines": [{{"sku": "AT-COT-TRG-M", "qty": 3}}], "codes": ["WELCOME50"]}}' \\
       {base}/api/v1/pos/prices/
"""
        )
