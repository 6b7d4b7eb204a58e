"""The running site's opskit settings: the same Config the command line builds, from the
Django settings already loaded in this process."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from opskit import django_project, project
from opskit.config import Config
from opskit.engines import DbParams


def project_dir(settings_module: str) -> Path:
    """The folder that holds manage.py: where the settings package is importable from.

    ``config.settings.production`` in ``/srv/site/config/settings/production.py`` gives
    ``/srv/site``; relative OPSKIT folders are taken from there, as the command line does.
    """
    if not settings_module:
        return Path.cwd()
    module = importlib.import_module(settings_module)
    path = Path(str(module.__file__)).resolve()
    return path.parents[len(settings_module.split(".")) - 1]


def settings_module() -> str:
    """The settings module's name, also under override_settings (whose holder has none)."""
    from django.conf import settings

    holder = getattr(settings, "_wrapped", settings)
    while getattr(holder, "SETTINGS_MODULE", None) is None and hasattr(holder, "default_settings"):
        holder = holder.default_settings
    name = getattr(holder, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE")
    return str(name or "")


def config() -> Config:
    """Build the Config (defaults < settings.OPSKIT < OPSKIT_* variables), as the CLI does."""
    module = settings_module()
    return project.read(project_dir(module), module, os.environ).config


def databases() -> dict[str, DbParams]:
    return django_project.databases()
