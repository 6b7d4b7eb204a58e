"""The only module that imports Django: find the settings, set up once, read DATABASES."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opskit.engines.base import DbParams
from opskit.errors import ConfigError

_SETDEFAULT = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]\s*\)"""
)


def find_settings(project_dir: Path, settings: str | None, environ: Mapping[str, str]) -> str:
    """Return the settings module: the flag, else DJANGO_SETTINGS_MODULE, else manage.py's."""
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


def setup(project_dir: Path, settings_module: str) -> None:
    """Put the project on sys.path and run ``django.setup()`` once."""
    path = str(project_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django
    from django.conf import settings

    try:
        django.setup()
    except ImportError as exc:
        raise ConfigError(
            f"cannot import settings {settings_module!r}: {exc}",
            "check --settings and --project-dir",
        ) from None
    except Exception as exc:
        # A settings module that raises is the user's bug, but it must read as one line.
        raise ConfigError(
            f"Django setup failed for {settings_module!r}: {type(exc).__name__}: {exc}",
            "fix the settings module",
        ) from None
    if not settings.configured:  # pragma: no cover - django.setup() configures or raises
        raise ConfigError("Django settings are not configured", "pass --settings MODULE")


def opskit_settings() -> dict[str, Any]:
    """Return ``settings.OPSKIT`` (empty when the project has none)."""
    from django.conf import settings

    value = getattr(settings, "OPSKIT", {}) or {}
    if not isinstance(value, dict):
        raise ConfigError("settings.OPSKIT must be a dict", "e.g. OPSKIT = {'COMPRESS': 'zstd'}")
    return value


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


def call_command(name: str, *args: str) -> None:
    """Run a Django management command in this process."""
    from django.core import management

    management.call_command(name, *args)
