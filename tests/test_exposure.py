"""What mami shows and lets act, and to whom: security headers on every
page, staff act on others' jobs only through the admin, and the demo login
exists only in the embedded default."""

import io

import pytest
from django.core.management import call_command

from imagejobs.models import ImageJob, Status
from tests.helpers import HTMX, PASSWORD, make_conversation, request_picture

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("staff", password=PASSWORD)


def test_pages_carry_the_policy_headers(client, alice):
    client.force_login(alice)
    response = client.get("/conversations/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "microphone=()" in response["Permissions-Policy"]
    assert "hx-on" not in response.content.decode()
    assert "onchange=" not in response.content.decode()


def test_staff_cannot_act_on_others_jobs_through_the_chat_or_the_api(client, alice, staff):
    job = request_picture(make_conversation(alice), "alice's fox")
    client.force_login(staff)
    assert client.post(f"/conversations/jobs/{job.id}/cancel/", **HTMX).status_code == 404
    assert client.delete(f"/api/image/job/{job.id}/cancel").status_code in (403, 404)
    assert ImageJob.objects.get(pk=job.pk).status == Status.QUEUED
    # Through the admin they can, and the log says who did it.
    response = client.post(
        "/admin/imagejobs/imagejob/",
        {"action": "cancel_jobs", "_selected_action": [str(job.id)]},
    )
    assert response.status_code == 302
    assert ImageJob.objects.get(pk=job.pk).transitions.last().reason == "canceled by staff (staff)"


def test_the_demo_login_is_a_plain_user_unless_asked(tmp_path, settings, django_user_model):
    out = io.StringIO()
    call_command("ensure_demo_user", "--login-file", str(tmp_path / "login"), stdout=out)
    demo = django_user_model.objects.get(username="demo")
    assert not demo.is_staff
    assert not demo.is_superuser
    assert out.getvalue().startswith("Login: demo / ")


def test_the_demo_login_can_be_an_admin_when_asked(tmp_path, settings, django_user_model):
    call_command(
        "ensure_demo_user",
        "--superuser",
        "--login-file",
        str(tmp_path / "login"),
        stdout=io.StringIO(),
    )
    assert django_user_model.objects.get(username="demo").is_superuser


def test_no_demo_login_on_a_site_that_has_accounts(tmp_path, django_user_model):
    django_user_model.objects.create_user("alice", password="a long passphrase")
    out = io.StringIO()
    call_command("ensure_demo_user", "--login-file", str(tmp_path / "login"), stdout=out)
    assert not django_user_model.objects.filter(username="demo").exists()
    assert not (tmp_path / "login").exists()
    assert out.getvalue().startswith("Log in with your account")


def test_the_demo_password_file_is_private(tmp_path, db):
    call_command("ensure_demo_user", "--login-file", str(tmp_path / "login"), stdout=io.StringIO())
    assert (tmp_path / "login").stat().st_mode & 0o777 == 0o600


def test_asking_later_makes_the_existing_demo_login_an_admin(tmp_path, settings, django_user_model):
    login = str(tmp_path / "login")
    out = io.StringIO()
    call_command("ensure_demo_user", "--login-file", login, stdout=out)
    assert "MAMI_DEMO_SUPERUSER=1" in out.getvalue()
    call_command("ensure_demo_user", "--superuser", "--login-file", login, stdout=io.StringIO())
    assert django_user_model.objects.get(username="demo").is_superuser
