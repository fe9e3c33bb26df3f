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
    "MAMI_TRUSTED_PROXIES": "1",
}
# What the deploy notes ask for since MAMI_URL: the address and the proxy.
ONE_URL = {
    "MAMI_URL": "https://mami.example.com",
    "MAMI_TRUSTED_PROXIES": "1",
    "DATABASE_URL": "postgres://mami:secret@db.internal:5432/mami",
    "REDIS_URL": "redis://redis.internal:6379/0",
}
SETTINGS_VARIABLES = {
    *PRODUCTION,
    *ONE_URL,
    "MAMI_DEV",
    "MAMI_DATA_DIR",
    "SECRET_KEY_FILE",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
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


def test_the_deploy_check_is_clean_for_an_https_address_and_its_proxy(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", **ONE_URL)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_deploy_check_explains_a_plain_http_address_once():
    result = manage("check", "--deploy", MAMI_URL="http://192.168.1.20:8000")
    assert result.returncode == 0, result.stderr
    # One explanation, not Django's four HTTPS warnings.
    assert "(mami.W002) MAMI_URL is http://192.168.1.20:8000" in result.stderr
    assert "network you trust" in result.stderr
    assert "security.W" not in result.stderr
    assert "1 issue (4 silenced)" in result.stderr


def test_an_https_address_without_a_named_proxy_is_warned_about():
    env = {**ONE_URL, "MAMI_TRUSTED_PROXIES": "0"}
    result = manage("check", "--deploy", **env)
    assert "(mami.W003)" in result.stderr
    assert "redirect every request to HTTPS again" in result.stderr


def test_a_bad_address_is_a_clear_error():
    for bad, says in (
        ("192.168.1.20:8000", "an http:// or https:// address"),
        ("http://mami.example.com/mami/", "the site's root address, without a path"),
        ("http://mami.example.com:99999", "an address with a valid port"),
    ):
        result = manage("check", MAMI_URL=bad)
        assert result.returncode != 0
        assert f"MAMI_URL must be {says}" in result.stderr, result.stderr


def test_what_follows_from_the_address():
    script = (
        "from django.conf import settings as s\n"
        "print(s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS, s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.DEBUG)\n"
    )
    lan = manage("shell", "-c", script, MAMI_URL="http://192.168.1.20:8000")
    assert lan.stdout.strip().splitlines()[-1] == (
        "['192.168.1.20', 'localhost', '127.0.0.1', '[::1]'] "
        "['http://192.168.1.20:8000'] False False False 0 False"
    )
    public = manage("shell", "-c", script, **ONE_URL)
    assert public.stdout.strip().splitlines()[-1] == (
        "['mami.example.com', 'localhost', '127.0.0.1', '[::1]'] "
        "['https://mami.example.com'] True True True 31536000 False"
    )
    # The individual settings still override, and MAMI_DEV turns DEBUG on.
    mixed = manage(
        "shell",
        "-c",
        script,
        MAMI_DEV="1",
        ALLOWED_HOSTS="a.example",
        SECURE_HSTS_SECONDS="60",
        **ONE_URL,
    )
    assert mixed.stdout.strip().splitlines()[-1] == (
        "['a.example'] ['https://mami.example.com'] True True True 60 True"
    )


def test_an_https_address_sends_hsts_and_secure_cookies():
    script = (
        "from django.test import Client\n"
        "client = Client()\n"
        "page = client.get('/accounts/login/', secure=True, HTTP_HOST='mami.example.com')\n"
        "print(page.status_code, page.headers['Strict-Transport-Security'])\n"
        "print(page.cookies['csrftoken'].output())\n"
        "plain = client.get('/accounts/login/', HTTP_HOST='mami.example.com')\n"
        "print(plain.status_code, plain.headers['Location'])\n"
    )
    result = manage("shell", "-c", script, **ONE_URL)
    assert result.returncode == 0, result.stderr
    hsts, cookie, redirect = result.stdout.strip().splitlines()[-3:]
    assert hsts == "200 max-age=31536000; includeSubDomains; preload"
    assert "Secure" in cookie.split("; "), cookie
    assert redirect == "301 https://mami.example.com/accounts/login/"


def test_without_a_secret_key_one_is_made_once_and_kept(tmp_path):
    data = tmp_path / "data"
    script = "from django.conf import settings\nprint(settings.SECRET_KEY)\n"
    first = manage("shell", "-c", script, MAMI_DATA_DIR=str(data))
    assert first.returncode == 0, first.stderr
    kept = (data / "secret_key").read_text().strip()
    assert first.stdout.strip().splitlines()[-1] == kept
    assert len(kept) >= 50
    assert (data / "secret_key").stat().st_mode & 0o777 == 0o600
    again = manage("shell", "-c", script, MAMI_DATA_DIR=str(data))
    assert again.stdout.strip().splitlines()[-1] == kept


def test_a_data_directory_that_cannot_hold_a_secret_is_a_clear_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    result = manage("check", MAMI_DATA_DIR=str(blocked / "data"))
    assert result.returncode != 0
    assert "No SECRET_KEY is set and none can be kept in MAMI_DATA_DIR" in result.stderr


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
