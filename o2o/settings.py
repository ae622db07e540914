"""Settings, all from the environment (twelve-factor).

Without DATABASE_URL the service runs on an embedded SQLite file under .demo/ (the one-command demo); PostgreSQL
is the system of record everywhere else: DATABASE_URL=postgres://user@host:5432/db.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("O2O_DEBUG", False)
SECRET_KEY = os.environ.get("O2O_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("O2O_PRODUCTION", False):
        raise RuntimeError("O2O_SECRET_KEY must be set in production")
    SECRET_KEY = "insecure-dev-key-set-O2O_SECRET_KEY-in-production-" + "x" * 20
ALLOWED_HOSTS = env_list("O2O_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("O2O_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "o2o",
    "inventory",
    "orders",
    "loyalty",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "inventory.staff.middleware.StoreTimeZoneMiddleware",  # admin times in the staff member's stores' zone
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "o2o.urls"
WSGI_APPLICATION = "o2o.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "o2o" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------------
DEMO_SQLITE_PATH = BASE_DIR / ".demo" / "o2o.sqlite3"


def parse_database(url: str) -> dict:
    """A database from its URL: persistent connections with health checks, or psycopg's pool when O2O_DB_POOL is on
    (PostgreSQL; the demo's SQLite is adjusted below). The primary and the replica are built alike."""
    database = dj_database_url.parse(
        url, conn_max_age=int(os.environ.get("O2O_DB_CONN_MAX_AGE", "60")), conn_health_checks=True
    )
    database.setdefault("OPTIONS", {})
    if database["ENGINE"] != "django.db.backends.sqlite3" and env_bool("O2O_DB_POOL", False):
        # psycopg's pool inside each process; persistent connections must then be off.
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"]["pool"] = {"min_size": 2, "max_size": int(os.environ.get("O2O_DB_POOL_MAX", "8"))}
    return database


DATABASES = {"default": parse_database(os.environ.get("DATABASE_URL", f"sqlite:///{DEMO_SQLITE_PATH}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo database: take the write lock when a transaction starts (no "database is locked" upgrade failures
    # under concurrent writers), WAL so readers don't block the writer, and wait rather than fail when busy.
    if DATABASES["default"]["NAME"] == str(DEMO_SQLITE_PATH):
        DEMO_SQLITE_PATH.parent.mkdir(exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("O2O_TEST_DB_NAME", "test_o2o")}
    # A streaming replica for the website's lag-tolerant reads (availability, network ATP, stores near a point:
    # o2o/replicas.py). Everything else, and any read inside a transaction on the primary, stays on "default".
    if os.environ.get("O2O_REPLICA_DATABASE_URL"):
        DATABASES["replica"] = parse_database(os.environ["O2O_REPLICA_DATABASE_URL"])
        # A replica that is down must cost a request little before it falls back to the primary: libpq would wait
        # for the OS's TCP timeout (minutes) and the pool 30 s.
        DATABASES["replica"]["OPTIONS"].setdefault("connect_timeout", 2)
        if "pool" in DATABASES["replica"]["OPTIONS"]:
            DATABASES["replica"]["OPTIONS"]["pool"]["timeout"] = 2
        # Tests read the primary's test database through this alias: the same data, no second database to create.
        DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
# A replica further behind than this is left alone until it catches up (0: never checked); see o2o/replicas.py.
O2O_REPLICA_MAX_LAG_SECONDS = float(os.environ.get("O2O_REPLICA_MAX_LAG_SECONDS", "5"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Locale ---------------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]
LOCALE_PATHS = [BASE_DIR / "o2o" / "locale"]
TIME_ZONE = os.environ.get("O2O_TIME_ZONE", "Asia/Ho_Chi_Minh")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("O2O_STATIC_ROOT", BASE_DIR / ".demo" / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise wants it to exist even when serving from finders
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # the demo serves static files without collectstatic

# --- API ------------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["o2o.api_keys.SalesChannelKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["o2o.api_keys.IsSalesChannel"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "o2o.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "o2o.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "o2o API",
    "DESCRIPTION": (
        "Omnichannel inventory, order routing and loyalty. Sales channels (the website) authenticate with "
        "`Authorization: Api-Key <key>`; store POS keys likewise. Errors are JSON "
        '`{"code": ..., "message": ..., "details": {...}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI assets come from the drf-spectacular-sidecar package: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`; name the order's explicitly so the schema's enum names are stable.
    # Names clients generate types from: a second enum field called `kind` must not rename the first one.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.OrderStatus",
        "KindEnum": ["express_1h", "express_2h", "scheduled", "pickup"],
        "ChangeOptionKindEnum": ["move", "keep", "cancel"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "o2o.openapi.document_error_responses",
    ],
}
# Keys are read from this header ("Api-Key <key>"), the library's default scheme.
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
# A key this process verified is trusted for this long without hashing it again (revocation through the model is
# seen at once in the same process, within this many seconds in the others); 0 turns the cache off.
O2O_API_KEY_CACHE_SECONDS = float(os.environ.get("O2O_API_KEY_CACHE_SECONDS", "5"))
# Hot read statements (availability) prepared once per connection; off behind a pooler that cannot keep them.
O2O_PREPARED_STATEMENTS = env_bool("O2O_PREPARED_STATEMENTS", True)
O2O_GC_FREEZE = env_bool("O2O_GC_FREEZE", True)  # o2o/wsgi.py: the loaded app out of the garbage collector's reach

# A checkout hold lasts this long unless the caller asks for less.
O2O_HOLD_TTL = timedelta(seconds=int(os.environ.get("O2O_HOLD_TTL_SECONDS", "900")))
O2O_MAX_CART_LINES = int(os.environ.get("O2O_MAX_CART_LINES", "100"))
O2O_MAX_RADIUS_KM = float(os.environ.get("O2O_MAX_RADIUS_KM", "100"))
# Admin stock imports (goods receipts, counts) with more groups than this are applied by a Celery task, with progress.
O2O_IMPORT_ASYNC_GROUPS = int(os.environ.get("O2O_IMPORT_ASYNC_GROUPS", "200"))
# Geocoding: "offline" uses only the gazetteer in fixtures/; "nominatim" asks OpenStreetMap first, then falls back.
O2O_GEOCODER = os.environ.get("O2O_GEOCODER", "offline")
O2O_GEOCODER_USER_AGENT = os.environ.get("O2O_GEOCODER_USER_AGENT", "o2o-retail-backend")

# --- Celery ---------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Longer than any countdown/eta we use, so Redis never redelivers a task that is merely scheduled.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "inventory-release-expired-holds": {
        "task": "inventory.tasks.release_expired_holds",
        "schedule": timedelta(seconds=60),
    },
    "o2o-deliver-outbox": {"task": "o2o.tasks.deliver_outbox", "schedule": timedelta(seconds=5)},
}

# --- Outbox (events to the sales channels' webhooks) ----------------------------------------------------------
O2O_OUTBOX_KICK = env_bool("O2O_OUTBOX_KICK", True)  # queue a delivery right after each commit, not only on beat
O2O_OUTBOX_MAX_ATTEMPTS = int(os.environ.get("O2O_OUTBOX_MAX_ATTEMPTS", "12"))
O2O_OUTBOX_BASE_DELAY_SECONDS = int(os.environ.get("O2O_OUTBOX_BASE_DELAY_SECONDS", "5"))
O2O_OUTBOX_TIMEOUT_SECONDS = float(os.environ.get("O2O_OUTBOX_TIMEOUT_SECONDS", "5"))

# --- Production hardening (checked by `manage.py check --deploy`) --------------------------------------------
if env_bool("O2O_PRODUCTION", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("O2O_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("O2O_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] = ["rest_framework.renderers.JSONRenderer"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("O2O_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

TEST_RUNNER = "o2o.test_runner.PytestRunner"

# --- Orders ---------------------------------------------------------------------------------------------------
# A checkout promise can be placed for this long; then the client asks for a new one.
O2O_PROMISE_TTL_SECONDS = int(os.environ.get("O2O_PROMISE_TTL_SECONDS", "300"))
# Uncollected pickups go back on sale after this many days ready in store.
O2O_PICKUP_HOLD_DAYS = float(os.environ.get("O2O_PICKUP_HOLD_DAYS", "3"))
# Delivery orders placed within this window that have not started picking are re-optimised together.
O2O_WAVE_WINDOW_SECONDS = int(os.environ.get("O2O_WAVE_WINDOW_SECONDS", "30"))
O2O_ROUTER_TIME_LIMIT_S = float(os.environ.get("O2O_ROUTER_TIME_LIMIT_S", "0.05"))  # checkout: a single order
O2O_WAVE_TIME_LIMIT_S = float(os.environ.get("O2O_WAVE_TIME_LIMIT_S", "2.0"))
O2O_ROUTING_K_CANDIDATES = int(os.environ.get("O2O_ROUTING_K_CANDIDATES", "12"))  # stores offered to the router
O2O_ROUTING_SEARCH_RADIUS_KM = float(os.environ.get("O2O_ROUTING_SEARCH_RADIUS_KM", "20"))  # widest store radius
O2O_PICKUP_SEARCH_RADIUS_KM = float(os.environ.get("O2O_PICKUP_SEARCH_RADIUS_KM", "10"))
O2O_PICKUP_OPTIONS = int(os.environ.get("O2O_PICKUP_OPTIONS", "5"))
O2O_EXPRESS_1H_RADIUS_KM = float(os.environ.get("O2O_EXPRESS_1H_RADIUS_KM", "4"))
O2O_PICK_MINUTES = int(os.environ.get("O2O_PICK_MINUTES", "15"))  # picking and packing one order
O2O_COURIER_KMH = float(os.environ.get("O2O_COURIER_KMH", "18"))  # motorbike courier in city traffic
# A pickup that lost units to a store event offers the customer a change; unanswered after this, "keep" is applied.
O2O_CHANGE_OFFER_TTL_MINUTES = int(os.environ.get("O2O_CHANGE_OFFER_TTL_MINUTES", "120"))
CELERY_BEAT_SCHEDULE.update(
    {
        "orders-route-wave": {"task": "orders.tasks.route_wave", "schedule": timedelta(seconds=O2O_WAVE_WINDOW_SECONDS)},
        "orders-release-uncollected-pickups": {
            "task": "orders.tasks.release_uncollected_pickups",
            "schedule": timedelta(minutes=15),
        },
        "orders-purge-expired-promises": {"task": "orders.tasks.purge_expired_promises", "schedule": timedelta(hours=1)},
        # Store events' takes left pending (the POS reconciles its own right after its commit), and unanswered offers.
        "orders-reconcile-taken-reservations": {
            "task": "orders.tasks.reconcile_taken_reservations",
            "schedule": timedelta(minutes=1),
        },
        "orders-expire-change-offers": {"task": "orders.tasks.expire_change_offers", "schedule": timedelta(minutes=1)},
    }
)

# --- Couriers -------------------------------------------------------------------------------------------------
# Providers enabled here; webhooks of any other are a 404. The local courier is the built-in simulator.
O2O_COURIER_PROVIDERS = env_list("O2O_COURIER_PROVIDERS", "local,ahamove,lalamove")
O2O_COURIER_DEFAULT_PROVIDER = os.environ.get("O2O_COURIER_DEFAULT_PROVIDER", "local")
# Webhook signing secrets per provider, JSON {"provider": ["newest", "previous"]} (O2O-Signature, design notes).
import json  # noqa: E402

O2O_COURIER_SECRETS = json.loads(os.environ.get("O2O_COURIER_SECRETS", "{}") or "{}")
if not env_bool("O2O_PRODUCTION", False):
    O2O_COURIER_SECRETS.setdefault("local", ["local-courier-dev-secret"])
O2O_COURIER_WEBHOOK_MAX_BYTES = int(os.environ.get("O2O_COURIER_WEBHOOK_MAX_BYTES", str(1024 * 1024)))
# Outbound clients (never called in tests or the demo).
O2O_COURIER_CONFIG = {
    "ahamove": {
        "base_url": os.environ.get("O2O_AHAMOVE_BASE_URL", "https://partner-apistg.ahamove.com"),
        "api_token": os.environ.get("O2O_AHAMOVE_TOKEN", ""),
        "service_id": os.environ.get("O2O_AHAMOVE_SERVICE_ID", "SGN-BIKE"),
    },
    "lalamove": {
        "base_url": os.environ.get("O2O_LALAMOVE_BASE_URL", "https://rest.sandbox.lalamove.com"),
        "api_key": os.environ.get("O2O_LALAMOVE_KEY", ""),
        "api_secret": os.environ.get("O2O_LALAMOVE_SECRET", ""),
        "market": os.environ.get("O2O_LALAMOVE_MARKET", "VN"),
    },
}
# SLA watch: no courier this long after the request (made at packing), or not picked up this long after assignment,
# means re-dispatch (up to O2O_COURIER_MAX_REDISPATCH times), then escalate. At most this many dispatches in all.
O2O_COURIER_SLA_ASSIGN_MINUTES = float(os.environ.get("O2O_COURIER_SLA_ASSIGN_MINUTES", "10"))
O2O_COURIER_SLA_PICKUP_MINUTES = float(os.environ.get("O2O_COURIER_SLA_PICKUP_MINUTES", "20"))
O2O_COURIER_MAX_REDISPATCH = int(os.environ.get("O2O_COURIER_MAX_REDISPATCH", "1"))
O2O_COURIER_MAX_ATTEMPTS = int(os.environ.get("O2O_COURIER_MAX_ATTEMPTS", "3"))
# The local courier: one step (assigned, picked up, delivered/failed, returned) per this many seconds.
O2O_LOCAL_COURIER_STEP_SECONDS = float(os.environ.get("O2O_LOCAL_COURIER_STEP_SECONDS", "20"))
O2O_LOCAL_COURIER_FAILURE_RATE = float(os.environ.get("O2O_LOCAL_COURIER_FAILURE_RATE", "0"))
O2O_LOCAL_COURIER_SEED = int(os.environ.get("O2O_LOCAL_COURIER_SEED", "7"))
CELERY_IMPORTS = (*globals().get("CELERY_IMPORTS", ()), "orders.couriers.tasks")  # not an app: no autodiscovery
CELERY_BEAT_SCHEDULE.update(
    {
        "couriers-dispatch-packed": {"task": "orders.couriers.tasks.dispatch_packed", "schedule": timedelta(seconds=30)},
        "couriers-advance-local": {"task": "orders.couriers.tasks.advance_local", "schedule": timedelta(seconds=10)},
        "couriers-sla-watch": {"task": "orders.couriers.tasks.sla_watch", "schedule": timedelta(minutes=1)},
    }
)

# --- Loyalty (loyalty/conf.py reads these) --------------------------------------------------------------------
LOYALTY_EARN_VND_PER_POINT = int(os.environ.get("LOYALTY_EARN_VND_PER_POINT", "10000"))  # 1 point per 10,000 ₫ paid
LOYALTY_POINT_VALUE_VND = int(os.environ.get("LOYALTY_POINT_VALUE_VND", "100"))  # 1 point pays 100 ₫ (1 % back)
LOYALTY_EXPIRY_MONTHS = int(os.environ.get("LOYALTY_EXPIRY_MONTHS", "12"))  # a month's points expire after this
LOYALTY_HOLD_TTL_SECONDS = int(os.environ.get("LOYALTY_HOLD_TTL_SECONDS", "900"))
LOYALTY_MAX_HOLD_TTL_SECONDS = int(os.environ.get("LOYALTY_MAX_HOLD_TTL_SECONDS", "3600"))
LOYALTY_TIER_WINDOW_DAYS = int(os.environ.get("LOYALTY_TIER_WINDOW_DAYS", "365"))
LOYALTY_EXPIRING_SOON_DAYS = int(os.environ.get("LOYALTY_EXPIRING_SOON_DAYS", "30"))
LOYALTY_PHONE_REGION = os.environ.get("LOYALTY_PHONE_REGION", "VN")
# Tiers, lowest first: JSON [{"code", "name", "min_spend_vnd", "multiplier"}]; rolling spend over the window above.
LOYALTY_TIERS = json.loads(
    os.environ.get("LOYALTY_TIERS", "")
    or '[{"code": "member", "name": "Member", "min_spend_vnd": 0, "multiplier": "1"},'
    ' {"code": "silver", "name": "Silver", "min_spend_vnd": 5000000, "multiplier": "1.25"},'
    ' {"code": "gold", "name": "Gold", "min_spend_vnd": 20000000, "multiplier": "1.5"}]'
)
CELERY_BEAT_SCHEDULE.update(
    {
        "loyalty-void-expired-holds": {"task": "loyalty.tasks.void_expired_holds", "schedule": timedelta(seconds=60)},
        "loyalty-vest-pending": {"task": "loyalty.tasks.vest_pending", "schedule": timedelta(minutes=15)},
        "loyalty-expire-lots": {"task": "loyalty.tasks.expire_lots", "schedule": timedelta(hours=1)},
        "loyalty-recompute-tiers": {"task": "loyalty.tasks.recompute_tiers", "schedule": timedelta(hours=24)},
    }
)

# --- POS --------------------------------------------------------------------------------------------------------
# The store POS integration (orders/pos): installed as an app for its admin and its create_store_key command.
INSTALLED_APPS += ["orders.pos.apps.PosConfig"]
POS_MAX_RECEIPTS_PER_BATCH = int(os.environ.get("POS_MAX_RECEIPTS_PER_BATCH", "1000"))
POS_MAX_LINES_PER_RECEIPT = int(os.environ.get("POS_MAX_LINES_PER_RECEIPT", "200"))
POS_MAX_BATCH_BYTES = int(os.environ.get("POS_MAX_BATCH_BYTES", str(2 * 1024 * 1024)))  # raw body of one sync call
POS_NEARBY_RADIUS_KM = float(os.environ.get("POS_NEARBY_RADIUS_KM", "10"))

# --- Returns (orders/returns/policy.py reads these) ---------------------------------------------------------------
INSTALLED_APPS += ["orders.returns.apps.ReturnsConfig"]
# Days from hand-over within which goods come back, per product category (JSON); "default" for the rest.
RETURNS_WINDOW_DAYS = json.loads(
    os.environ.get("RETURNS_WINDOW_DAYS", "") or '{"default": 30, "ao-dai": 15, "do-ngu": 15, "gia-dung": 7}'
)
# Online points stay pending until the longest return window has closed, so a return never reverses vested points
# (the shortfall policy remains for what a member spent before a return of a till sale).
LOYALTY_ONLINE_PENDING_DAYS = float(
    os.environ.get("LOYALTY_ONLINE_PENDING_DAYS", "") or max(RETURNS_WINDOW_DAYS.values())
)
RETURNS_NON_RETURNABLE_CATEGORIES = json.loads(
    os.environ.get("RETURNS_NON_RETURNABLE_CATEGORIES", "") or '["do-lot", "khau-trang"]'
)
RETURNS_NON_RETURNABLE_SKUS = json.loads(os.environ.get("RETURNS_NON_RETURNABLE_SKUS", "") or "[]")
RETURNS_ACCEPT_OTHER_STORE_RECEIPTS = env_bool("RETURNS_ACCEPT_OTHER_STORE_RECEIPTS", True)
# Courier collections: stores accepting returns within this distance are candidates; one short of its target stock
# for the SKU is preferred when it is at most RETURNS_PREFER_SHORTAGE_KM further than the nearest.
RETURNS_COLLECTION_MAX_KM = float(os.environ.get("RETURNS_COLLECTION_MAX_KM", "30"))
RETURNS_PREFER_SHORTAGE_KM = float(os.environ.get("RETURNS_PREFER_SHORTAGE_KM", "2"))
RETURNS_ROUTING_CANDIDATES = int(os.environ.get("RETURNS_ROUTING_CANDIDATES", "12"))
RETURNS_ROUTER_TIME_LIMIT_S = float(os.environ.get("RETURNS_ROUTER_TIME_LIMIT_S", "0.5"))
# Till receipts applied per transaction by the sales sync (one row lock and a few bulk writes per chunk).
POS_SYNC_CHUNK_RECEIPTS = int(os.environ.get("POS_SYNC_CHUNK_RECEIPTS", "100"))

# --- Loyalty events ------------------------------------------------------------------------------------------
# The sales channel (code) whose webhook receives "points.changed" (one balance across channels: the website shows it).
LOYALTY_EVENTS_CHANNEL = os.environ.get("LOYALTY_EVENTS_CHANNEL", "website")
# The POS contract's tag in the OpenAPI schema, with its version (orders/pos/api/examples.py: CONTRACT_VERSION).
SPECTACULAR_SETTINGS.setdefault("TAGS", []).append({
    "name": "POS",
    "description": "POS contract v1.1, for the tills of one store each (`Authorization: Api-Key <store key>`). Receipt, "
    "refund, count, delivery-note and transfer ids are the till's own, unique per store, and the idempotency keys: "
    "resending returns the first answer. Another store's ids are not found (404). Changes to this contract are "
    "additive within v1; a breaking change gets /api/v2/pos/. v1.1 added prices: the price call, the policy "
    "snapshot for offline tills, and receipts' codes, applied promotions and manager overrides.",
})
# Prepare the loyalty ledger's hot statements once per connection (turn off behind a pooler that cannot keep them).
LOYALTY_PREPARED_STATEMENTS = env_bool("LOYALTY_PREPARED_STATEMENTS", True)

# --- Staff roles and store scope (inventory/staff): who sees which stores in the admin -------------------------------
INSTALLED_APPS += ["inventory.staff.apps.StaffConfig"]
# CSV/XLSX export of the admin's stock lists (django-import-export); exporting needs the model's view permission.
INSTALLED_APPS += ["import_export"]
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"

# --- Prices and promotions (orders/pricing) ------------------------------------------------------------------------
INSTALLED_APPS += ["orders.pricing.apps.PricingConfig"]
# The sales-channel code the tills price as (promotions and price lists list it among their channels).
PRICING_TILL_CHANNEL = os.environ.get("PRICING_TILL_CHANNEL", "store")
# The chain's time zone, for quotes without a store (a promotion's weekdays and happy hours are local times).
PRICING_DEFAULT_TIMEZONE = os.environ.get("PRICING_DEFAULT_TIMEZONE", "Asia/Ho_Chi_Minh")
# Points for a voucher: a voucher of N points is worth N × LOYALTY_POINT_VALUE_VND; its code is valid this many days.
PRICING_VOUCHER_VALID_DAYS = int(os.environ.get("PRICING_VOUCHER_VALID_DAYS", "90"))
# A till line whose price differs from the policy's by at most this much (VND) is not an exception (till rounding).
PRICING_EXCEPTION_TOLERANCE_VND = int(os.environ.get("PRICING_EXCEPTION_TOLERANCE_VND", "0"))
# How long a process prices with its cached policy before it looks at the version again: a change made in another
# process reaches this one that much later (budgets and codes are always read live).
PRICING_POLICY_RECHECK_SECONDS = float(os.environ.get("PRICING_POLICY_RECHECK_SECONDS", "1"))
# How often a process checks the products' base prices and categories for changes (the policy's version moves then).
PRICING_PRODUCTS_RECHECK_SECONDS = float(os.environ.get("PRICING_PRODUCTS_RECHECK_SECONDS", "10"))
