"""Settings: every deployment value is read from the environment. Production unless
the environment asks for development (DJANGO_ENV=development, which `make run` sets
and says so, or DEBUG=1 alone): production has DEBUG off, needs a SECRET_KEY, and
passes `manage.py check --deploy` (tests/test_settings.py pins it). The test suite's
settings are config/settings_test.py, chosen by pytest's configuration."""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Safe by default: a deployment that sets nothing gets production settings.
DJANGO_ENV = os.environ.get("DJANGO_ENV") or ("development" if env_bool("DEBUG", False) else "production")
if DJANGO_ENV not in {"production", "development"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'production' or 'development', not {DJANGO_ENV!r}.")
DEVELOPMENT = DJANGO_ENV == "development"
DEBUG = env_bool("DEBUG", DEVELOPMENT)
if DEBUG and not DEVELOPMENT:
    # The debug page lists settings and source to whoever triggers an error.
    raise ImproperlyConfigured("DEBUG is on with DJANGO_ENV=production; DEBUG is for DJANGO_ENV=development only.")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEVELOPMENT:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set, and production settings (the default) need one: set SECRET_KEY to a long "
            "random value (python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DJANGO_ENV=development "
            "for a local run."
        )
    SECRET_KEY = "dev-only-insecure-secret-key-change-me-in-production"  # noqa: S105 - development only (refused above otherwise)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

# The client's address is the socket's peer unless the app sits behind this many
# reverse proxies of its own, each appending the address it saw to X-Forwarded-For
# (core.client.client_address; DRF's throttles use the same, core.throttling). A larger
# number than the real one lets a client choose its address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT:
    # The proxy in front terminates TLS and says which scheme the client used.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# What counts as one client (core.client.client_identity) for the throttles, login
# failures, anonymous views and open requests: an IPv4 address, or an IPv6 address's
# network of this prefix length. One IPv6 customer holds a /64 (or a /56, /48) and can
# rotate through its addresses at will; 128 would count every address apart.
CLIENT_IPV6_PREFIX = env_int("CLIENT_IPV6_PREFIX", 64)
if not 1 <= CLIENT_IPV6_PREFIX <= 128:
    raise ImproperlyConfigured(f"CLIENT_IPV6_PREFIX must be a prefix length from 1 to 128, not {CLIENT_IPV6_PREFIX}.")

