"""Settings for mami, driven by the environment.

The defaults are the embedded topology: SQLite in WAL mode, the in-memory
channel layer, the worker inside the web process, and the Forge simulator
when FORGE_URL is unset.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-embedded-default-only-for-local-use"

# Listed explicitly because AllowedHostsOriginValidator reads this once at
# import time, and an empty list would refuse tests' Origin headers.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

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
    # imagejobs above channels: both ship a `runworker` command and Django
    # runs the one of the app listed first.
    "imagejobs",
    "chat",
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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

SQLITE_PATH = Path(env_str("MAMI_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": SQLITE_PATH,
        # WAL lets the web process read while the worker writes; IMMEDIATE
        # takes the write lock at BEGIN so a read never has to be upgraded
        # to a write mid-transaction (that upgrade fails at once under WAL).
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # A file, not :memory:, so a live Daphne child and worker processes
        # open the same test database.
        "TEST": {"NAME": str(SQLITE_PATH.with_name("test_" + SQLITE_PATH.name))},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
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
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
# Images are served by an owner-checked view, never from a public media URL.
MEDIA_URL = "/media-not-served/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "imagejobs": {"handlers": ["console"], "level": env_str("MAMI_LOG_LEVEL", "INFO")},
        "chat": {"handlers": ["console"], "level": env_str("MAMI_LOG_LEVEL", "INFO")},
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
# Run the worker as a thread of the web process (embedded topology). Off by
# default with Redis, where workers run as their own processes.
MAMI_EMBEDDED_WORKER = env_bool("MAMI_EMBEDDED_WORKER", not REDIS_URL)
# Seconds per sampling step of the simulator started by the embedded server.
MAMI_SIMULATOR_SECONDS_PER_STEP = env_float("MAMI_SIMULATOR_SECONDS_PER_STEP", 0.15)
# Used for ETAs until jobs have finished and a real average exists.
MAMI_DEFAULT_JOB_SECONDS = env_float("MAMI_DEFAULT_JOB_SECONDS", 20.0)
# Idle worker sleeps this long between looks at the queue.
MAMI_WORKER_IDLE_SLEEP = env_float("MAMI_WORKER_IDLE_SLEEP", 0.5)
# Forge calls per job for transient failures (refused/dropped/5xx/timeout).
FORGE_MAX_ATTEMPTS = int(env_float("FORGE_MAX_ATTEMPTS", 3))
# Seconds to wait before the 2nd, 3rd, ... attempt (the last repeats).
FORGE_RETRY_BACKOFF = [float(s) for s in env_list("FORGE_RETRY_BACKOFF", ["1", "2", "4"])]
# A Forge call holding the GPU longer than this is logged as a warning.
FORGE_SLOW_CALL_SECONDS = env_float("FORGE_SLOW_CALL_SECONDS", 30.0)
# Consecutive Forge failures that open the circuit, and for how long.
MAMI_CIRCUIT_THRESHOLD = int(env_float("MAMI_CIRCUIT_THRESHOLD", 5))
MAMI_CIRCUIT_OPEN_SECONDS = env_float("MAMI_CIRCUIT_OPEN_SECONDS", 60.0)
# A processing job without a heartbeat this long is failed by the guard.
MAMI_STUCK_AFTER_SECONDS = env_float("MAMI_STUCK_AFTER_SECONDS", 300.0)
# How often a worker runs the stuck-job guard and dead-worker recovery.
MAMI_SWEEP_INTERVAL = env_float("MAMI_SWEEP_INTERVAL", 60.0)
# Workers write their own heartbeat this often; silent this long = dead.
MAMI_WORKER_HEARTBEAT_SECONDS = env_float("MAMI_WORKER_HEARTBEAT_SECONDS", 5.0)
MAMI_WORKER_DEAD_AFTER_SECONDS = env_float("MAMI_WORKER_DEAD_AFTER_SECONDS", 30.0)
