"""Deployment settings: every setting typed and range-checked, production refuses a weak key.

The subprocess tests run the real commands with an explicit environment:
every setting the reader knows (``settings.environment.NAMES``) is removed
from the test's own environment, ``ENV_FILE`` is empty (so a developer's
``.env`` is never read) unless a test names a file, and
``DJANGO_SETTINGS_MODULE`` is ``settings``.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware
from django.test import Client, RequestFactory, override_settings

from settings import environment
from settings.environment import (
    ABSOLUTE_PATH, BOOL, BROKER_URL, DATABASE_URL, EMAIL_URL, EMAILS, HOSTS, HTTP_URL, INT, LABEL_COMMANDS,
    LOGIN, NAME, NUMBER, ONE_LINE, OPTIONAL_PATH, ORIGINS, PROXY_HEADER, SECRET, SENDER, STATUSES, TEXT,
    TIME_ZONE, UPPER, allowed, read_env_file, secret_key, setting,
)

ROOT = Path(__file__).resolve().parent.parent
MANAGE = str(ROOT / "manage.py")
EXAMPLE = ROOT / "settings" / "production.env.example"
DEV_KEY = "insecure-dev-key-change-me-in-production"

#: Environment variable → (where its value ends up in django.conf.settings, its default).
DEFAULTS = {
    "ENV_FILE": (None, None),  # the file read first; its own test below
    "DEBUG": ("DEBUG", True),
    "SECRET_KEY": ("SECRET_KEY", DEV_KEY),
    "ALLOWED_HOSTS": ("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"]),
    "SECURE_SSL_REDIRECT": ("SECURE_SSL_REDIRECT", False),
    "SECURE_HSTS_SECONDS": ("SECURE_HSTS_SECONDS", 0),
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": ("SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
    "SECURE_HSTS_PRELOAD": ("SECURE_HSTS_PRELOAD", False),
    "SECURE_PROXY_SSL_HEADER": ("SECURE_PROXY_SSL_HEADER", None),
    "SESSION_COOKIE_SECURE": ("SESSION_COOKIE_SECURE", False),
    "CSRF_COOKIE_SECURE": ("CSRF_COOKIE_SECURE", False),
    "CSRF_TRUSTED_ORIGINS": ("CSRF_TRUSTED_ORIGINS", []),
    "DATABASE_URL": ("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'afe.sqlite3'}"),
    "TIME_ZONE": ("TIME_ZONE", "UTC"),
    "EMAIL_URL": ("EMAIL_URL", "consolemail://"),
    "DEFAULT_FROM_EMAIL": ("DEFAULT_FROM_EMAIL", "autotest-scheduler@localhost"),
    "CELERY_BROKER_URL": ("CELERY_BROKER_URL", ""),
    "RESULTS_DIR": ("RESULTS_DIR", str(ROOT / "var" / "results")),
    "AUTOSERV_PATH": ("AUTOSERV_PATH", str(ROOT / "bin" / "autoserv")),
    "PARSER_PATH": ("PARSER_PATH", str(ROOT / "bin" / "parse")),
    "AUTOSERV_SSH_USER": ("AUTOSERV_SSH_USER", None),
    "AUTOSERV_SSH_PORT": ("AUTOSERV_SSH_PORT", 22),
    "AUTOSERV_SSH_KEY": ("AUTOSERV_SSH_KEY", None),
    "AUTOSERV_CONNECT_TIMEOUT": ("AUTOSERV_CONNECT_TIMEOUT", 10.0),
    "AUTOSERV_COMMAND_TIMEOUT": ("AUTOSERV_COMMAND_TIMEOUT", 3600.0),
    "AUTOSERV_REBOOT_TIMEOUT": ("AUTOSERV_REBOOT_TIMEOUT", 600.0),
    "AUTOSERV_PROVISION_COMMAND": ("AUTOSERV_PROVISION_COMMAND", None),
    "AUTOSERV_VERIFY_LABEL_COMMANDS": ("AUTOSERV_VERIFY_LABEL_COMMANDS", {}),
    "AUTOSERV_DB_RETRY_SECONDS": ("AUTOSERV_DB_RETRY_SECONDS", 60.0),
    "JOB_TIMEOUT_MINS_DEFAULT": ("JOB_TIMEOUT_MINS_DEFAULT", 1440),
    "JOB_MAX_RUNTIME_MINS_DEFAULT": ("JOB_MAX_RUNTIME_MINS_DEFAULT", 4320),
    "DEFAULT_HOST_PROTECTION": ("DEFAULT_HOST_PROTECTION", 0),
    "JOB_MAX_ENTRIES": ("JOB_MAX_ENTRIES", 1000),
    "CONTROL_FILE_MAX_BYTES": ("CONTROL_FILE_MAX_BYTES", 1_048_576),
    "RPC_TRUST_REMOTE_USER": ("RPC_TRUST_REMOTE_USER", False),
    "RPC_TRUST_LOGIN_HEADER": ("RPC_TRUST_LOGIN_HEADER", "loopback"),
    "SCHEDULER_TICK_SECONDS": ("SCHEDULER.tick_seconds", 0.5),
    "SCHEDULER_MAX_PROCESSES_PER_DRONE": ("SCHEDULER.max_processes_per_drone", 1000),
    "SCHEDULER_MAX_PARSE_PROCESSES": ("SCHEDULER.max_parse_processes", 100),
    "SCHEDULER_PIDFILE_TIMEOUT_MINUTES": ("SCHEDULER.pidfile_timeout_minutes", 300),
    "SCHEDULER_CLEAN_INTERVAL_MINUTES": ("SCHEDULER.clean_interval_minutes", 5),
    "SCHEDULER_REVERIFY_PERIOD_MINUTES": ("SCHEDULER.reverify_period_minutes", 30),
    "SCHEDULER_REVERIFY_MAX_HOSTS_AT_ONCE": ("SCHEDULER.reverify_max_hosts_at_once", 30),
    "SCHEDULER_MAX_REPAIR_LIMIT": ("SCHEDULER.max_repair_limit", 2),
    "SCHEDULER_MAX_PROVISION_RETRIES": ("SCHEDULER.max_provision_retries", 0),
    "SCHEDULER_NOTIFY_EMAIL": ("SCHEDULER.notify_email", []),
    "SCHEDULER_NOTIFY_EMAIL_STATUSES": ("SCHEDULER.notify_email_statuses", "Completed,Failed,Aborted"),
    "SCHEDULER_BASE_URL": ("SCHEDULER.base_url", "http://localhost:8000/afe/"),
    "SCHEDULER_DEFAULT_DRONE_SET": ("SCHEDULER.default_drone_set", ""),
    "SCHEDULER_METRICS_PORT": ("SCHEDULER.metrics_port", None),
    "SCHEDULER_METRICS_ADDRESS": ("SCHEDULER.metrics_address", "0.0.0.0"),
    "SCHEDULER_SUMMARY_MINUTES": ("SCHEDULER.summary_minutes", 5.0),
    "SCHEDULER_WAKE_SECONDS": ("SCHEDULER.wake_seconds", 0.05),
    "DRONE_MAX_PROCESSES": ("DRONES.max_processes", 1000),
    "DRONE_HEARTBEAT_SECONDS": ("DRONES.heartbeat_seconds", 5.0),
    "DRONE_HEARTBEAT_TIMEOUT_SECONDS": ("DRONES.heartbeat_timeout_seconds", 30.0),
    "DRONE_LOST_AFTER_SECONDS": ("DRONES.lost_after_seconds", 120.0),
    "DRONE_LEASE_SECONDS": ("DRONES.lease_seconds", 60.0),
    "DRONE_DEAD_AFTER_SECONDS": ("DRONES.dead_after_seconds", 60.0),
    "DRONE_KILL_GRACE_SECONDS": ("DRONES.kill_grace_seconds", 30.0),
    "DRONE_RELAUNCH_AFTER_SECONDS": ("DRONES.relaunch_after_seconds", 60.0),
    "DRONE_RESULTS_SHARED": ("DRONES.results_shared", True),
    "DRONE_VISIBILITY_TIMEOUT_SECONDS": ("DRONES.visibility_timeout_seconds", 300),
    "LOG_LEVEL": ("LOGGING.root.level", "INFO"),
}

_DUMP = """
import json, sys, django
django.setup()
from django.conf import settings
def value(path):
    head, *rest = path.split(".")
    found = getattr(settings, head)
    for key in rest:
        found = found[key]
    return found