# Transport security, on in production (what `check --deploy` asks for); development
# serves plain http on localhost.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEVELOPMENT)
# A load balancer's health check may speak plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEVELOPMENT)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEVELOPMENT else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# Content-Security-Policy (django.middleware.csp): the pages run only this origin's script
# files and style sheets (no inline script, style or handler: an injected one does not
# run), load nothing from elsewhere, and no other site may frame them. The app's pages,
# the login and Django's admin need nothing more (tests/test_browser_pages.py: no
# violation); the API docs allow their one inline style (config/urls.py). Stored media
# set a sandboxing policy of their own (core.media). With media on S3 or a CDN,
# CSP_MEDIA_ORIGINS names its origins (comma-separated) for the pages' images and videos.
CSP_MEDIA_ORIGINS = env_list("CSP_MEDIA_ORIGINS")
SECURE_CSP: dict[str, list[str]] = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    # data: for the pages' empty favicon (`data:,`) and the admin's and API docs' icons.
    "img-src": [CSP.SELF, "data:", *CSP_MEDIA_ORIGINS],
    "media-src": [CSP.SELF, *CSP_MEDIA_ORIGINS],
    # fetch, EventSource and WebSocket: 'self' covers ws:/wss: to this host (CSP level 3).
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# CORS (django-cors-headers): browsers on these origins, and only these, may call the
# API and read its answers, credentials included (cookies, Authorization). None in
# production unless listed; development allows the seed frontend's dev server.
CORS_ALLOWED_ORIGINS = env_list(
    "CORS_ALLOWED_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000" if DEVELOPMENT else ""
)
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = (*default_headers, "idempotency-key", "last-event-id", "if-none-match")
# Response headers a cross-origin script may read (the safelisted ones it always can).
CORS_EXPOSE_HEADERS = [
    "X-Poll-Interval", "X-Last-Event-ID", "ETag", "Retry-After", "Idempotent-Replayed", "Deprecation", "Link",
    "X-Request-ID",
]
# An origin allowed to read answers with credentials could read a CSRF token anyway;
# trusting it for session-cookie writes adds nothing it could not do.
CSRF_TRUSTED_ORIGINS = [*env_list("CSRF_TRUSTED_ORIGINS"), *CORS_ALLOWED_ORIGINS]

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aistatus")
# A pool of at most DB_POOL_MAX_SIZE connections per process (psycopg's pool through
# Django): under daphne every request and every stream read runs in a thread of its
# own, and without a bound a reconnect storm of 1,000 streams took every one of
# PostgreSQL's connections. A caller past the bound waits up to DB_POOL_TIMEOUT
# seconds (then a 503). DB_POOL_MAX_SIZE=0 falls back to a connection per request
# (DB_CONN_MAX_AGE). Health checks replace a connection the server ended (restart,
# failover, pg_terminate_backend) instead of handing it out.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=0 if DB_POOL_MAX_SIZE else env_int("DB_CONN_MAX_AGE", 0), conn_health_checks=True
    )
}
if DB_POOL_MAX_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": DB_POOL_MAX_SIZE, "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
    }

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "django_rq",
    "channels",
    "corsheaders",
    "core",
    "accounts",
    "realtime",
    "contents",
    "videos",
    "aijobs",
    "notifications",
    "moderation",
    "web",
]

