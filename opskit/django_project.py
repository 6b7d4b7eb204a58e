"""The only module that imports Django: find the settings, set up once, read DATABASES."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit.engines.base import DbParams
from opskit.errors import ConfigError, OpsError

_SETDEFAULT = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]\s*\)"""
)


# Set by ``manage.py opskit``: Django is already set up with these settings, in this folder.
_hosted: tuple[str, Path] | None = None


def host(settings_module: str, project_dir: Path) -> None:
    """Run inside a project's own Django (manage.py opskit): use its settings, set up once."""
    global _hosted
    _hosted = (settings_module, project_dir)


def hosted_project_dir() -> Path | None:
    """manage.py's folder when opskit runs as ``manage.py opskit``, else None."""
    return _hosted[1] if _hosted else None


def find_settings(project_dir: Path, settings: str | None, environ: Mapping[str, str]) -> str:
    """Return the settings module: the flag, else DJANGO_SETTINGS_MODULE, else manage.py's."""
    if _hosted is not None:
        if settings and settings != _hosted[0]:
            raise ConfigError(
                f"manage.py runs with the settings {_hosted[0]!r}, not {settings!r}",
                "give manage.py the settings: python manage.py opskit ... --settings MODULE,"
                " or DJANGO_SETTINGS_MODULE",
            )
        return _hosted[0]
    if settings:
        return settings
    if environ.get("DJANGO_SETTINGS_MODULE"):
        return environ["DJANGO_SETTINGS_MODULE"]
    manage = project_dir / "manage.py"
    if not manage.is_file():
        raise ConfigError(
            f"no manage.py in {project_dir}",
            "run opskit where manage.py is, or pass --project-dir DIR or --settings MODULE",
        )
    match = _SETDEFAULT.search(manage.read_text(encoding="utf-8", errors="replace"))
    if not match:
        raise ConfigError(
            f"cannot read DJANGO_SETTINGS_MODULE from {manage}",
            "pass --settings MODULE or set DJANGO_SETTINGS_MODULE",
        )
    return match.group(1)


