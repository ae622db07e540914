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
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DEMO_SQLITE_PATH}"),
        conn_max_age=int(os.environ.get("O2O_DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
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
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("O2O_TEST_DB_NAME", "test_o2o")}
    if env_bool("O2O_DB_POOL", False):
        # psycopg's pool inside each process; persistent connections must then be off.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 2, "max_size": int(os.environ.get("O2O_DB_POOL_MAX", "8"))}

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
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
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
}
# Keys are read from this header ("Api-Key <key>"), the library's default scheme.
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"

# A checkout hold lasts this long unless the caller asks for less.
O2O_HOLD_TTL = timedelta(seconds=int(os.environ.get("O2O_HOLD_TTL_SECONDS", "900")))
O2O_MAX_CART_LINES = int(os.environ.get("O2O_MAX_CART_LINES", "100"))
O2O_MAX_RADIUS_KM = float(os.environ.get("O2O_MAX_RADIUS_KM", "100"))
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
CELERY_BEAT_SCHEDULE.update(
    {
        "orders-route-wave": {"task": "orders.tasks.route_wave", "schedule": timedelta(seconds=O2O_WAVE_WINDOW_SECONDS)},
        "orders-release-uncollected-pickups": {
            "task": "orders.tasks.release_uncollected_pickups",
            "schedule": timedelta(minutes=15),
        },
        "orders-purge-expired-promises": {"task": "orders.tasks.purge_expired_promises", "schedule": timedelta(hours=1)},
    }
)
