"""Settings from the environment, checked the way an operator deploys."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k" * 20 + "-production-secret-with-enough-entropy-0123456789",
    "ALLOWED_HOSTS": "mami.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://mami.example.com",
    "DATABASE_URL": "postgres://mami:secret@db.internal:5432/mami",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "mami.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_deploy_check_is_clean_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_debug_off_without_a_secret_key_refuses_to_start():
    env = {**PRODUCTION, "SECRET_KEY": ""}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off" in result.stderr


def test_a_bad_boolean_is_a_clear_error():
    result = manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_a_bad_retry_backoff_is_a_clear_error():
    for bad in ("1,two,4", "1,-2", "nan"):
        result = manage("check", FORGE_RETRY_BACKOFF=bad)
        assert result.returncode != 0
        assert "FORGE_RETRY_BACKOFF must be a comma-separated list of seconds" in result.stderr
        assert "ValueError" not in result.stderr
    assert manage("check", FORGE_RETRY_BACKOFF="0.5, 2").returncode == 0


def test_a_stuck_limit_within_a_jobs_heartbeat_stops_the_server_with_a_clear_error():
    result = manage("check", MAMI_STUCK_AFTER_SECONDS="8")
    assert result.returncode != 0
    assert "MAMI_STUCK_AFTER_SECONDS (8) must be more than twice" in result.stderr
    assert manage("check", MAMI_STUCK_AFTER_SECONDS="60").returncode == 0


def test_a_separate_worker_on_the_in_memory_layer_is_warned_about():
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}
    env["DEBUG"] = "1"
    result = manage("check", MAMI_EMBEDDED_WORKER="0", **env)
    assert "imagejobs.W001" in result.stderr


def test_a_chat_model_url_without_a_model_name_stops_the_server_with_a_clear_error():
    result = manage("check", CHAT_MODEL_URL="http://localhost:11434/v1", CHAT_MODEL="")
    assert result.returncode != 0
    assert "CHAT_MODEL_URL is set but CHAT_MODEL is empty" in result.stderr
    result = manage("check", CHAT_MODEL_URL="localhost:11434", CHAT_MODEL="llama3.1")
    assert result.returncode != 0
    assert "must be an http(s) URL" in result.stderr
    for good in ({"CHAT_MODEL_URL": "sim"}, {"CHAT_MODEL_URL": "http://localhost:11434/v1"}):
        result = manage("check", CHAT_MODEL="llama3.1", **good)
        assert result.returncode == 0, result.stderr


def test_the_language_cookie_is_secure_and_same_site_in_production():
    script = (
        "from django.test import Client\n"
        "answer = Client().post('/i18n/setlang/', {'language': 'tr'}, secure=True,"
        " HTTP_HOST='mami.example.com')\n"
        "print(answer.cookies['django_language'].output())\n"
    )
    result = manage("shell", "-c", script, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    cookie = result.stdout.strip().splitlines()[-1]
    assert cookie.startswith("Set-Cookie: django_language=tr;"), cookie
    for flag in ("Secure", "SameSite=Lax", "HttpOnly"):
        assert flag in cookie.split("; "), cookie