def setup(project_dir: Path, settings_module: str, apps: bool = True) -> None:
    """Put the project on sys.path and run ``django.setup()`` once (or only read settings).

    Inside ``manage.py opskit`` Django is set up already, with manage.py's settings: nothing
    is changed then.
    """
    if _hosted is not None:
        return
    path = str(project_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django
    from django.conf import settings

    try:
        if apps:
            django.setup()
        else:
            # Settings alone (they set TZ too): a command that reads no models skips
            # importing every installed app and the database drivers.
            settings.INSTALLED_APPS  # noqa: B018
    except ImportError as exc:
        raise _import_error(settings_module, exc) from None
    except Exception as exc:
        driver = _missing_driver(exc)
        if driver is not None:
            raise driver from None
        # A settings module that raises is the user's bug, but it must read as one line.
        raise ConfigError(
            f"Django setup failed for {settings_module!r}: {type(exc).__name__}: {exc}",
            "fix the settings module",
        ) from None
    if not settings.configured:  # pragma: no cover - django.setup() configures or raises
        raise ConfigError("Django settings are not configured", "pass --settings MODULE")


# The driver each Django backend loads, and what to pip install for it.
_DRIVERS = {
    "psycopg": ("PostgreSQL", "psycopg[binary]"),
    "psycopg2": ("PostgreSQL", "psycopg[binary]"),
    "MySQLdb": ("MySQL/MariaDB", "mysqlclient"),
}


def environment() -> str:
    """The Python environment opskit runs in, as a user would name it (a venv's folder)."""
    return f"{sys.prefix} ({sys.executable})"


def _install_hint(package: str, exact: bool = True) -> str:
    which = "" if exact else " (or the package that provides it)"
    return (
        f"install it there: {sys.executable} -m pip install {package!r}{which};"
        " or run the opskit of the project's own virtualenv"
    )


def _import_error(settings_module: str, exc: ImportError) -> ConfigError:
    """Tell a settings module that is not there from a package the settings need."""
    missing = getattr(exc, "name", None) or ""
    parts = settings_module.split(".")
    ours = {".".join(parts[: i + 1]) for i in range(len(parts))}
    if isinstance(exc, ModuleNotFoundError) and missing and missing not in ours:
        top = missing.split(".")[0]
        driver = _DRIVERS.get(top)
        if driver is not None:
            return _driver_error(*driver)
        return ConfigError(
            f"settings {settings_module!r} need the package {top!r}, which is not installed"
            f" in {environment()}",
            _install_hint(top, exact=False),
        )
    return ConfigError(
        f"cannot import settings {settings_module!r}: {exc}", "check --settings and --project-dir"
    )


def _driver_error(vendor: str, package: str) -> ConfigError:
    return ConfigError(
        f"the {vendor} driver is not installed in {environment()}", _install_hint(package)
    )


def _missing_driver(exc: Exception) -> ConfigError | None:
    """Django's 'Error loading psycopg2 or psycopg module' as the driver to install."""
    text = str(exc)
    if type(exc).__name__ != "ImproperlyConfigured" or "Error loading" not in text:
        return None
    if "psycopg" in text:
        return _driver_error(*_DRIVERS["psycopg"])
    if "MySQLdb" in text or "mysqlclient" in text:
        return _driver_error(*_DRIVERS["MySQLdb"])
    return None


def driver_error(exc: Exception) -> ConfigError | None:
    """The missing-driver error behind a failed first connection, if that is what it is."""
    return _missing_driver(exc)


def opskit_settings() -> dict[str, Any]:
    """Return ``settings.OPSKIT`` (empty when the project has none)."""
    from django.conf import settings

    value = getattr(settings, "OPSKIT", {}) or {}
    if not isinstance(value, dict):
        raise ConfigError("settings.OPSKIT must be a dict", "e.g. OPSKIT = {'COMPRESS': 'zstd'}")
    return value


def media_root() -> Path | None:
    """MEDIA_ROOT when the default storage keeps files there (FileSystemStorage), else None."""
    from django.conf import settings

    root = getattr(settings, "MEDIA_ROOT", "") or ""
    if not root:
        return None
    storages = getattr(settings, "STORAGES", None) or {}
    backend = str((storages.get("default") or {}).get("BACKEND", "")) if storages else ""
    backend = backend or str(getattr(settings, "DEFAULT_FILE_STORAGE", "") or "")
    if backend and not backend.endswith("FileSystemStorage"):
        return None
    return Path(str(root))


def databases() -> dict[str, DbParams]:
    """Return the connection parameters of every alias in ``settings.DATABASES``."""
    from django.conf import settings

    result = {}
    for alias, conf in settings.DATABASES.items():
        result[alias] = DbParams(
            alias=alias,
            django_engine=str(conf.get("ENGINE", "")),
            name=str(conf.get("NAME") or ""),
            user=str(conf.get("USER") or ""),
            password=str(conf.get("PASSWORD") or ""),
            host=str(conf.get("HOST") or ""),
            port=str(conf.get("PORT") or ""),
            options=dict(conf.get("OPTIONS") or {}),
        )
    return result


def session_database() -> str | None:
    """Return the alias whose table holds the sessions, or None if the engine keeps no rows."""
    import inspect

    from django.apps import apps
    from django.conf import settings
    from django.db import router

    if not apps.is_installed("django.contrib.sessions"):
        raise ConfigError(
            "django.contrib.sessions is not in INSTALLED_APPS, so there is no clearsessions",
            "add it, or remove clear-sessions from crontab.txt",
        )
    from django.contrib.sessions.backends.db import SessionStore as DatabaseStore

    store: Any = _session_store(str(settings.SESSION_ENGINE))
    # db, cached_db and their subclasses keep rows in a table the router places.
    is_database_store = inspect.isclass(store) and issubclass(store, DatabaseStore)
    if not is_database_store:
        return None
    return str(router.db_for_write(store.get_model_class()))


def _session_store(engine: str) -> Any:
    from importlib import import_module

    try:
        return import_module(engine).SessionStore
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot load SESSION_ENGINE {engine!r}: {exc}", "fix SESSION_ENGINE"
        ) from None


def count_sessions(alias: str, now: datetime) -> tuple[int, int]:
    """Return (expired, all) session rows in ``alias`` for a database session engine."""
    from django.conf import settings
    from django.db import Error
    from django.utils import timezone

    require_sqlite_file(alias)
    model = _session_store(str(settings.SESSION_ENGINE)).get_model_class()
    # With USE_TZ = False the column holds naive local times; an aware value is refused.
    cutoff = now if settings.USE_TZ else timezone.make_naive(now)
    try:
        rows = model.objects.using(alias)
        return int(rows.filter(expire_date__lt=cutoff).count()), int(rows.count())
    except Error as exc:
        raise _session_db_error(alias, exc) from None


def clear_sessions(alias: str | None) -> None:
    """Run Django's ``clearsessions``; an engine that cannot clear is a ConfigError."""
    import inspect

    from django.conf import settings
    from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieStore
    from django.core.management import CommandError
    from django.core.management import call_command as django_call
    from django.db import Error

    engine = str(settings.SESSION_ENGINE)
    store: Any = _session_store(engine)
    # Django's clearsessions "succeeds" here, but it cannot ever remove anything.
    if inspect.isclass(store) and issubclass(store, CookieStore):
        raise ConfigError(
            f"session engine {engine!r} does not support clear_expired(): signed-cookie"
            " sessions live in the visitors' browsers, so there is nothing to clear",
            "remove clear-sessions from crontab.txt, or use the db or cached_db engine",
        )
    if alias is not None:
        require_sqlite_file(alias)
    try:
        django_call("clearsessions")
    except Error as exc:
        raise _session_db_error(alias, exc) from None
    except CommandError as exc:
        raise ConfigError(
            f"session engine {engine!r} does not support clear_expired(): {exc}",
            "implement SessionStore.clear_expired(), or remove clear-sessions from crontab.txt",
        ) from None