print(json.dumps({path: value(path) for path in sys.argv[1:]}, default=str))
"""


def scrubbed_env(**settings: str) -> dict[str, str]:
    """The test's environment without any setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in environment.NAMES}
    env.update(DJANGO_SETTINGS_MODULE="settings", ENV_FILE="")
    env.update(settings)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def manage(*args: str, **settings: str) -> subprocess.CompletedProcess:
    return run([sys.executable, MANAGE, *args], scrubbed_env(**settings))


def dump(env: dict[str, str], *paths: str) -> dict:
    done = run([sys.executable, "-c", _DUMP, *paths], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def strong_key() -> str:
    return secrets.token_urlsafe(50)


def example_env() -> dict[str, str]:
    """The example file's KEY=value lines, as a deployment would load them."""
    values = {}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def assert_refused(done: subprocess.CompletedProcess, name: str) -> str:
    """One line ``settings: NAME ...`` on stderr, exit status 1, no traceback; returns the line."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"settings: {name} "), lines[0]
    assert done.stdout == ""
    return lines[0]


# -- the defaults --------------------------------------------------------------------------------


def test_every_setting_read_has_a_documented_default_here():
    assert set(environment.NAMES) == set(DEFAULTS)


def test_with_no_settings_at_all_the_defaults_are_as_before():
    paths = [path for path, _ in DEFAULTS.values() if path]
    expected = {path: default for path, default in DEFAULTS.values() if path}
    assert dump(scrubbed_env(), *paths) == expected


def test_with_no_settings_at_all_manage_py_check_passes():
    done = manage("check")
    assert done.returncode == 0, done.stderr
    assert "settings:" not in done.stderr


def test_debug_off_with_a_strong_key_starts():
    done = manage("check", DEBUG="false", SECRET_KEY=strong_key())
    assert done.returncode == 0, done.stderr


# -- production: check --deploy --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["environment", "ENV_FILE"])
def test_the_production_example_passes_check_deploy(how):
    key = strong_key()
    if how == "environment":
        env = scrubbed_env(**{**example_env(), "SECRET_KEY": key})
    else:  # the file itself, read by the settings; the environment's SECRET_KEY wins over its placeholder
        env = scrubbed_env(ENV_FILE=str(EXAMPLE), SECRET_KEY=key)
    done = run([sys.executable, MANAGE, "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr and "identified no issues" in done.stdout
    values = dump(env, "DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER",
                  "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS",
                  "ALLOWED_HOSTS", "X_FRAME_OPTIONS", "SECURE_CONTENT_TYPE_NOSNIFF", "SESSION_COOKIE_HTTPONLY")
    assert values == {
        "DEBUG": False, "SECRET_KEY": key, "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"], "SECURE_HSTS_SECONDS": 31_536_000,
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
        "CSRF_TRUSTED_ORIGINS": ["https://afe.example.com"], "ALLOWED_HOSTS": ["afe.example.com"],
        "X_FRAME_OPTIONS": "DENY", "SECURE_CONTENT_TYPE_NOSNIFF": True, "SESSION_COOKIE_HTTPONLY": True,
    }


def test_the_example_placeholder_key_is_refused():
    assert_refused(run([sys.executable, MANAGE, "check"], scrubbed_env(ENV_FILE=str(EXAMPLE))), "SECRET_KEY")


def test_the_default_settings_fail_check_deploy():
    """Without the production settings check --deploy complains (DEBUG on, no HTTPS)."""
    done = manage("check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode != 0
    assert "security.W018" in done.stderr  # DEBUG
    assert "security.W008" in done.stderr  # SECURE_SSL_REDIRECT


# -- DEBUG=false needs a strong SECRET_KEY, for every command --------------------------------------


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    control = tmp_path / "control"
    control.write_text("pass\n")
    (tmp_path / "results").mkdir()
    return {
        "check": [sys.executable, MANAGE, "check"],
        "migrate": [sys.executable, MANAGE, "migrate", "--no-input"],
        "run_scheduler": [sys.executable, MANAGE, "run_scheduler", "--ticks", "1"],
        "runserver": [sys.executable, MANAGE, "runserver", "--noreload", "127.0.0.1:0"],
        "autoserv": [str(ROOT / "bin" / "autoserv"), "-r", str(tmp_path / "autoserv"), "-m", "localhost",
                     "-n", str(control)],
        "parse": [str(ROOT / "bin" / "parse"), "-o", str(tmp_path / "results")],
    }


@pytest.mark.parametrize("command", ["check", "migrate", "run_scheduler", "runserver", "autoserv", "parse"])
def test_debug_off_without_a_secret_key_every_command_refuses(tmp_path, command):
    # A private database, in case a command did start.
    env = scrubbed_env(DEBUG="false", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    line = assert_refused(run(_commands(tmp_path)[command], env, cwd=tmp_path), "SECRET_KEY")
    assert "is not set" in line
    assert not (tmp_path / "db.sqlite3").exists()


@pytest.mark.parametrize("key, why", [
    ("", "is not set"),
    (DEV_KEY, "is the development key"),
    ("x" * 20 + "abcd" * 7, "is too weak"),  # 48 characters
    ("abcd" * 13, "is too weak"),  # 52 characters, 4 different ones
    ("django-insecure-" + secrets.token_urlsafe(50), "is too weak"),
])
def test_debug_off_with_a_weak_secret_key_refuses(key, why):
    line = assert_refused(manage("check", DEBUG="0", SECRET_KEY=key), "SECRET_KEY")
    assert why in line
    if key:
        assert key not in line


# -- a bad setting stops every command with one line naming it -------------------------------------


BAD = [
    ("SCHEDULER_TICK_SECONDS", "abc"),
    ("SCHEDULER_TICK_SECONDS", "0"),
    ("SCHEDULER_TICK_SECONDS", "nan"),
    ("SCHEDULER_TICK_SECONDS", "inf"),
    ("SCHEDULER_MAX_PROCESSES_PER_DRONE", "0"),
    ("SCHEDULER_MAX_PROCESSES_PER_DRONE", "100001"),
    ("SCHEDULER_MAX_PARSE_PROCESSES", "0"),
    ("SCHEDULER_PIDFILE_TIMEOUT_MINUTES", "0"),
    ("SCHEDULER_CLEAN_INTERVAL_MINUTES", "0"),
    ("SCHEDULER_REVERIFY_PERIOD_MINUTES", "-1"),
    ("SCHEDULER_REVERIFY_MAX_HOSTS_AT_ONCE", "1.5"),
    ("SCHEDULER_MAX_REPAIR_LIMIT", "lots"),
    ("SCHEDULER_MAX_PROVISION_RETRIES", "-1"),
    ("SCHEDULER_NOTIFY_EMAIL", "ops@lab,not an address"),
    ("SCHEDULER_NOTIFY_EMAIL_STATUSES", "Completed,Done"),
    ("SCHEDULER_BASE_URL", "localhost:8000/afe/"),
    ("SCHEDULER_DEFAULT_DRONE_SET", " padded "),
    ("SCHEDULER_METRICS_PORT", "0"),
    ("SCHEDULER_METRICS_PORT", "http"),
    ("SCHEDULER_SUMMARY_MINUTES", "0"),
    ("SCHEDULER_WAKE_SECONDS", "-0.1"),
    ("AUTOSERV_SSH_PORT", "70000"),
    ("AUTOSERV_SSH_PORT", "0"),
    ("AUTOSERV_SSH_USER", "-oProxyCommand=evil"),
    ("AUTOSERV_SSH_KEY", "keys/lab"),
    ("AUTOSERV_CONNECT_TIMEOUT", "0"),
    ("AUTOSERV_COMMAND_TIMEOUT", "-5"),
    ("AUTOSERV_REBOOT_TIMEOUT", "forever"),
    ("AUTOSERV_PROVISION_COMMAND", "provision\nrm -rf /"),
    ("AUTOSERV_VERIFY_LABEL_COMMANDS", "board:x"),
    ("AUTOSERV_DB_RETRY_SECONDS", "-1"),
    ("AUTOSERV_DB_RETRY_SECONDS", "3601"),
    ("DEBUG", "flase"),
    ("DEBUG", ""),
    ("SECURE_SSL_REDIRECT", "maybe"),
    ("SECURE_HSTS_SECONDS", "-1"),
    ("SECURE_HSTS_SECONDS", "63072001"),
    ("SECURE_HSTS_PRELOAD", "2"),
    ("SECURE_PROXY_SSL_HEADER", "X Forwarded Proto"),
    ("SESSION_COOKIE_SECURE", "yes please"),
    ("CSRF_TRUSTED_ORIGINS", "afe.example.com"),
    ("CSRF_TRUSTED_ORIGINS", "https://afe.example.com/afe/"),
    ("ALLOWED_HOSTS", "https://afe.example.com"),
    ("ALLOWED_HOSTS", "afe.example.com:8000"),
    ("ALLOWED_HOSTS", ""),
    ("DATABASE_URL", "postgres://x"),
    ("DATABASE_URL", "sqlite:///relative.sqlite3"),
    ("DATABASE_URL", "sqlite://:memory:"),
    ("DATABASE_URL", "mysql://root@127.0.0.1:port/h3"),
    ("RESULTS_DIR", "relative/path"),
    ("AUTOSERV_PATH", "bin/autoserv"),
    ("PARSER_PATH", "parse"),
    ("TIME_ZONE", "Mars/Base"),
    ("TIME_ZONE", "../../etc/passwd"),
    ("EMAIL_URL", "http://mail.example.com"),
    ("DEFAULT_FROM_EMAIL", "nobody"),
    ("CELERY_BROKER_URL", "amqp://x"),
    ("JOB_MAX_ENTRIES", "0"),
    ("JOB_MAX_ENTRIES", "100001"),
    ("CONTROL_FILE_MAX_BYTES", "0"),
    ("CONTROL_FILE_MAX_BYTES", "16777217"),
    ("JOB_TIMEOUT_MINS_DEFAULT", "0"),
    ("JOB_MAX_RUNTIME_MINS_DEFAULT", "525601"),
    ("DEFAULT_HOST_PROTECTION", "5"),
    ("RPC_TRUST_REMOTE_USER", "sometimes"),
    ("RPC_TRUST_LOGIN_HEADER", "sometimes"),
    ("LOG_LEVEL", "LOUD"),
    ("ENV_FILE", "relative/.env"),
    ("ENV_FILE", "/nonexistent/afe.env"),
]


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_a_bad_setting_stops_the_command_with_one_line_naming_it(name, value):
    assert_refused(manage("check", **{name: value}), name)


def test_a_bad_setting_also_stops_the_scheduler_and_the_runners(tmp_path):
    env = scrubbed_env(SCHEDULER_TICK_SECONDS="0", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    commands = _commands(tmp_path)
    for command in ("run_scheduler", "autoserv", "parse"):
        line = assert_refused(run(commands[command], env, cwd=tmp_path), "SCHEDULER_TICK_SECONDS")
        assert line == "settings: SCHEDULER_TICK_SECONDS must be a number between 0.01 and 3600, not '0'"


def test_a_database_password_is_not_repeated_in_the_error():
    line = assert_refused(manage("check", DATABASE_URL="mysql://afe:hunter2@db.lab:port/afe"), "DATABASE_URL")
    assert "hunter2" not in line and "afe:***@db.lab" in line


def test_a_bad_setting_in_the_env_file_is_named_and_the_environment_wins(tmp_path):
    env_file = tmp_path / "afe.env"
    env_file.write_text("# a comment\nSCHEDULER_MAX_REPAIR_LIMIT=lots\nJOB_MAX_ENTRIES=7\n")
    done = run([sys.executable, MANAGE, "check"], scrubbed_env(ENV_FILE=str(env_file)))
    assert assert_refused(done, "SCHEDULER_MAX_REPAIR_LIMIT").endswith("not 'lots'")
    env = scrubbed_env(ENV_FILE=str(env_file), SCHEDULER_MAX_REPAIR_LIMIT="3")
    assert dump(env, "SCHEDULER.max_repair_limit", "JOB_MAX_ENTRIES", "ENV_FILE") == {
        "SCHEDULER.max_repair_limit": 3, "JOB_MAX_ENTRIES": 7, "ENV_FILE": str(env_file)}


def test_good_values_are_read():
    env = scrubbed_env(
        DEBUG="off", SECRET_KEY=strong_key(), SCHEDULER_TICK_SECONDS="2.5", AUTOSERV_SSH_PORT=" 2222 ",
        AUTOSERV_SSH_USER="lab", AUTOSERV_SSH_KEY="/keys/lab", ALLOWED_HOSTS="afe.lab, .example.com,[::1]",
        SCHEDULER_NOTIFY_EMAIL="ops@lab, oncall@example.com", SCHEDULER_NOTIFY_EMAIL_STATUSES="all",
        AUTOSERV_VERIFY_LABEL_COMMANDS="board:x=check-x,pool:=check-pool", LOG_LEVEL="debug",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", CELERY_BROKER_URL="redis://broker:6379/0",
        DATABASE_URL="mysql://root@127.0.0.1:3306/h3", TIME_ZONE="Europe/Berlin", JOB_MAX_ENTRIES="100000",
        AUTOSERV_DB_RETRY_SECONDS="0", RPC_TRUST_LOGIN_HEADER="Never", DEFAULT_FROM_EMAIL="Autotest <a@lab>",
    )
    assert dump(env, "DEBUG", "SCHEDULER.tick_seconds", "AUTOSERV_SSH_PORT", "AUTOSERV_SSH_USER", "AUTOSERV_SSH_KEY",
                "ALLOWED_HOSTS", "SCHEDULER.notify_email", "SCHEDULER.notify_email_statuses",
                "AUTOSERV_VERIFY_LABEL_COMMANDS", "LOGGING.root.level", "SECURE_PROXY_SSL_HEADER",
                "CELERY_BROKER_URL", "DATABASES.default.HOST", "TIME_ZONE", "JOB_MAX_ENTRIES",
                "AUTOSERV_DB_RETRY_SECONDS", "RPC_TRUST_LOGIN_HEADER", "DEFAULT_FROM_EMAIL") == {
        "DEBUG": False, "SCHEDULER.tick_seconds": 2.5, "AUTOSERV_SSH_PORT": 2222, "AUTOSERV_SSH_USER": "lab",
        "AUTOSERV_SSH_KEY": "/keys/lab", "ALLOWED_HOSTS": ["afe.lab", ".example.com", "[::1]"],
        "SCHEDULER.notify_email": ["ops@lab", "oncall@example.com"], "SCHEDULER.notify_email_statuses": "all",
        "AUTOSERV_VERIFY_LABEL_COMMANDS": {"board:x": "check-x", "pool:": "check-pool"},
        "LOGGING.root.level": "DEBUG", "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CELERY_BROKER_URL": "redis://broker:6379/0", "DATABASES.default.HOST": "127.0.0.1",
        "TIME_ZONE": "Europe/Berlin", "JOB_MAX_ENTRIES": 100000, "AUTOSERV_DB_RETRY_SECONDS": 0.0,
        "RPC_TRUST_LOGIN_HEADER": "never", "DEFAULT_FROM_EMAIL": "Autotest <a@lab>",
    }


# -- HTTPS redirect: pages yes, the JSON-RPC endpoints never ---------------------------------------


def https_redirect(path: str) -> str | None:
    """Where SecurityMiddleware sends a plain-HTTP POST of ``path`` with SECURE_SSL_REDIRECT on."""
    with override_settings(SECURE_SSL_REDIRECT=True):
        middleware = SecurityMiddleware(lambda request: HttpResponse())
    request = RequestFactory().post("/")
    request.path = request.path_info = path  # as a server passes "//afe/...", which the test client cannot
    response = middleware.process_request(request)
    return None if response is None else response["Location"]


@pytest.mark.parametrize("path", ["/afe/server/rpc/", "/afe/server/rpc", "//afe/server/rpc/",
                                  "/afe/server/noauth/rpc/", "/new_tko/server/rpc/", "/new_tko/server/noauth/rpc"])
def test_the_rpc_endpoints_are_never_redirected_to_https(path):
    assert https_redirect(path) is None


@pytest.mark.parametrize("path", ["/afe/server/admin/", "/afe/server/rpc/x", "/afe/server/rpc_doc", "/"])
def test_other_paths_are_redirected_to_https(path):
    assert https_redirect(path) == f"https://testserver{path}"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/afe/server/admin/", "/afe/server/admin/login/", "/"])
def test_pages_and_the_admin_are_redirected_to_https(path):
    with override_settings(SECURE_SSL_REDIRECT=True):
        response = Client().get(path)
    assert response.status_code == 301
    assert response["Location"] == f"https://testserver{path}"


# -- the reader, in process ------------------------------------------------------------------------


def read(kind, value, default=None, **limits):
    return setting("X_SETTING", kind, default, env={"X_SETTING": value}, **limits)


def refusal(kind, value, **limits) -> str:
    with pytest.raises(SystemExit) as stopped:
        read(kind, value, **limits)
    message = str(stopped.value.code)
    assert "\n" not in message and message.startswith("settings: X_SETTING must be ")
    return message


def test_unset_is_the_default_and_is_not_recorded():
    before = list(environment.NAMES)
    assert setting("X_UNSET", INT, 7, env={}, min=1, max=2) == 7  # the default is the project's own
    assert environment.NAMES == before


@pytest.mark.parametrize("text, value", [("true", True), ("Yes", True), (" on ", True), ("1", True),
                                         ("false", False), ("NO", False), ("off", False), ("0", False)])
def test_bools_are_strict(text, value):
    assert read(BOOL, text) is value


@pytest.mark.parametrize("text", ["flase", "", "2", "y", "enabled"])
def test_a_word_that_is_not_a_bool_is_refused(text):
    assert refusal(BOOL, text) == f"settings: X_SETTING must be true or false, not {text!r}"


def test_numbers_and_their_ranges():
    assert read(INT, " 42 ", min=1, max=100) == 42
    assert read(NUMBER, "0.01", min=0.01, max=3600) == 0.01
    assert read(NUMBER, "3600", min=0.01, max=3600) == 3600.0
    assert refusal(INT, "1.5", min=1, max=10) == "settings: X_SETTING must be an integer between 1 and 10, not '1.5'"
    assert refusal(NUMBER, "0.001", min=0.01, max=3600) == (
        "settings: X_SETTING must be a number between 0.01 and 3600, not '0.001'")
    assert refusal(INT, "63072001", min=0, max=63_072_000).startswith(
        "settings: X_SETTING must be an integer between 0 and 63072000")
    assert refusal(INT, "-1", min=0) == "settings: X_SETTING must be an integer of at least 0, not '-1'"
    for text in ("nan", "inf", "-inf", "", "1e400x"):
        refusal(NUMBER, text, min=0, max=10)


def test_choices():
    assert read(UPPER, "warning", choices=environment.LOG_LEVELS) == "WARNING"
    assert refusal(UPPER, "loud", choices=environment.LOG_LEVELS) == (
        "settings: X_SETTING must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'loud'")


def test_a_long_value_is_cut_and_a_control_character_is_escaped():
    message = refusal(INT, "9" * 500 + "x")
    assert len(message) < 200 and message.endswith("...'")
    assert refusal(INT, "1\n2").endswith(r"not '1\n2'")


def test_lists_name_the_bad_item():
    assert read(HOSTS, "a.example.com, ,*, .lab,[::1],127.0.0.1") == [
        "a.example.com", "*", ".lab", "[::1]", "127.0.0.1"]
    assert refusal(HOSTS, "ok.lab,https://bad").endswith("not 'https://bad'")
    refusal(HOSTS, " , ")
    assert read(ORIGINS, "https://afe.lab,http://afe.lab:8000,https://*.example.com") == [
        "https://afe.lab", "http://afe.lab:8000", "https://*.example.com"]
    assert read(ORIGINS, "") == []
    for bad in ("afe.lab", "ftp://afe.lab", "https://afe.lab/afe", "https://afe.lab:99999", "https://u@afe.lab"):
        assert refusal(ORIGINS, f"https://ok.lab,{bad}").endswith(f"not {bad!r}")
    assert read(EMAILS, "ops@lab, a.b+c@example.com") == ["ops@lab", "a.b+c@example.com"]
    assert read(EMAILS, "") == []
    assert refusal(EMAILS, "ops@lab,@lab").endswith("not '@lab'")


def test_addresses_urls_and_paths():
    assert read(SENDER, "Autotest <autotest@lab>") == "Autotest <autotest@lab>"
    refusal(SENDER, "autotest")
    assert read(HTTP_URL, "https://afe.lab/afe/") == "https://afe.lab/afe/"
    for bad in ("afe.lab/afe/", "ftp://afe.lab/", "http://", "http://a b/"):
        refusal(HTTP_URL, bad)
    assert read(ABSOLUTE_PATH, "/srv/results") == "/srv/results"
    assert read(ABSOLUTE_PATH, "~/results") == os.path.expanduser("~/results")
    for bad in ("results", "./results", "", "/a\0b"):
        refusal(ABSOLUTE_PATH, bad)
    assert read(OPTIONAL_PATH, "") == ""
    refusal(OPTIONAL_PATH, "id_rsa")
    assert read(ONE_LINE, " provision {label} ") == "provision {label}"
    assert read(ONE_LINE, "") == ""
    refusal(ONE_LINE, "a\nb")
    assert read(LOGIN, "lab.user") == "lab.user" and read(LOGIN, "") == ""
    for bad in ("-oProxyCommand=x", "a b", "x" * 65):
        refusal(LOGIN, bad)
    assert read(NAME, "") == "" and read(NAME, "lab west") == "lab west"
    for bad in (" lab", "a\tb", "x" * 256):
        refusal(NAME, bad)


def test_database_email_and_broker_urls():
    for good in ("sqlite:////srv/afe.sqlite3", "mysql://afe:pw@db.lab:3306/afe", "mysql://root@127.0.0.1/h3"):
        assert read(DATABASE_URL, good) == good
    for bad in ("postgres://x/y", "sqlite:///afe.sqlite3", "sqlite://:memory:", "mysql://db.lab", "mysql:///afe",
                "mysql://root@db:port/afe", "afe.sqlite3"):
        refusal(DATABASE_URL, bad)
    assert "s3cret" not in refusal(DATABASE_URL, "mysql://afe:s3cret@db.lab:port/afe")
    for good in ("consolemail://", "smtp://user:pw@mail:25", "smtp+tls://mail:587", "dummymail://"):
        assert read(EMAIL_URL, good) == good
    for bad in ("http://mail", "mail.lab", ""):
        refusal(EMAIL_URL, bad)
    for good in ("", "redis://broker:6379/0", "rediss://:pw@broker:6380/1"):
        assert read(BROKER_URL, good) == good
    for bad in ("amqp://x", "broker:6379", "redis://broker:port/0"):
        refusal(BROKER_URL, bad)


def test_time_zones_statuses_label_commands_and_proxy_headers():
    assert read(TIME_ZONE, "Europe/Berlin") == "Europe/Berlin"
    for bad in ("Mars/Base", "", "/etc/localtime", "../etc/passwd"):
        refusal(TIME_ZONE, bad)
    assert read(STATUSES, "Completed, failed;ABORTED") == "Completed, failed;ABORTED"
    assert read(STATUSES, "all") == "all"
    assert refusal(STATUSES, "Completed,Done").endswith("not 'Done'")
    assert read(LABEL_COMMANDS, "board:x=check-x --fast, pool:=check-pool") == {
        "board:x": "check-x --fast", "pool:": "check-pool"}
    assert read(LABEL_COMMANDS, "") == {}
    for bad in ("board:x", "=cmd", "board:x="):
        assert refusal(LABEL_COMMANDS, f"a=b,{bad}").endswith(f"not {bad!r}")
    assert read(PROXY_HEADER, "HTTP_X_FORWARDED_PROTO") == ("HTTP_X_FORWARDED_PROTO", "https")
    assert read(PROXY_HEADER, "x-forwarded-proto") == ("HTTP_X_FORWARDED_PROTO", "https")
    assert read(PROXY_HEADER, "") is None
    refusal(PROXY_HEADER, "X Forwarded")


def test_entry_statuses_are_the_models():
    from afe.models import HostQueueEntry

    assert environment.ENTRY_STATUSES == tuple(HostQueueEntry.Status.values)


def test_the_secret_key_rule():
    strong = strong_key()
    assert secret_key(True, DEV_KEY, env={}) == DEV_KEY
    assert secret_key(True, DEV_KEY, env={"SECRET_KEY": "short"}) == "short"
    assert secret_key(True, DEV_KEY, env={"SECRET_KEY": ""}) == DEV_KEY  # Django refuses an empty key
    assert secret_key(False, DEV_KEY, env={"SECRET_KEY": strong}) == strong
    for key, why in [(None, "is not set"), ("  ", "is not set"), (DEV_KEY, "development key"),
                     ("a1" * 24, "too weak"), ("abcd" * 20, "too weak"), ("django-insecure-" + strong, "too weak")]:
        with pytest.raises(SystemExit) as stopped:
            secret_key(False, DEV_KEY, env={} if key is None else {"SECRET_KEY": key})
        message = str(stopped.value.code)
        assert message.startswith("settings: SECRET_KEY ") and why in message and "\n" not in message
        assert not key or not key.strip() or key not in message
    assert SECRET.secret and not TEXT.secret


def test_the_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("X_FROM_FILE", "")
    monkeypatch.delenv("X_FROM_FILE")  # unset now, and unset again after the test (the file sets it)
    monkeypatch.setenv("X_KEPT", "environment")
    env_file = tmp_path / "afe.env"
    env_file.write_text("X_FROM_FILE=file\nX_KEPT=file\n")
    assert read_env_file(tmp_path / "missing.env", env={}) == ""  # a missing default file is fine
    assert read_env_file(tmp_path / "missing.env", env={"ENV_FILE": ""}) == ""
    assert read_env_file(tmp_path / "missing.env", env={"ENV_FILE": str(env_file)}) == str(env_file)
    assert (os.environ["X_FROM_FILE"], os.environ["X_KEPT"]) == ("file", "environment")
    with pytest.raises(SystemExit, match=r"^settings: ENV_FILE '/nonexistent/afe.env' cannot be read: "):
        read_env_file(tmp_path / "missing.env", env={"ENV_FILE": "/nonexistent/afe.env"})


def test_allowed_says_the_whole_range():
    assert allowed(INT, 1, 65535) == "an integer between 1 and 65535"
    assert allowed(NUMBER, 0.01, 3600) == "a number between 0.01 and 3600"
    assert allowed(UPPER, choices=("A", "B")) == "one of A, B"


def test_static_files_are_served_by_the_app_itself_without_debug(client, settings):
    """Under gunicorn there is no runserver to serve the admin's CSS; WhiteNoise does."""
    settings.DEBUG = False
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).strip()
