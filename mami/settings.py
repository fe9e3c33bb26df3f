"""Settings for mami, driven by the environment.

The defaults are the embedded topology: SQLite in WAL mode, the in-memory
channel layer, the worker inside the web process, and the Forge simulator
when FORGE_URL is unset.
"""

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from mami.secret import kept_secret
from mami.site_url import parse_site_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _env_parsed[T](name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
    """The variable parsed, its default when unset or empty, and a clear
    ImproperlyConfigured (not a traceback) when it doesn't parse."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return parse(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {value!r}") from None


def _boolean(value: str) -> bool:
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(value)


def env_bool(name: str, default: bool) -> bool:
    return _env_parsed(name, default, _boolean, "a boolean (1/0, true/false)")


def env_float(name: str, default: float) -> float:
    return _env_parsed(name, default, float, "a number")


def env_int(name: str, default: int) -> int:
    return _env_parsed(name, default, int, "a whole number")


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def env_list(name: str, default: list[str]) -> list[str]:
    return _env_parsed(name, default, _items, "a comma-separated list")


def _seconds(value: str) -> list[float]:
    found = [float(item) for item in _items(value)]
    if not found or any(not 0 <= item < float("inf") for item in found):
        raise ValueError(value)
    return found


def env_seconds_list(name: str, default: list[float]) -> list[float]:
    return _env_parsed(
        name, default, _seconds, "a comma-separated list of seconds (numbers, 0 or more)"
    )


# The one switch for development (`MAMI_DEV=1 ./scripts/run`): DEBUG and
# auto-reload. Everything else, `./scripts/run` included, runs as served.
MAMI_DEV = env_bool("MAMI_DEV", False)
DEBUG = env_bool("DEBUG", MAMI_DEV)

# Where people reach mami; ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS and the
# HTTPS-only settings below follow from it (mami.site_url). Unset, an
# install that only named its origin (CSRF_TRUSTED_ORIGINS, as deploy
# notes before MAMI_URL had it) keeps being served as that origin.
_MAMI_PORT = env_int("MAMI_PORT", 8000)
_legacy_origins = env_list("CSRF_TRUSTED_ORIGINS", [])
MAMI_URL = env_str("MAMI_URL") or (
    _legacy_origins[0] if _legacy_origins else f"http://127.0.0.1:{_MAMI_PORT}"
)
try:
    SITE = parse_site_url(MAMI_URL)
except ValueError as error:
    raise ImproperlyConfigured(f"MAMI_URL must be {error}, got {MAMI_URL!r}") from None

# What to back up: the SQLite database, the pictures, the kept secret.
DATA_DIR = Path(env_str("MAMI_DATA_DIR", str(BASE_DIR / "data"))).resolve()

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and os.environ.get("SECRET_KEY_FILE"):
    SECRET_KEY = Path(os.environ["SECRET_KEY_FILE"]).read_text().strip()
if not SECRET_KEY:
    try:
        SECRET_KEY = kept_secret(DATA_DIR / "secret_key")
    except OSError as error:
        raise ImproperlyConfigured(
            f"No SECRET_KEY is set and none can be kept in MAMI_DATA_DIR ({DATA_DIR}): {error}. "
            "Make that directory writable, or set SECRET_KEY or SECRET_KEY_FILE."
        ) from None

# Loopback always: the health check and `./scripts/run`'s own probe ask there.
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS",
    list(dict.fromkeys([SITE.allowed_host, "localhost", "127.0.0.1", "[::1]"])),
)
CSRF_TRUSTED_ORIGINS = _legacy_origins or [SITE.origin]

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSockets.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    # Its static files: /api/docs serves Swagger UI from here, not a CDN.
    "ninja",
    # Login throttling: failed attempts per username and per address.
    "axes",
    # imagejobs above channels: both ship a `runworker` command and Django
    # runs the one of the app listed first.
    "imagejobs",
    "chat",
    # Development doubles of Forge and a chat model: their commands only.
    "simulators",
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Its process_exception runs last of all's: a view that met the
    # database away answers 503 whatever else is installed.
    "mami.unavailable.DatabaseOutageMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "mami.headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "chat.api_guard.ApiRequestGuard",
    # After the size and type checks: it reads the (measured) body.
    "chat.storable_text.RefuseUnstorableText",
    # Last, as django-axes requires: it turns a held login into its answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "mami.urls"
ASGI_APPLICATION = "mami.asgi.application"

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

SQLITE_PATH = Path(env_str("MAMI_SQLITE_PATH", str(DATA_DIR / "db.sqlite3")))
# WAL lets the web process read while the worker writes; IMMEDIATE takes the
# write lock at BEGIN so a read never has to be upgraded to a write
# mid-transaction (that upgrade fails at once under WAL).
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    # How long a write waits for another process's lock (a backup, a shell)
    # before it counts as the database being away (mami.db_outage: held,
    # retried, never a failed picture).
    "timeout": env_float("MAMI_SQLITE_TIMEOUT", 20.0),
}
DATABASE_URL = env_str("DATABASE_URL")
# Connections are kept between requests (and between a socket's reads):
# opening one was about a third of a socket's connect. Each thread keeps
# its own; PostgreSQL's is checked before reuse, so one a restart broke is
# replaced.
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            # A file on this machine: nothing to reconnect to.
            "CONN_MAX_AGE": None,
        }
    }
_default_db = DATABASES["default"]
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with the process's writers queued in order
    # (mami/sqlite3/base.py).
    _default_db["ENGINE"] = "mami.sqlite3"
    _default_db["OPTIONS"] = {**SQLITE_OPTIONS, **_default_db.get("OPTIONS", {})}
# Always explicit: live-server children derive the test database's name from
# it (channels#2176), and a file, not :memory:, lets worker processes and a
# live Daphne child open the same test database.
_db_name = Path(str(_default_db["NAME"]))
_default_db["TEST"] = {
    "NAME": env_str(
        "MAMI_TEST_DATABASE_NAME",
        str(_db_name.with_name("test_" + _db_name.name))
        if _default_db["ENGINE"] == "mami.sqlite3"
        else "test_" + str(_default_db["NAME"]),
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 defaults socket_timeout to 5 s, the same as
            # channels-redis' blocking BZPOPMIN; the read then times out and
            # kills any consumer idle for 5 s. Give reads room above it.
            # One Redis list per web process carries the messages of all its
            # sockets, so its capacity (default 100) bounds a burst across
            # every open tab; overflow is dropped silently.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": env_int("MAMI_CHANNEL_CAPACITY", 2000),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "mami.channel_layer.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
CSRF_FAILURE_VIEW = "mami.error_pages.csrf_failure"
# No request mami takes comes near this (a message is at most 4,000
# characters); bigger bodies are refused before they are read.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAMI_MAX_REQUEST_BYTES", 1024 * 1024)

# After MAMI_LOGIN_FAILURE_LIMIT failed logins for one username, or from one
# address, that login is held for MAMI_LOGIN_COOLOFF_MINUTES (the login
# forms, the admin's included, say so: mami.lockout); a success resets it.
AXES_FAILURE_LIMIT = env_int("MAMI_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("MAMI_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "mami.lockout.locked_out"
# How many proxies stand in front of the web processes (docs/deploy.md): the
# client's address is the one the outermost of them saw
# (mami.client_address), not what a client writes into X-Forwarded-For.
MAMI_TRUSTED_PROXIES = env_int("MAMI_TRUSTED_PROXIES", 0)
AXES_CLIENT_IP_CALLABLE = "mami.client_address.client_address"
LOGIN_REDIRECT_URL = "chat:conversation-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("tr", "Türkçe")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Built by `manage.py buildstatic` (`./scripts/run` runs it; it collects
# only when the sources changed) and served by WhiteNoise; with DEBUG on,
# WhiteNoise serves the sources themselves. Not data: nothing to back up.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
# Where a worker keeps what it must not lose while the database is away:
# pictures stored whose job is not completed yet (imagejobs.spool). Local
# to the worker's box is enough: the same worker completes them.
MAMI_SPOOL_DIR = Path(env_str("MAMI_SPOOL_DIR", str(DATA_DIR / "spool")))
# A picture storage refuses (full, read-only) is tried again this often, and
# its job fails with a readable message after the second setting.
MAMI_STORAGE_RETRY_SECONDS = env_float("MAMI_STORAGE_RETRY_SECONDS", 10.0)
MAMI_STORAGE_GIVE_UP_SECONDS = env_float("MAMI_STORAGE_GIVE_UP_SECONDS", 1800.0)
# Images are served by an owner-checked view, never from a public media URL.
MEDIA_URL = "/media-not-served/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed files in production (after collectstatic).
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# HTTPS-only exactly when people reach mami over HTTPS. X-Forwarded-Proto
# is believed only from a proxy the operator named (MAMI_TRUSTED_PROXIES):
# anyone else could write it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if MAMI_TRUSTED_PROXIES > 0 else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SITE.https)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SITE.https)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SITE.https)
# The language choice is a cookie too: sent only over HTTPS in production,
# never to other sites' requests, never to scripts (none reads it).
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SITE.https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SITE.https)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SITE.https)
if not SITE.https:
    # Served over plain HTTP on purpose (a LAN, a laptop): the deploy check
    # explains that once (mami.W002) instead of four times.
    SILENCED_SYSTEM_CHECKS = [
        "security.W004",
        "security.W008",
        "security.W012",
        "security.W016",
    ]
# /healthz is polled over plain HTTP by the proxy and by monitoring.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Scripts and styles only from mami itself: no inline scripts, no eval
# (htmx's allowEval is off), no injected <style> elements. Style
# *attributes* are allowed: the cards set a progress width and an aspect
# ratio that way, and an attribute can't run script.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "style-src-elem": [CSP.SELF],
    "style-src-attr": [CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", "blob:"],
    # 'self' covers the page's own ws:/wss: origin (CSP Level 3).
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# Browser features mami never uses, refused for every page.
MAMI_PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"outage": {"()": "mami.db_outage.OutageLogFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # Logs are the server's output: stdout, for the terminal,
            # systemd's journal or a container's log.
            "stream": "ext://sys.stdout",
            "formatter": "plain",
            "filters": ["outage"],
        }
    },
    # The root's handler replaces the one Daphne gives it (each line would be
    # written twice); libraries' chatter (httpx logs every request) stays
    # below WARNING, mami's own loggers at MAMI_LOG_LEVEL.
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "daphne": {"level": "INFO"},
        **{
            name: {"level": env_str("MAMI_LOG_LEVEL", "INFO")}
            for name in ("imagejobs", "chat", "mami", "simulators")
        },
    },
}

# --- mami ---------------------------------------------------------------
# Base URL of the Forge server; empty means "start the simulator" in the
# embedded topology.
FORGE_URL = env_str("FORGE_URL").rstrip("/")
# Seconds one txt2img call may take before it counts as a timeout.
FORGE_TIMEOUT = env_float("FORGE_TIMEOUT", 180.0)
# How often the worker polls /sdapi/v1/progress while txt2img runs (>= 4 Hz).
FORGE_PROGRESS_INTERVAL = env_float("FORGE_PROGRESS_INTERVAL", 0.25)
# Progress is pushed on every change but written (with the heartbeat) at
# most this often per job.
MAMI_PROGRESS_WRITE_INTERVAL = env_float("MAMI_PROGRESS_WRITE_INTERVAL", 1.0)
# The checkpoint a picture gets when neither the request nor the
# conversation names one (a Forge model name; empty: what the GPU has).
MAMI_DEFAULT_MODEL = env_str("MAMI_DEFAULT_MODEL")
# The optional chat model (README: "Connecting a chat model"): any OpenAI-compatible
# server's base URL (Ollama: http://localhost:11434/v1), or "sim" for the
# built-in simulator; empty: rule-based replies only.
CHAT_MODEL_URL = env_str("CHAT_MODEL_URL").rstrip("/")
CHAT_MODEL = env_str("CHAT_MODEL")
CHAT_MODEL_API_KEY = env_str("CHAT_MODEL_API_KEY")
# Seconds to wait for the model's next words before the reply fails.
CHAT_MODEL_TIMEOUT = env_float("CHAT_MODEL_TIMEOUT", 60.0)
# How much of the conversation the model is shown (estimated tokens).
CHAT_MODEL_CONTEXT_TOKENS = env_int("CHAT_MODEL_CONTEXT_TOKENS", 3000)
# A reply's words reach the page at most this often, and are saved at most
# this often while it is written (and when it ends).
CHAT_REPLY_PUSH_INTERVAL = env_float("CHAT_REPLY_PUSH_INTERVAL", 0.05)
CHAT_REPLY_SAVE_INTERVAL = env_float("CHAT_REPLY_SAVE_INTERVAL", 1.0)
# Replies written at once per web process.
CHAT_REPLY_WORKERS = env_int("CHAT_REPLY_WORKERS", 4)
# The chat-model simulator's speed (CHAT_MODEL_URL=sim).
CHAT_SIMULATOR_TOKENS_PER_SECOND = env_float("CHAT_SIMULATOR_TOKENS_PER_SECOND", 20.0)
# Switch-aware scheduling (imagejobs/scheduling.py): a worker may take jobs
# for the model it has loaded before the next job in the fair order, but
# never passes a job over for longer than MAX_WAIT seconds, nor more than
# MAX_PASSES times, and looks at most LOOKAHEAD jobs ahead.
MAMI_MODEL_AFFINITY_MAX_WAIT = env_float("MAMI_MODEL_AFFINITY_MAX_WAIT", 60.0)
MAMI_MODEL_AFFINITY_MAX_PASSES = env_int("MAMI_MODEL_AFFINITY_MAX_PASSES", 40)
MAMI_MODEL_AFFINITY_LOOKAHEAD = env_int("MAMI_MODEL_AFFINITY_LOOKAHEAD", 100)
# Seconds a change of checkpoint is expected to add to a picture, for ETAs,
# until a worker has learned its own from its pictures.
MAMI_MODEL_SWITCH_SECONDS = env_float("MAMI_MODEL_SWITCH_SECONDS", 10.0)
# Live previews while a picture is drawn: fetched from Forge at most this
# often (0 turns them off), and made by Forge every N sampling steps
# (0: about eight per picture, whatever its steps).
MAMI_PREVIEW_INTERVAL = env_float("MAMI_PREVIEW_INTERVAL", 0.5)
MAMI_PREVIEW_EVERY_N_STEPS = env_int("MAMI_PREVIEW_EVERY_N_STEPS", 0)
# Run the worker as a thread of the web process (embedded topology). Off by
# default with Redis, where workers run as their own processes.
MAMI_EMBEDDED_WORKER = env_bool("MAMI_EMBEDDED_WORKER", not REDIS_URL)
# Seconds per sampling step of the simulator started by the embedded server.
MAMI_SIMULATOR_SECONDS_PER_STEP = env_float("MAMI_SIMULATOR_SECONDS_PER_STEP", 0.15)
# ... and how long it takes to load another of its checkpoints.
MAMI_SIMULATOR_SWITCH_SECONDS = env_float("MAMI_SIMULATOR_SWITCH_SECONDS", 2.0)
# Longest a push to the channel layer may take. Pushes are best effort: a
# slow or unreachable layer (Redis restarting) drops them, never a job.
MAMI_BROADCAST_TIMEOUT = env_float("MAMI_BROADCAST_TIMEOUT", 2.0)
# Threads that run the sync side of HTTP requests in each web process
# (mami.request_threads), each keeping its database connection.
MAMI_REQUEST_THREADS = env_int("MAMI_REQUEST_THREADS", 8)
# Answers that only show the queue (a new job's card, a socket catching up
# after a restart) share the workers' state and the average duration read
# this many seconds ago at most; places are always read fresh.
MAMI_QUEUE_FACTS_SECONDS = env_float("MAMI_QUEUE_FACTS_SECONDS", 0.5)
# Used for ETAs until jobs have finished and a real average exists.
MAMI_DEFAULT_JOB_SECONDS = env_float("MAMI_DEFAULT_JOB_SECONDS", 20.0)
# Idle worker sleeps this long between looks at the queue.
MAMI_WORKER_IDLE_SLEEP = env_float("MAMI_WORKER_IDLE_SLEEP", 0.5)
# Forge calls per job for transient failures (refused/dropped/5xx/timeout).
FORGE_MAX_ATTEMPTS = env_int("FORGE_MAX_ATTEMPTS", 3)
# Seconds to wait before the 2nd, 3rd, ... attempt (the last repeats).
FORGE_RETRY_BACKOFF = env_seconds_list("FORGE_RETRY_BACKOFF", [1.0, 2.0, 4.0])
# After a call the worker gave up on (timeout, dropped connection), it waits
# this long at most for Forge to be idle before the next call, so that no
# abandoned request is drawn for nobody; still busy then, the job fails.
FORGE_SETTLE_SECONDS = env_float("FORGE_SETTLE_SECONDS", 60.0)
# A Forge call holding the GPU longer than this is logged as a warning.
FORGE_SLOW_CALL_SECONDS = env_float("FORGE_SLOW_CALL_SECONDS", 30.0)
# Consecutive Forge failures that open the circuit, and for how long.
MAMI_CIRCUIT_THRESHOLD = env_int("MAMI_CIRCUIT_THRESHOLD", 5)
MAMI_CIRCUIT_OPEN_SECONDS = env_float("MAMI_CIRCUIT_OPEN_SECONDS", 60.0)
# A processing job without a heartbeat this long is failed by the guard.
MAMI_STUCK_AFTER_SECONDS = env_float("MAMI_STUCK_AFTER_SECONDS", 300.0)
# How often a worker runs the stuck-job guard and dead-worker recovery.
MAMI_SWEEP_INTERVAL = env_float("MAMI_SWEEP_INTERVAL", 60.0)
# A job whose worker died while drawing it goes back to the head of the
# queue this many times; the next loss fails it ("worker_lost").
MAMI_MAX_RECOVERIES = env_int("MAMI_MAX_RECOVERIES", 3)
# Workers write their own heartbeat this often; silent this long = dead.
MAMI_WORKER_HEARTBEAT_SECONDS = env_float("MAMI_WORKER_HEARTBEAT_SECONDS", 5.0)
MAMI_WORKER_DEAD_AFTER_SECONDS = env_float("MAMI_WORKER_DEAD_AFTER_SECONDS", 30.0)
# Queue moves within this many seconds are announced with one refresh of
# every queued card.
MAMI_QUEUE_PUSH_DELAY = env_float("MAMI_QUEUE_PUSH_DELAY", 0.15)
# Fair use of a shared GPU: unfinished pictures one user may have at once
# (staff exempt), and pictures one user may ask for per minute.
MAMI_MAX_UNFINISHED_PER_USER = env_int("MAMI_MAX_UNFINISHED_PER_USER", 10)
MAMI_MAX_PICTURES_PER_MINUTE = env_int("MAMI_MAX_PICTURES_PER_MINUTE", 20)
# The chat model is shared the same way (chat.reply_limits): replies one user
# may have being written at once, and asked for per minute (0: no limit).
MAMI_MAX_REPLIES_IN_FLIGHT = env_int("MAMI_MAX_REPLIES_IN_FLIGHT", 3)
MAMI_MAX_REPLIES_PER_MINUTE = env_int("MAMI_MAX_REPLIES_PER_MINUTE", 20)
# Conversation sockets one user may hold open at once (tabs, devices).
MAMI_MAX_SOCKETS_PER_USER = env_int("MAMI_MAX_SOCKETS_PER_USER", 20)
# An open socket says it is still there this often; one silent for the
# stale time belongs to a web process that died.
MAMI_SOCKET_REFRESH_SECONDS = env_float("MAMI_SOCKET_REFRESH_SECONDS", 60.0)
MAMI_SOCKET_STALE_SECONDS = env_float("MAMI_SOCKET_STALE_SECONDS", 180.0)
# When set, /metrics asks for "Authorization: Bearer <this>".
MAMI_METRICS_TOKEN = env_str("MAMI_METRICS_TOKEN")