def require_sqlite_file(alias: str) -> None:
    """Raise OpsError if ``alias`` names an SQLite file that is not there.

    Django's first connection would create it, empty: a typo in NAME would then look like a
    database without tables, and the next backup would save that empty file.
    """
    from django.conf import settings

    conf = settings.DATABASES.get(alias) or {}
    if not str(conf.get("ENGINE", "")).endswith((".sqlite3", ".spatialite")):
        return
    name = str(conf.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return  # in memory, or a URI: nothing on disk to look for
    if not Path(name).is_file():
        raise OpsError(
            f"SQLite database {name} (alias {alias!r}) does not exist",
            "check DATABASES NAME, or create it with manage.py migrate",
        )


def _session_db_error(alias: str | None, exc: Exception) -> OpsError:
    """Say which database failed (server down, no table) and how to fix it, in one line."""
    where = f"database {alias!r}" if alias else "the session store"
    return OpsError(
        f"cannot clear sessions in {where}: {type(exc).__name__}: {exc}",
        "is the server up, and did 'manage.py migrate sessions' run?",
    )


def session_engine_name() -> str:
    """Return ``settings.SESSION_ENGINE``."""
    from django.conf import settings

    return str(settings.SESSION_ENGINE)


def check_clear_sessions(now: datetime) -> None:
    """Raise OpsError unless clearsessions could remove expired sessions; reads, never writes."""
    import inspect

    from django.contrib.sessions.backends.base import SessionBase
    from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieStore

    alias = session_database()  # raises when django.contrib.sessions is not installed
    engine = str(_settings().SESSION_ENGINE)
    store: Any = _session_store(engine)
    if inspect.isclass(store) and issubclass(store, CookieStore):
        raise ConfigError(
            f"session engine {engine!r} cannot clear expired sessions: signed-cookie"
            " sessions live in the visitors' browsers",
            "remove clear-sessions from crontab.txt, or use the db or cached_db engine",
        )
    base: Any = SessionBase
    if (
        getattr(getattr(store, "clear_expired", None), "__func__", None)
        is base.clear_expired.__func__
    ):
        raise ConfigError(
            f"session engine {engine!r} does not implement clear_expired()",
            "implement SessionStore.clear_expired(), or remove clear-sessions from crontab.txt",
        )
    if alias is not None:
        count_sessions(alias, now)  # the table exists and the server answers


def _settings() -> Any:
    from django.conf import settings

    return settings


def send_admin_mail(subject: str, text: str, html: str) -> int:
    """Mail ``settings.ADMINS`` (text plus an HTML alternative) with the subject as given."""
    from django.conf import settings
    from django.core.mail import EmailMultiAlternatives

    # Django 6 takes plain addresses; older settings hold (name, address) pairs.
    admins = [a if isinstance(a, str) else a[1] for a in settings.ADMINS]
    if not admins:
        raise ConfigError("settings.ADMINS is empty, so nobody gets the mail", "set ADMINS")
    # Like mail_admins, but without EMAIL_SUBJECT_PREFIX, so the subject reads as opskit wrote it.
    message = EmailMultiAlternatives(subject, text, settings.SERVER_EMAIL, admins)
    message.attach_alternative(html, "text/html")
    return int(message.send(fail_silently=False))


def secret_keys() -> tuple[str, ...]:
    """Return SECRET_KEY and SECRET_KEY_FALLBACKS (empty when the project has no key)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        key = str(settings.SECRET_KEY or "")
    except ImproperlyConfigured:
        key = ""
    fallbacks = [str(k) for k in getattr(settings, "SECRET_KEY_FALLBACKS", []) or [] if k]
    return (key, *fallbacks) if key else ()


def sign(value: str, keys: tuple[str, ...], salt: str) -> str:
    """Return Django's signature of ``value`` with the first key (HMAC-SHA256, salted)."""
    from django.core import signing

    signer = signing.Signer(key=keys[0], salt=salt, algorithm="sha256", fallback_keys=[])
    signed = str(signer.sign(value))
    return signed.rsplit(":", 1)[1]


def signature_ok(value: str, signature: str, keys: tuple[str, ...], salt: str) -> bool:
    """Whether ``signature`` signs ``value`` with any of ``keys`` (the current, or a fallback)."""
    from django.core import signing

    signer = signing.Signer(
        key=keys[0], salt=salt, algorithm="sha256", fallback_keys=list(keys[1:])
    )
    try:
        signer.unsign(f"{value}:{signature}")
    except signing.BadSignature:
        return False
    return True