MIDDLEWARE = [
    # Outermost, so that a request's latency includes every other middleware.
    "core.metrics.RequestMetricsMiddleware",
    # The route and user of the request, for its access line (core.request_log).
    "core.request_log.RequestLogMiddleware",
    # Before anything that may answer on its own (the https redirect, WhiteNoise,
    # CommonMiddleware): those answers carry CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # SECURE_CSP on every response (static files' included, an SVG among them); a
    # response that sets its own (stored media's sandbox, core.media) keeps it.
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # A body declared in a charset that is no text encoding (bz2, rot13), or a form
    # Django cannot read as declared: a 400 problem before anything reads it (CSRF's check).
    "core.content_type.ContentTypeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The pages' language: the switch's cookie, else the browser's Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Which credential a request uses, so that a password change spares it (accounts.credentials).
    "accounts.credentials.CredentialInUseMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Every password check (the token endpoint, the login page, the admin's, the password
# change form's old password) goes through this backend or its counters, which refuse
# while an account or a client has failed too often (accounts.login_throttle).
AUTHENTICATION_BACKENDS = ["accounts.login_throttle.ThrottledModelBackend"]
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 10)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 50)
# Successful logins a client (core.client.client_identity) may make a minute; then 429
# until the minute ends. Each costs a password hash, ~0.36 s of CPU with the production
# hasher: 30 a minute is at most ~11 s of CPU a minute per client, while an office
# behind one address rarely logs in more than a few times a minute. 0: no limit.
LOGIN_SUCCESSES_PER_ADDRESS = env_int("LOGIN_SUCCESSES_PER_ADDRESS", 30)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/api/docs/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
# The pages' languages (web/locale/); each name is shown in its own language by the switch.
LANGUAGES = [("en", "English"), ("ko", "Korean")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
SERVE_MEDIA = env_bool("SERVE_MEDIA", DEBUG)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
# STORAGE_BACKEND=s3 stores uploads in S3-compatible storage through django-storages
# (configured by its AWS_* variables: AWS_STORAGE_BUCKET_NAME, AWS_S3_ENDPOINT_URL, ...).
DEFAULT_FILE_STORAGE_BACKEND = (
    "storages.backends.s3.S3Storage" if os.environ.get("STORAGE_BACKEND") == "s3" else "django.core.files.storage.FileSystemStorage"
)
STORAGES = {
    "default": {"BACKEND": DEFAULT_FILE_STORAGE_BACKEND},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis roles: the cache may evict (maxmemory-policy allkeys-lru) and loses nothing
# that matters; the queue and the channel layer must not (noeviction). One Redis with
# noeviction serves all three by default (make run); in production point
# CACHE_REDIS_URL at an instance of its own with an evicting policy (docs/operations.md, "Redis roles").
CACHE_REDIS_URL = os.environ.get("CACHE_REDIS_URL", REDIS_URL)
CACHES = {
    "default": {
        # An unreachable Redis is a cache miss, not a 500 (core/cache.py).
        "BACKEND": "core.cache.ResilientRedisCache",
        "LOCATION": CACHE_REDIS_URL,
        "KEY_PREFIX": "aistatus",
        # A cache slower than this is worse than none.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    }
}

# --- API -------------------------------------------------------------------

# JSON from clients (REST bodies, WebSocket messages) nested deeper than this is a 400
# (core.parsers): Python's parser recurses per level.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: its WWW-Authenticate header is what a 401 carries.
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with a bound on nesting (core.parsers).
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
    # DRF's own, counted per window in one Redis call instead of a pickled list.
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.AnonRateThrottle",
        "core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("THROTTLE_ANON", "600/min"),
        "user": os.environ.get("THROTTLE_USER", "3000/min"),
    },
    # The anonymous throttle keys on the same client address as core.client.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

DRF_STANDARDIZED_ERRORS = {
    "EXCEPTION_HANDLER_CLASS": "core.errors.ProblemExceptionHandler",
    "EXCEPTION_FORMATTER_CLASS": "core.errors.ProblemFormatter",
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
    "ERROR_SCHEMAS": {
        str(code): "core.errors.ProblemDetailsSerializer"
        for code in (400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 429, 500, 503)
    },
    "ALLOWED_ERROR_STATUS_CODES": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429", "500", "503"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AI status backend",
    "DESCRIPTION": (
        "Contents whose AI processing is explicit (status, processing_status, progress, ETA), "
        "pushed in real time and cheap to poll. Every 4xx/5xx is an RFC 9457 problem "
        "(application/problem+json) with an `errors` list."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ContentStatusEnum": "contents.models.ContentStatus",
        "ProcessingStatusEnum": "contents.models.ProcessingStatus",
        "AIJobStatusEnum": "aijobs.models.JobStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
        "core.schema.problem_json_media_type",
        "realtime.schema.add_stream_endpoints",
    ],
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    },
}

REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    # A token dies this long after it was issued (30 days), whatever its use; a client
    # then asks for a new one with the password. 0 means tokens live until revoked.
    "TOKEN_TTL": timedelta(hours=env_int("TOKEN_TTL_HOURS", 30 * 24)) or None,
    "AUTO_REFRESH": False,
}

# --- Queue, channel layer --------------------------------------------------

# The services enqueue in their own transaction.on_commit hooks; django-rq's own
# deferral would postpone those a second time (to a commit that never comes).
RQ = {"COMMIT_MODE": "auto"}
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
}

# The channel layer's Redis: one URL, or several comma-separated, over which
# channels-redis shards the groups (a stream's group lives on one of them, by consistent
# hashing of its name; every process must list the same ones in the same order).
# Its own instances take the fan-out off the queue's Redis (docs/operations.md, "Redis roles").
CHANNEL_LAYER_REDIS_URLS = env_list("CHANNEL_LAYER_REDIS_URLS") or [REDIS_URL]

CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        # channels-redis with socket timeouts that agree with its blocking reads, and a
        # receive that waits out a Redis restart (see realtime/layer.py).
        "BACKEND": "realtime.layer.ResilientRedisChannelLayer",
        "CONFIG": {
            "hosts": list(CHANNEL_LAYER_REDIS_URLS),
            # A burst of events must not be dropped for a full channel at the default 100.
            "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1500),
            # A member not renewed for this long is dropped from its group: each process's
            # stream hub renews its memberships every minute (realtime/hub.py), so only a
            # dead process's (a killed daphne never leaves) reach it.
            "group_expiry": env_int("CHANNEL_LAYER_GROUP_EXPIRY", 300),
            "prefix": "aistatus",
        },
    }
}

# --- Contents pipeline -------------------------------------------------------

# Outbound fetches of user-given URLs (SSRF guard in core.netguard).
FETCH_ALLOW_LOOPBACK = env_bool("FETCH_ALLOW_LOOPBACK", False)
FETCH_CONNECT_TIMEOUT = env_float("FETCH_CONNECT_TIMEOUT", 5.0)
FETCH_TOTAL_TIMEOUT = env_float("FETCH_TOTAL_TIMEOUT", 20.0)
FETCH_MAX_REDIRECTS = env_int("FETCH_MAX_REDIRECTS", 5)
FETCH_MAX_PAGE_BYTES = env_int("FETCH_MAX_PAGE_BYTES", 3 * 1024 * 1024)
FETCH_MAX_IMAGE_BYTES = env_int("FETCH_MAX_IMAGE_BYTES", 20 * 1024 * 1024)
FETCH_MAX_VIDEO_BYTES = env_int("FETCH_MAX_VIDEO_BYTES", 500 * 1024 * 1024)

# AI provider: "embedded" (offline, extractive) or "openai" (any OpenAI-compatible server).
AI_PROVIDER = os.environ.get("AI_PROVIDER", "embedded")
AI_BASE_URL = os.environ.get("AI_BASE_URL", "https://api.openai.com/v1")
AI_API_KEY = os.environ.get("AI_API_KEY", "")
AI_MODEL = os.environ.get("AI_MODEL", "gpt-4o-mini")
AI_TIMEOUT = env_float("AI_TIMEOUT", 60.0)
AI_SUMMARY_SENTENCES = env_int("AI_SUMMARY_SENTENCES", 3)
AI_QA_COUNT = env_int("AI_QA_COUNT", 3)
# While a stage generates, its partial result (the summary so far, the Q&A pairs done)
# is written on the content and pushed as a `content_status_update` at most once per
# this many seconds per content, at sentence or pair boundaries (contents.progress).
AI_PARTIAL_INTERVAL = env_float("AI_PARTIAL_INTERVAL", 0.25)

# The periodic jobs manage.py run_cron runs: each app's, listed in config/schedule.py
# (core's command imports no app).
PERIODIC_JOBS = "config.schedule.periodic_jobs"

# A content whose stage has not moved for this long, and whose job is not waiting
# in the queue, is retried (up to CONTENT_MAX_ATTEMPTS) or failed by the sweep.
CONTENT_STALL_SECONDS = env_int("CONTENT_STALL_SECONDS", 90)
CONTENT_SWEEP_INTERVAL = env_int("CONTENT_SWEEP_INTERVAL", 15)
CONTENT_MAX_ATTEMPTS = env_int("CONTENT_MAX_ATTEMPTS", 3)
# An active content whose RQ job the queue has no record of (its enqueue failed while
# Redis was away) is enqueued again once it is this old.
CONTENT_ENQUEUE_GRACE_SECONDS = env_int("CONTENT_ENQUEUE_GRACE_SECONDS", 10)
CONTENT_JOB_TIMEOUT = env_int("CONTENT_JOB_TIMEOUT", 180)
# How many recent stage runs the ETA averages over.
ETA_SAMPLE_SIZE = env_int("ETA_SAMPLE_SIZE", 50)

