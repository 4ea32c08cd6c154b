"""Project settings, read once from the environment (and an optional ``.env``).

Every knob a user may set is listed in the README's settings table. Each is
read by ``settings.environment.setting`` with its kind and range: a bad value
stops every command with one line naming it (``settings: NAME must be ...``).
Scheduler knobs are collected in ``SCHEDULER``; code receives them through
``scheduler.config.SchedulerConfig`` instead of reading ``settings`` directly.

``DEBUG`` is on unless turned off, so the embedded demo runs with no settings
at all; with ``DEBUG=false`` a strong ``SECRET_KEY`` is required, and
``settings/production.env.example`` lists what ``manage.py check --deploy``
wants besides.
"""
from pathlib import Path

import environ

from . import environment as kind
from .environment import read_env_file, secret_key, setting

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# ENV_FILE: KEY=value lines read first (variables already set win); empty: none.
ENV_FILE = read_env_file(BASE_DIR / ".env")

DEBUG = setting("DEBUG", kind.BOOL, True)
#: The key of DEBUG mode when none is set; refused with DEBUG=false.
DEVELOPMENT_SECRET_KEY = "insecure-dev-key-change-me-in-production"
SECRET_KEY = secret_key(DEBUG, DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = setting("ALLOWED_HOSTS", kind.HOSTS, ["localhost", "127.0.0.1", "[::1]"])

# HTTPS. Off by default (the demo serves plain HTTP on localhost); the
# production example turns them on. The JSON-RPC endpoints never redirect:
# AFE's clients do not follow a redirect of a POST. Only the endpoints: the
# admin (afe/server/admin/) is redirected like every page. The middleware
# matches the path without its leading slashes.
SECURE_SSL_REDIRECT = setting("SECURE_SSL_REDIRECT", kind.BOOL, False)
SECURE_REDIRECT_EXEMPT = [r"^afe/server/(?:noauth/)?rpc/?$", r"^new_tko/server/(?:noauth/)?rpc/?$"]
SECURE_HSTS_SECONDS = setting("SECURE_HSTS_SECONDS", kind.INT, 0, min=0, max=63_072_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = setting("SECURE_HSTS_INCLUDE_SUBDOMAINS", kind.BOOL, False)
SECURE_HSTS_PRELOAD = setting("SECURE_HSTS_PRELOAD", kind.BOOL, False)
SECURE_PROXY_SSL_HEADER = setting("SECURE_PROXY_SSL_HEADER", kind.PROXY_HEADER, None)
SESSION_COOKIE_SECURE = setting("SESSION_COOKIE_SECURE", kind.BOOL, False)
CSRF_COOKIE_SECURE = setting("CSRF_COOKIE_SECURE", kind.BOOL, False)
CSRF_TRUSTED_ORIGINS = setting("CSRF_TRUSTED_ORIGINS", kind.ORIGINS, [])
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "afe",
    "scheduler",
    "drones",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the pages' static files under any WSGI server (gunicorn included).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"

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


def _database(url: str) -> dict:
    """The ``default`` database for DATABASE_URL, tuned for several processes."""
    config = environ.Env.db_url_config(url)
    engine = config["ENGINE"]
    if engine.endswith("sqlite3"):
        config["ENGINE"] = "settings.backends.sqlite3"
        db_file = Path(config["NAME"])
        db_file.parent.mkdir(parents=True, exist_ok=True)
        # Tests use a file too: scheduler tests share the database across processes.
        config["TEST"] = {"NAME": str(db_file.with_name(f"test_{db_file.name}"))}
        # WAL lets the scheduler, drones and web server share the file; the
        # busy timeout makes a writer wait for a lock instead of failing.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            **config.get("OPTIONS", {}),
        }
    elif engine.endswith("mysql"):
        config["OPTIONS"] = {
            "charset": "utf8mb4",
            "isolation_level": "read committed",
            # Django stores UTC; the database's own clock (Now(), heartbeats) must speak UTC too.
            "init_command": "SET time_zone = '+00:00'",
            **config.get("OPTIONS", {}),
        }
        config.setdefault("TEST", {})["CHARSET"] = "utf8mb4"
        config["TEST"]["COLLATION"] = "utf8mb4_unicode_ci"
    return config


DATABASE_URL = setting("DATABASE_URL", kind.DATABASE_URL, f"sqlite:///{VAR_DIR / 'afe.sqlite3'}")
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = setting("TIME_ZONE", kind.TIME_ZONE, "UTC")
USE_I18N = True
# AFE stores naive local datetimes ("YYYY-MM-DD HH:MM:SS"); keep that schema.
USE_TZ = False

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Found in the apps at start-up, so serving needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "afe-pages:login"  # the pages' own login: lab users need not be admin staff
LOGIN_REDIRECT_URL = "afe-pages:job-list"

# E-mail: per-status job mail and the operator digest go through this backend.
EMAIL_URL = setting("EMAIL_URL", kind.EMAIL_URL, "consolemail://")
vars().update(environ.Env.email_url_config(EMAIL_URL))
DEFAULT_FROM_EMAIL = setting("DEFAULT_FROM_EMAIL", kind.SENDER, "autotest-scheduler@localhost")

# Drones: with no broker every process runs on this machine (the local drone).
CELERY_BROKER_URL = setting("CELERY_BROKER_URL", kind.BROKER_URL, "")

RESULTS_DIR = Path(setting("RESULTS_DIR", kind.ABSOLUTE_PATH, str(VAR_DIR / "results")))
AUTOSERV_PATH = setting("AUTOSERV_PATH", kind.ABSOLUTE_PATH, str(BASE_DIR / "bin" / "autoserv"))
PARSER_PATH = setting("PARSER_PATH", kind.ABSOLUTE_PATH, str(BASE_DIR / "bin" / "parse"))

# The job runner (bin/autoserv): how it reaches hosts whose `connection` attribute is not `local`.
AUTOSERV_SSH_USER = setting("AUTOSERV_SSH_USER", kind.LOGIN, "") or None
AUTOSERV_SSH_PORT = setting("AUTOSERV_SSH_PORT", kind.INT, 22, min=1, max=65535)
AUTOSERV_SSH_KEY = setting("AUTOSERV_SSH_KEY", kind.OPTIONAL_PATH, "") or None
AUTOSERV_CONNECT_TIMEOUT = setting("AUTOSERV_CONNECT_TIMEOUT", kind.NUMBER, 10.0, min=0.1, max=3600)
AUTOSERV_COMMAND_TIMEOUT = setting("AUTOSERV_COMMAND_TIMEOUT", kind.NUMBER, 3600.0, min=1, max=604_800)
AUTOSERV_REBOOT_TIMEOUT = setting("AUTOSERV_REBOOT_TIMEOUT", kind.NUMBER, 600.0, min=1, max=86_400)
AUTOSERV_PROVISION_COMMAND = setting("AUTOSERV_PROVISION_COMMAND", kind.ONE_LINE, "") or None
AUTOSERV_VERIFY_LABEL_COMMANDS = setting("AUTOSERV_VERIFY_LABEL_COMMANDS", kind.LABEL_COMMANDS, {})
# How long autoserv's start-up database reads retry a database it cannot reach.
AUTOSERV_DB_RETRY_SECONDS = setting("AUTOSERV_DB_RETRY_SECONDS", kind.NUMBER, 60.0, min=0, max=3600)

# AFE defaults for new jobs and hosts (global_config [AUTOTEST_WEB], [HOSTS]).
JOB_TIMEOUT_MINS_DEFAULT = setting("JOB_TIMEOUT_MINS_DEFAULT", kind.INT, 1440, min=1, max=525_600)
JOB_MAX_RUNTIME_MINS_DEFAULT = setting("JOB_MAX_RUNTIME_MINS_DEFAULT", kind.INT, 4320, min=1, max=525_600)
# afe.models.Protection: 0 No protection .. 4 Do not verify.
DEFAULT_HOST_PROTECTION = setting("DEFAULT_HOST_PROTECTION", kind.INT, 0, min=0, max=4)
# Limits of one job: host queue entries (hosts, one-time hosts and metahost counts together)
# and the control file's size in bytes of UTF-8.
JOB_MAX_ENTRIES = setting("JOB_MAX_ENTRIES", kind.INT, 1000, min=1, max=100_000)
CONTROL_FILE_MAX_BYTES = setting("CONTROL_FILE_MAX_BYTES", kind.INT, 1_048_576, min=1, max=16_777_216)

# Who an RPC caller is (afe.identity): whether REMOTE_USER set by a front end is
# trusted, and where AFE's bare `Authorization: <login>` is (loopback, always, never).
RPC_TRUST_REMOTE_USER = setting("RPC_TRUST_REMOTE_USER", kind.BOOL, False)
RPC_TRUST_LOGIN_HEADER = setting("RPC_TRUST_LOGIN_HEADER", kind.LOWER, "loopback",
                                 choices=("loopback", "always", "never"))

# Scheduler knobs (global_config [SCHEDULER]); see scheduler.config.SchedulerConfig.
SCHEDULER = {
    "tick_seconds": setting("SCHEDULER_TICK_SECONDS", kind.NUMBER, 0.5, min=0.01, max=3600),
    "max_processes_per_drone": setting("SCHEDULER_MAX_PROCESSES_PER_DRONE", kind.INT, 1000, min=1, max=100_000),
    "max_parse_processes": setting("SCHEDULER_MAX_PARSE_PROCESSES", kind.INT, 100, min=1, max=100_000),
    "pidfile_timeout_minutes": setting("SCHEDULER_PIDFILE_TIMEOUT_MINUTES", kind.INT, 300, min=1, max=10_080),
    "clean_interval_minutes": setting("SCHEDULER_CLEAN_INTERVAL_MINUTES", kind.INT, 5, min=1, max=1440),
    # 0: dead hosts are never re-verified.
    "reverify_period_minutes": setting("SCHEDULER_REVERIFY_PERIOD_MINUTES", kind.INT, 30, min=0, max=10_080),
    # 0: all of them.
    "reverify_max_hosts_at_once": setting("SCHEDULER_REVERIFY_MAX_HOSTS_AT_ONCE", kind.INT, 30, min=0, max=100_000),
    "max_repair_limit": setting("SCHEDULER_MAX_REPAIR_LIMIT", kind.INT, 2, min=0, max=100),
    "max_provision_retries": setting("SCHEDULER_MAX_PROVISION_RETRIES", kind.INT, 0, min=0, max=100),
    "notify_email": setting("SCHEDULER_NOTIFY_EMAIL", kind.EMAILS, []),
    "notify_email_statuses": setting("SCHEDULER_NOTIFY_EMAIL_STATUSES", kind.STATUSES, "Completed,Failed,Aborted"),
    "base_url": setting("SCHEDULER_BASE_URL", kind.HTTP_URL, "http://localhost:8000/afe/"),
    "default_drone_set": setting("SCHEDULER_DEFAULT_DRONE_SET", kind.NAME, ""),
    # Prometheus metrics served by run_scheduler on this port (unset: not served).
    "metrics_port": setting("SCHEDULER_METRICS_PORT", kind.INT, None, min=1, max=65_535),
    "metrics_address": setting("SCHEDULER_METRICS_ADDRESS", kind.NAME, "0.0.0.0"),
    # Between ticks, how often run_scheduler looks for new work to tick early (0: never).
    "wake_seconds": setting("SCHEDULER_WAKE_SECONDS", kind.NUMBER, 0.05, min=0, max=60),
    # How often run_scheduler logs its one-line summary at INFO (idle ticks log at DEBUG).
    "summary_minutes": setting("SCHEDULER_SUMMARY_MINUTES", kind.NUMBER, 5.0, min=0.01, max=1440),
}

# Drone knobs (drones.config.DroneConfig; the local drone and Celery drones,
# `celery -A drones worker -Q drone.NAME`, read them; the scheduler too).
DRONES = {
    # The capacity a Celery worker reports when it registers in afe_drones.
    "max_processes": setting("DRONE_MAX_PROCESSES", kind.INT, SCHEDULER["max_processes_per_drone"],
                             min=1, max=100_000),
    "heartbeat_seconds": setting("DRONE_HEARTBEAT_SECONDS", kind.NUMBER, 5.0, min=0.05, max=3600),
    "heartbeat_timeout_seconds": setting("DRONE_HEARTBEAT_TIMEOUT_SECONDS", kind.NUMBER, 30.0, min=0.1, max=86_400),
    "lost_after_seconds": setting("DRONE_LOST_AFTER_SECONDS", kind.NUMBER, 120.0, min=0.2, max=86_400),
    "lease_seconds": setting("DRONE_LEASE_SECONDS", kind.NUMBER, 60.0, min=0.1, max=86_400),
    "dead_after_seconds": setting("DRONE_DEAD_AFTER_SECONDS", kind.NUMBER, 60.0, min=0.1, max=86_400),
    "kill_grace_seconds": setting("DRONE_KILL_GRACE_SECONDS", kind.NUMBER, 30.0, min=0, max=3600),
    "relaunch_after_seconds": setting("DRONE_RELAUNCH_AFTER_SECONDS", kind.NUMBER, 60.0, min=0.1, max=86_400),
    "results_shared": setting("DRONE_RESULTS_SHARED", kind.BOOL, True),
    "visibility_timeout_seconds": setting("DRONE_VISIBILITY_TIMEOUT_SECONDS", kind.INT, 300, min=10, max=604_800),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": setting("LOG_LEVEL", kind.UPPER, "INFO", choices=kind.LOG_LEVELS)},
}
