"""Project settings, read once from the environment (and an optional ``.env``).

Every knob a user may set is listed in the README's settings table. Scheduler
knobs are collected in ``SCHEDULER``; code receives them through
``scheduler.config.SchedulerConfig`` instead of reading ``settings`` directly.
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-key-change-me-in-production")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

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
            **config.get("OPTIONS", {}),
        }
        config.setdefault("TEST", {})["CHARSET"] = "utf8mb4"
        config["TEST"]["COLLATION"] = "utf8mb4_unicode_ci"
    return config


DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'afe.sqlite3'}")
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
# AFE stores naive local datetimes ("YYYY-MM-DD HH:MM:SS"); keep that schema.
USE_TZ = False

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "admin:login"

# E-mail: per-status job mail and the operator digest go through this backend.
EMAIL_URL = env.str("EMAIL_URL", default="consolemail://")
vars().update(env.email_url_config(EMAIL_URL))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="autotest-scheduler@localhost")

# Drones: with no broker every process runs on this machine (the local drone).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")

RESULTS_DIR = Path(env.str("RESULTS_DIR", default=str(VAR_DIR / "results")))
AUTOSERV_PATH = env.str("AUTOSERV_PATH", default=str(BASE_DIR / "bin" / "autoserv"))
PARSER_PATH = env.str("PARSER_PATH", default=str(BASE_DIR / "bin" / "parse"))

# The job runner (bin/autoserv): how it reaches hosts whose `connection` attribute is not `local`.
AUTOSERV_SSH_USER = env.str("AUTOSERV_SSH_USER", default="") or None
AUTOSERV_SSH_PORT = env.int("AUTOSERV_SSH_PORT", default=22)
AUTOSERV_SSH_KEY = env.str("AUTOSERV_SSH_KEY", default="") or None
AUTOSERV_CONNECT_TIMEOUT = env.float("AUTOSERV_CONNECT_TIMEOUT", default=10.0)
AUTOSERV_COMMAND_TIMEOUT = env.float("AUTOSERV_COMMAND_TIMEOUT", default=3600.0)
AUTOSERV_REBOOT_TIMEOUT = env.float("AUTOSERV_REBOOT_TIMEOUT", default=600.0)
AUTOSERV_PROVISION_COMMAND = env.str("AUTOSERV_PROVISION_COMMAND", default="") or None
AUTOSERV_VERIFY_LABEL_COMMANDS = env.dict("AUTOSERV_VERIFY_LABEL_COMMANDS", default={})

# AFE defaults for new jobs and hosts (global_config [AUTOTEST_WEB], [HOSTS]).
JOB_TIMEOUT_MINS_DEFAULT = env.int("JOB_TIMEOUT_MINS_DEFAULT", default=1440)
JOB_MAX_RUNTIME_MINS_DEFAULT = env.int("JOB_MAX_RUNTIME_MINS_DEFAULT", default=4320)
DEFAULT_HOST_PROTECTION = env.int("DEFAULT_HOST_PROTECTION", default=0)

# Scheduler knobs (global_config [SCHEDULER]); see scheduler.config.SchedulerConfig.
SCHEDULER = {
    "tick_seconds": env.float("SCHEDULER_TICK_SECONDS", default=0.5),
    "max_processes_per_drone": env.int("SCHEDULER_MAX_PROCESSES_PER_DRONE", default=1000),
    "max_parse_processes": env.int("SCHEDULER_MAX_PARSE_PROCESSES", default=100),
    "pidfile_timeout_minutes": env.int("SCHEDULER_PIDFILE_TIMEOUT_MINUTES", default=300),
    "clean_interval_minutes": env.int("SCHEDULER_CLEAN_INTERVAL_MINUTES", default=5),
    "reverify_period_minutes": env.int("SCHEDULER_REVERIFY_PERIOD_MINUTES", default=30),
    "reverify_max_hosts_at_once": env.int("SCHEDULER_REVERIFY_MAX_HOSTS_AT_ONCE", default=30),
    "max_repair_limit": env.int("SCHEDULER_MAX_REPAIR_LIMIT", default=2),
    "max_provision_retries": env.int("SCHEDULER_MAX_PROVISION_RETRIES", default=0),
    "notify_email": env.list("SCHEDULER_NOTIFY_EMAIL", default=[]),
    "notify_email_statuses": env.str(
        "SCHEDULER_NOTIFY_EMAIL_STATUSES", default="Completed,Failed,Aborted"
    ),
    "base_url": env.str("SCHEDULER_BASE_URL", default="http://localhost:8000/afe/"),
    "default_drone_set": env.str("SCHEDULER_DEFAULT_DRONE_SET", default=""),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