# X-Poll-Interval: seconds a client should wait before its next poll.
POLL_INTERVAL_ACTIVE = env_int("POLL_INTERVAL_ACTIVE", 2)
POLL_INTERVAL_IDLE = env_int("POLL_INTERVAL_IDLE", 30)
# An unchanged conditional status poll is answered ahead of Django in one Redis round
# trip, with the full path's very answer (core.fast_path, contents.fast_status); 0 sends
# every request through Django.
POLL_FAST_PATH = env_bool("POLL_FAST_PATH", True)

# Real-time streams (SSE and WebSocket).
REALTIME_TICKET_TTL = env_int("REALTIME_TICKET_TTL", 60)
# Comfortably under the 15 s the contract promises, query time included.
REALTIME_HEARTBEAT_SECONDS = env_float("REALTIME_HEARTBEAT_SECONDS", 10.0)
REALTIME_RETENTION_HOURS = env_int("REALTIME_RETENTION_HOURS", 24)
# A client further behind than this replays nothing and is told to resync.
REALTIME_REPLAY_LIMIT = env_int("REALTIME_REPLAY_LIMIT", 1000)
# Connections are closed after this long so that authorisation is checked again.
REALTIME_MAX_CONNECTION_SECONDS = env_int("REALTIME_MAX_CONNECTION_SECONDS", 3600)
SSE_RETRY_MILLISECONDS = env_int("SSE_RETRY_MILLISECONDS", 3000)
# Streams (SSE + WebSocket) one user may hold open at once, across processes (realtime.hub);
# more is a 429 (SSE) or close code 4429 (WebSocket).
REALTIME_MAX_STREAMS_PER_USER = env_int("REALTIME_MAX_STREAMS_PER_USER", 20)
# Messages a WebSocket client may send a second (a burst of as many); more closes it with 1008.
REALTIME_WS_MAX_MESSAGES_PER_SECOND = env_float("REALTIME_WS_MAX_MESSAGES_PER_SECOND", 10.0)
# The largest WebSocket message a client may send (realtime.inbound.MessageSizeLimit):
# a subscribe or a ping is under 200 bytes. A larger one closes the socket with 4009
# before it is decoded or parsed. Never above REQUEST_MAX_BODY_BYTES.
REALTIME_WS_MAX_MESSAGE_BYTES = env_int("REALTIME_WS_MAX_MESSAGE_BYTES", 16 * 1024)

# Request bodies (core.body_limit: refused with a 413 while they are read). Every
# endpoint takes at most REQUEST_MAX_BODY_BYTES; the video upload takes its file's
# limit plus room for the form. Django's own check of non-file data agrees with it.
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_MAX_BODY_BYTES
# A body must arrive in time (core.body_limit): REQUEST_BODY_TIMEOUT_SECONDS, plus one
# second for every REQUEST_BODY_MIN_BYTES_PER_SECOND it is long (its Content-Length, or
# its limit when it declares none), counted from the request's start; later, 408. A
# client trickling a byte at a time holds a request for seconds, not forever.
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", 10.0)
REQUEST_BODY_MIN_BYTES_PER_SECOND = env_int("REQUEST_BODY_MIN_BYTES_PER_SECOND", 64 * 1024)
# Requests and WebSockets one client (an address, an IPv6 /CLIENT_IPV6_PREFIX) may have
# open at once in one web worker process (core.connection_limit); more is a 429 (a
# WebSocket handshake is refused with 403). It bounds what slow or held requests from
# one address can take before anyone has authenticated; a user's own streams are
# bounded by REALTIME_MAX_STREAMS_PER_USER. 0: no bound (many users behind one NAT).
WEB_MAX_OPEN_PER_CLIENT = env_int("WEB_MAX_OPEN_PER_CLIENT", 64)

