"""A small Django project on disk for the site-side tests, with real archives made by opskit.

Two databases: ``default`` (users and sessions; the tests give it a throwaway test database)
and ``shop``, a real SQLite file that ``opskit backup`` backs up several times, in three time
zones so that the runs land in more than one weekday slot, the last one after most of its
rows were deleted: a sudden drop in size for the chart.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

from support.project import run_opskit


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Django's settings variable or any OPSKIT_* setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_SETTINGS_MODULE" and not k.startswith("OPSKIT_")
    }
    return {**env, **extra}


SETTINGS = """\
import os
SECRET_KEY = "web-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = os.environ.get("WEBPROJECT_TZ", "UTC")
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "opskit",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "opskit.middleware.MaintenanceMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "{urls}"
TEMPLATES = [{{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {{"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]}},
}}]
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {auth!r}}},
    "shop": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {shop!r}}},
}}
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
OPSKIT = {{
    "DATABASES": ["shop"],
    "MAINTENANCE_ALLOW_PATHS": ["/admin/", "/static/"],
    "MAINTENANCE_MESSAGE": "The shop is being restored from last night's backup.",
}}
"""

URLS = """\
from django.contrib import admin
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.urls import path


def home(request):
    return HttpResponse(f"<h1>Shop</h1><p>{User.objects.count()} customers</p>")


def health(request):
    return HttpResponse("ok")


urlpatterns = [
    path("", home),
    path("health/", health),
    path("admin/", admin.site.urls),
]
"""

# (time zone, rows kept) per run: three zones 25 hours apart and more, then a sudden drop.
RUNS = [
    ("Pacific/Pago_Pago", 4000),
    ("Pacific/Kiritimati", 4200),
    ("UTC", 4400),
    ("Pacific/Pago_Pago", 4600),
    ("Pacific/Kiritimati", 4800),
    ("UTC", 5000),
    ("Pacific/Pago_Pago", 5200),
    ("Pacific/Kiritimati", 600),
]


def fill(path: Path, rows: int) -> None:
    """Make the shop database hold exactly ``rows`` items of random text, file shrunk to fit."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, t TEXT)")
        have = conn.execute("SELECT count(*) FROM item").fetchone()[0]
        if have > rows:
            conn.execute("DELETE FROM item WHERE id > ?", (rows,))
        for n in range(have + 1, rows + 1):
            conn.execute("INSERT INTO item VALUES (?, ?)", (n, secrets.token_hex(200)))
        conn.commit()
        conn.execute("VACUUM")
    finally:
        conn.close()


def build(folder: Path) -> str:
    """Write the project into ``folder``, back its shop up as RUNS says; return the settings."""
    name = f"webproject_{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=True)
    shop = folder / "shop.sqlite3"
    (folder / f"{name}_settings.py").write_text(
        SETTINGS.format(urls=f"{name}_urls", auth=str(folder / "auth.sqlite3"), shop=str(shop))
    )
    (folder / f"{name}_urls.py").write_text(URLS)
    (folder / "manage.py").write_text(
        f"import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', '{name}_settings')\n"
    )
    for zone, rows in RUNS:
        fill(shop, rows)
        done = run_opskit("backup", cwd=folder, env=clean_env(WEBPROJECT_TZ=zone))
        assert done.returncode == 0, done.stderr
    done = run_opskit("verify", cwd=folder, env=clean_env())
    assert done.returncode == 0, done.stderr
    return f"{name}_settings"
