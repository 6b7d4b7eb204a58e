"""The backups page in the admin, against the archives opskit made for the web project."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.test import Client, TestCase
from support.waiting import wait_for

from opskit.web import actions, project

PAGE = "/admin/opskit/backups/"


def wait_finished(kind: str, timeout: float = 90) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status = actions.status(project.config(), kind)
        return status if status is not None and not status["running"] else None

    return wait_for(finished, f"opskit {kind} to finish", timeout, every=0.1)


class BackupsPageTests(TestCase):
    """One superuser, a staff user who may only look, and one who may not even look."""

    @classmethod
    def setUpTestData(cls) -> None:
        # Models are imported here: the app registry is ready only once the session set it up.
        from django.contrib.auth.models import Permission, User

        cls.admin = User.objects.create_superuser("root", password="pw")
        cls.viewer = User.objects.create_user("viewer", is_staff=True)
        cls.viewer.user_permissions.add(Permission.objects.get(codename="view_backups"))
        cls.stranger = User.objects.create_user("stranger", is_staff=True)

    def client_for(self, user: Any, **kwargs: Any) -> Client:
        client = Client(**kwargs)
        client.force_login(user)
        return client

    def test_the_page_lists_each_archive_with_its_weekday_size_and_state(self) -> None:
        response = self.client_for(self.admin).get(PAGE)
        assert response.status_code == 200
        html = response.content.decode()
        (db,) = response.context["databases"]
        names = [row["name"] for row in db["archives"]]
        assert names
        assert all(n.endswith(".sqlite3.zst") for n in names)
        assert all(row["status"] == "verified" for row in db["archives"])
        assert sum(row["latest"] for row in db["archives"]) == 1
        for row in db["archives"]:
            assert f'data-archive="{row["name"]}"' in html
            assert row["weekday"] in html
            assert row["size_h"] in html
        assert "(latest)" in html

    def test_the_chart_shows_the_last_runs_and_the_sudden_drop(self) -> None:
        response = self.client_for(self.admin).get(PAGE)
        html = response.content.decode()
        (db,) = response.context["databases"]
        assert len(db["view"].dumps) == 8
        assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="opskit-chart"') == 1
        assert html.count('class="bar drop"') == 1
        assert 'id="drop-warning"' in html

    def test_the_last_runs_of_each_job_have_their_exit_status_and_duration(self) -> None:
        response = self.client_for(self.admin).get(PAGE)
        runs = response.context["runs"]
        assert {"backup", "verify"} <= set(runs)
        assert len(runs["backup"]) == 8
        assert all(r["run"].exit_status == 0 and r["duration"] for r in runs["backup"])

    def test_the_admin_index_links_the_page(self) -> None:
        html = self.client_for(self.admin).get("/admin/").content.decode()
        assert f'href="{PAGE}"' in html

    def test_without_the_view_permission_the_page_is_forbidden(self) -> None:
        assert self.client_for(self.stranger).get(PAGE).status_code == 403
        anonymous = Client().get(PAGE)
        assert anonymous.status_code == 302
        assert "/admin/login/" in anonymous["Location"]

    def test_a_viewer_sees_no_buttons_and_may_not_run_anything(self) -> None:
        client = self.client_for(self.viewer)
        html = client.get(PAGE).content.decode()
        assert "Run opskit check" not in html
        assert 'value="Verify"' not in html
        assert client.post(PAGE + "check/").status_code == 403
        assert client.post(PAGE + "verify/", {"database": "shop"}).status_code == 403

    def test_actions_need_a_post_with_the_csrf_token(self) -> None:
        client = self.client_for(self.admin, enforce_csrf_checks=True)
        assert client.post(PAGE + "check/").status_code == 403
        assert self.client_for(self.admin).get(PAGE + "check/").status_code == 405

    def test_verify_runs_opskit_verify_on_a_listed_archive(self) -> None:
        client = self.client_for(self.admin)
        (db,) = client.get(PAGE).context["databases"]
        name = db["archives"][0]["name"]
        response = client.post(PAGE + "verify/", {"database": "shop", "archive": name})
        assert response.status_code == 302
        assert response["Location"] == PAGE
        status = wait_finished("verify")
        assert status["exit_status"] == 0, status["stderr_tail"]
        (verdict,) = status["result"]
        assert verdict["ok"]
        assert verdict["archive"].endswith(name)
        assert status["by"] == "root"

    def test_verify_refuses_an_archive_the_page_does_not_list(self) -> None:
        client = self.client_for(self.admin)
        before = actions.status(project.config(), "verify")
        response = client.post(
            PAGE + "verify/", {"database": "shop", "archive": "../../etc/passwd"}, follow=True
        )
        assert "No archive &#x27;../../etc/passwd&#x27; of database" in response.content.decode()
        assert actions.status(project.config(), "verify") == before

    def test_check_runs_opskit_check_and_the_page_shows_its_verdicts(self) -> None:
        client = self.client_for(self.admin)
        response = client.post(PAGE + "check/", follow=True)
        assert "opskit check started (pid" in response.content.decode().lower()
        status = wait_finished("check")
        names = {r["name"] for r in status["result"]}
        assert {"settings", "database:shop", "latest:shop"} <= names
        html = client.get(PAGE).content.decode()
        assert 'id="check-results"' in html
        assert "latest:shop" in html


def test_the_system_checks_pass_with_the_app_installed() -> None:
    call_command("check", fail_level="WARNING", verbosity=0)


def test_the_app_needs_no_new_migration() -> None:
    call_command("makemigrations", "opskit", "--check", "--dry-run", verbosity=0)