# Videos and AI jobs.
VIDEO_MAX_UPLOAD_BYTES = env_int("VIDEO_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
# No frame larger than this is decoded (4K UHD, 3840x2160): videos.media.
VIDEO_MAX_FRAME_PIXELS = env_int("VIDEO_MAX_FRAME_PIXELS", 3840 * 2160)
TRENDING_WINDOW_HOURS = env_int("TRENDING_WINDOW_HOURS", 24)
# A viewer's repeated views of a video within this many seconds count once (0: each counts).
VIEW_DEDUP_SECONDS = env_int("VIEW_DEDUP_SECONDS", 1800)
# Views are counted in Redis and moved into the rows this often (the cron scheduler).
VIEW_FLUSH_SECONDS = env_int("VIEW_FLUSH_SECONDS", 5)
POLL_INTERVAL_VIDEO_METADATA = env_int("POLL_INTERVAL_VIDEO_METADATA", 5)
CREDITS_NEW_ACCOUNT_GRANT = env_int("CREDITS_NEW_ACCOUNT_GRANT", 100)
AI_JOB_COSTS = {"glitch": env_int("AI_JOB_COST_GLITCH", 10), "remix": env_int("AI_JOB_COST_REMIX", 20)}
# Jobs one user may have queued or processing at once; more is a 429 (aijobs.services.job_create).
AI_JOB_MAX_IN_FLIGHT_PER_USER = env_int("AI_JOB_MAX_IN_FLIGHT_PER_USER", 5)
AI_JOB_STALL_SECONDS = env_int("AI_JOB_STALL_SECONDS", 60)
AI_JOB_TIMEOUT = env_int("AI_JOB_TIMEOUT", 1800)
AI_JOB_MAX_FRAMES = env_int("AI_JOB_MAX_FRAMES", 36000)
# The raw frames a reverse or loop remix keeps on disk while it works (aijobs.effects).
AI_JOB_MAX_SPOOL_BYTES = env_int("AI_JOB_MAX_SPOOL_BYTES", 1024 * 1024 * 1024)

# Moderation: deleted videos' files are removed from storage after this grace period.
MODERATION_FILE_GRACE_HOURS = env_int("MODERATION_FILE_GRACE_HOURS", 24)

IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24)

# GET /metrics (core/metrics.py) answers only a scraper that sends this as a bearer
# token; unset, the endpoint does not exist (404), so nothing leaks by default.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Readiness (core.health): while this file exists the process drains: /readyz answers
# 503 and open streams are ended so that their clients reconnect elsewhere.
# scripts/run_stack.sh creates it when told to stop (SIGTERM) and stops the server
# WEB_DRAIN_SECONDS later; empty: never draining.
WEB_DRAIN_FILE = os.environ.get("WEB_DRAIN_FILE", "")
# How long a drain lasts (run_stack.sh stops the processes then). Streams are ended half
# way, once a load balancer polling /readyz has stopped sending them here, so that their
# clients reconnect to another host with their last event id (realtime.hub).
WEB_DRAIN_SECONDS = env_float("WEB_DRAIN_SECONDS", 5.0)
# prometheus_client's multiprocess mode sums every process's counts from files in
# PROMETHEUS_MULTIPROC_DIR (scripts/run_stack.sh sets it; the tests' settings give a
# test session a directory of its own).
# How often each process copies its database pool's state into the metrics
# (core.metrics_sources): a gauge is as old as this at most.
METRICS_SAMPLE_SECONDS = env_float("METRICS_SAMPLE_SECONDS", 5.0)

# Logs go to stderr, a line each: LOG_FORMAT=json (the production default) writes each
# as one JSON object for a log pipeline, LOG_FORMAT=text (development's) as plain text.
# Every line names the request it was written for (request_id, core.request_log), in a
# job's lines the request that enqueued it; the `access` logger writes one line per
# request (route, method, status, latency, user, client), the `stream` logger one per
# stream that ends.
LOG_FORMAT = os.environ.get("LOG_FORMAT") or ("text" if DEVELOPMENT else "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'text', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.request_log.RequestIdFilter"}},
    "formatters": {
        "json": {
            # python-json-logger: the fields named here, then every plain `extra` a line has.
            "()": "core.request_log.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["request_id"], "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
