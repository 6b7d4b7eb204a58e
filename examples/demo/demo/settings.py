"""Settings for the opskit demo project.

A deliberately small Django project used by the opskit README quickstart and test suite.
It is NOT a production configuration.
"""

import importlib.util
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "demo-insecure-secret-key-for-the-opskit-example-only-do-not-use"
)

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "opskit",  # the maintenance page's template and the backups page in the admin
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # HTTP 503 while `opskit maintenance on`, and during the swap of `opskit restore`.
    "opskit.middleware.MaintenanceMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

WSGI_APPLICATION = "demo.wsgi.application"

# SQLite next to manage.py by default. Tests may point the demo at another server with
# DEMO_DB_ENGINE=postgresql|mysql plus DEMO_DB_NAME/USER/PASSWORD/HOST/PORT.
_db_engine = os.environ.get("DEMO_DB_ENGINE", "sqlite3").rsplit(".", 1)[-1]
if _db_engine == "sqlite3":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DEMO_DB_NAME") or BASE_DIR / "db.sqlite3",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": f"django.db.backends.{_db_engine}",
            "NAME": os.environ.get("DEMO_DB_NAME", "opskit_demo"),
            "USER": os.environ.get("DEMO_DB_USER", ""),
            "PASSWORD": os.environ.get("DEMO_DB_PASSWORD", ""),
            "HOST": os.environ.get("DEMO_DB_HOST", ""),
            "PORT": os.environ.get("DEMO_DB_PORT", ""),
        }
    }
    if _db_engine == "mysql":
        # utf8mb4 so emoji survive; fall back to PyMySQL when mysqlclient is absent.
        DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
        if importlib.util.find_spec("MySQLdb") is None:
            import pymysql

            pymysql.install_as_MySQLdb()

AUTH_PASSWORD_VALIDATORS = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Europe/Vilnius"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# opskit reads its configuration from settings.OPSKIT; everything is optional, e.g.
# OPSKIT = {"COMPRESS": "zstd", "EXCLUDE_TABLE_DATA": ["django_session"]}
OPSKIT = {
    # "COMPRESS": "zstd",
    # "EXCLUDE_TABLE_DATA": ["django_session"],
    # The admin (and its backups page) stays reachable while the shop is in maintenance.
    "MAINTENANCE_ALLOW_PATHS": ["/admin/", "/static/"],
}
