"""The project bootstrap every command goes through: settings, Config, databases, secrets.

``load`` finds the settings module, sets Django up once (through ``django_project``, the
only importer of Django), builds the one Config (defaults < settings.OPSKIT < OPSKIT_*
variables < flags) and reads settings.DATABASES. ``read`` does the same from settings that
are already loaded (the running site). ``outside`` is the Config of a command run where
there is no project (``opskit ping``/``run`` given a full ping URL): defaults < OPSKIT_* <
flags, nothing of Django. The command line only parses, renders and exits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opskit import django_project
from opskit.config import Config, build_config
from opskit.engines.base import DbParams


@dataclasses.dataclass(frozen=True)
class Project:
    """A set-up project: its Config, its databases, and every secret to mask."""

    config: Config
    databases: dict[str, DbParams]
    secrets: tuple[str, ...]


def load(
    project_dir: Path,
    settings: str | None,
    environ: Mapping[str, str],
    *,
    apps: bool = True,
    flags: Mapping[str, Any] | None = None,
) -> Project:
    """Find the settings, set Django up (settings only unless ``apps``), build the Config.

    Raises OpsError (a ConfigError, mostly) with a one-line message and its fix.
    """
    module = django_project.find_settings(project_dir, settings, environ)
    django_project.setup(project_dir, module, apps)
    return read(project_dir, module, environ, flags=flags)


def read(
    project_dir: Path,
    settings_module: str,
    environ: Mapping[str, str],
    *,
    flags: Mapping[str, Any] | None = None,
) -> Project:
    """Build the project from Django settings already loaded in this process."""
    databases = django_project.databases()
    config = build_config(
        project_dir=project_dir,
        settings_module=settings_module,
        settings_opskit=django_project.opskit_settings(),
        environ=environ,
        flags=flags,
        secret_keys=django_project.secret_keys(),
        media_root=django_project.media_root(),
    )
    return Project(config, databases, secrets_of(config, databases))


def outside(
    project_dir: Path, environ: Mapping[str, str], *, flags: Mapping[str, Any] | None = None
) -> Config:
    """The Config of a command run outside any project: no settings.OPSKIT, no Django."""
    return build_config(project_dir=project_dir, settings_module="", environ=environ, flags=flags)


def present(project_dir: Path, settings: str | None, environ: Mapping[str, str]) -> bool:
    """Whether there is a project to load: a settings module named, or a manage.py here."""
    named = settings or environ.get("DJANGO_SETTINGS_MODULE")
    return bool(named) or (project_dir / "manage.py").is_file()


def secrets_of(config: Config, databases: Mapping[str, DbParams]) -> tuple[str, ...]:
    """Every secret a log line, an error or a ping body must never show."""
    return (
        *(db.password for db in databases.values()),
        config.api_key,
        *config.signing_keys,
        *config.offsite_secrets(),
    )
