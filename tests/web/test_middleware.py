"""MaintenanceMiddleware: 503 with Retry-After while on, allow lists, JSON, the template."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings

from opskit import maintenance
from opskit.middleware import MaintenanceMiddleware


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def settings_for(state_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"STATE_DIR": str(state_dir), **extra}


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("served")


@pytest.fixture
def middleware(state_dir: Path) -> Iterator[MaintenanceMiddleware]:
    with override_settings(OPSKIT=settings_for(state_dir)):
        yield MaintenanceMiddleware(ok)


def get(mw: MaintenanceMiddleware, path: str = "/", **headers: Any) -> HttpResponse:
    return mw(RequestFactory().get(path, **headers))


def test_with_maintenance_off_every_request_is_served(middleware: MaintenanceMiddleware) -> None:
    response = get(middleware)
    assert (response.status_code, response.content) == (200, b"served")


def test_with_maintenance_on_a_page_says_so_with_503_and_retry_after(
    middleware: MaintenanceMiddleware, state_dir: Path
) -> None:
    maintenance.turn_on(state_dir, message="Moving to a bigger server.")
    response = get(middleware, "/products/1/")
    assert response.status_code == 503
    assert response["Retry-After"] == "120"
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"].startswith("text/html")
    assert b"Moving to a bigger server." in response.content
    assert b"<h1>Back soon</h1>" in response.content


def test_off_again_serves_the_next_request(
    middleware: MaintenanceMiddleware, state_dir: Path
) -> None:
    maintenance.turn_on(state_dir)
    assert get(middleware).status_code == 503
    maintenance.turn_off(state_dir)
    assert get(middleware).status_code == 200


def test_an_end_time_gives_the_seconds_left_and_ends_by_itself(
    middleware: MaintenanceMiddleware, state_dir: Path
) -> None:
    maintenance.turn_on(state_dir, until=time.time() + 600)
    response = get(middleware)
    assert 590 <= int(response["Retry-After"]) <= 600
    maintenance.turn_on(state_dir, until=time.time() - 1)
    assert get(middleware).status_code == 200


def test_api_clients_get_json(middleware: MaintenanceMiddleware, state_dir: Path) -> None:
    maintenance.turn_on(state_dir, message="Back at 3")
    response = get(middleware, "/api/orders/", HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "error": "maintenance",
        "message": "Back at 3",
        "retry_after": 120,
    }
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert get(middleware, HTTP_ACCEPT=browser)["Content-Type"].startswith("text/html")


def test_the_default_message_and_retry_after_come_from_the_settings(state_dir: Path) -> None:
    extra = {"MAINTENANCE_MESSAGE": "Upgrading.", "MAINTENANCE_RETRY_AFTER": 30}
    with override_settings(OPSKIT=settings_for(state_dir, **extra)):
        mw = MaintenanceMiddleware(ok)
    maintenance.turn_on(state_dir)
    response = get(mw)
    assert response["Retry-After"] == "30"
    assert b"Upgrading." in response.content


def test_a_path_switch_covers_only_its_urls(
    middleware: MaintenanceMiddleware, state_dir: Path
) -> None:
    maintenance.turn_on(state_dir, path="/shop/")
    assert get(middleware, "/shop/cart/").status_code == 503
    assert get(middleware, "/blog/").status_code == 200


def test_allowed_paths_are_served(state_dir: Path) -> None:
    with override_settings(
        OPSKIT=settings_for(state_dir, MAINTENANCE_ALLOW_PATHS=["/admin/", "/health/"])
    ):
        mw = MaintenanceMiddleware(ok)
    maintenance.turn_on(state_dir)
    assert get(mw, "/admin/login/").status_code == 200
    assert get(mw, "/health/").status_code == 200
    assert get(mw, "/").status_code == 503


def test_allowed_addresses_and_networks_are_served(state_dir: Path) -> None:
    allow = ["192.0.2.7", "10.0.0.0/8", "2001:db8::/32"]
    with override_settings(OPSKIT=settings_for(state_dir, MAINTENANCE_ALLOW_IPS=allow)):
        mw = MaintenanceMiddleware(ok)
    maintenance.turn_on(state_dir)
    assert get(mw, REMOTE_ADDR="192.0.2.7").status_code == 200
    assert get(mw, REMOTE_ADDR="10.20.30.40").status_code == 200
    assert get(mw, REMOTE_ADDR="2001:db8::1").status_code == 200
    assert get(mw, REMOTE_ADDR="192.0.2.8").status_code == 503
    assert get(mw, REMOTE_ADDR="not an address").status_code == 503


def test_behind_a_proxy_the_configured_header_names_the_client(state_dir: Path) -> None:
    extra = {"MAINTENANCE_ALLOW_IPS": ["192.0.2.7"], "MAINTENANCE_IP_HEADER": "HTTP_X_REAL_IP"}
    with override_settings(OPSKIT=settings_for(state_dir, **extra)):
        mw = MaintenanceMiddleware(ok)
    maintenance.turn_on(state_dir)
    assert get(mw, REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP="192.0.2.7").status_code == 200
    # The proxy's own address is not the client's.
    assert get(mw, REMOTE_ADDR="192.0.2.7", HTTP_X_REAL_IP="198.51.100.1").status_code == 503


def test_staff_users_are_served_when_allowed(state_dir: Path) -> None:
    from django.contrib.auth.models import User  # the app registry is ready only now

    staff = User.objects.create_user("staff-mw", is_staff=True)
    visitor = User.objects.create_user("visitor-mw")
    maintenance.turn_on(state_dir)
    try:
        for allow, who, expected in [
            (True, staff, 200),
            (True, visitor, 503),
            (False, staff, 503),
        ]:
            with override_settings(OPSKIT=settings_for(state_dir, MAINTENANCE_ALLOW_STAFF=allow)):
                client = Client()
                client.force_login(who)
                assert client.get("/health/").status_code == expected, (allow, who)
    finally:
        User.objects.filter(username__in=["staff-mw", "visitor-mw"]).delete()


class _Unreachable:
    """A lazy user whose lookup fails, as it does while the database is swapped."""

    @property
    def is_active(self) -> bool:
        raise OperationalError("database is locked")


def test_a_staff_lookup_the_database_cannot_answer_gets_the_page(state_dir: Path) -> None:
    with override_settings(OPSKIT=settings_for(state_dir, MAINTENANCE_ALLOW_STAFF=True)):
        mw = MaintenanceMiddleware(ok)
    maintenance.turn_on(state_dir)
    request = RequestFactory().get("/")
    request.user = _Unreachable()
    assert mw(request).status_code == 503


def test_a_restore_hold_puts_every_page_in_maintenance(
    middleware: MaintenanceMiddleware, state_dir: Path, tmp_path: Path
) -> None:
    maintenance.hold(state_dir, "default", tmp_path / "journal.json")
    response = get(middleware, "/anything/")
    assert response.status_code == 503
    assert b"The site is down for maintenance" in response.content
    maintenance.release(state_dir, "default")
    assert get(middleware, "/anything/").status_code == 200


def test_the_page_is_the_projects_own_template_when_it_has_one(
    state_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "templates" / "opskit"
    folder.mkdir(parents=True)
    (folder / "maintenance.html").write_text("<p>Ours: {{ message }} ({{ retry_after }} s)</p>")
    templates = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [str(tmp_path / "templates")],
            "APP_DIRS": True,
        }
    ]
    with override_settings(OPSKIT=settings_for(state_dir), TEMPLATES=templates):
        mw = MaintenanceMiddleware(ok)
        maintenance.turn_on(state_dir, message="Soon")
        assert get(mw).content == b"<p>Ours: Soon (120 s)</p>"


def test_a_maintenance_file_the_site_cannot_read_leaves_the_site_up(
    middleware: MaintenanceMiddleware, state_dir: Path
) -> None:
    state_dir.mkdir()
    maintenance.path_in(state_dir).write_text("{broken")
    assert get(middleware).status_code == 200
    assert "cannot read" in middleware.watcher.problem
