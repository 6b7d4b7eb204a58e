"""One frozen Config; precedence: defaults < settings.OPSKIT < OPSKIT_* env < flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opskit.errors import ConfigError

COMPRESSIONS = ("zstd", "gzip", "none")

# Every key of settings.OPSKIT, its environment variable and its default.
DEFAULTS: dict[str, Any] = {
    "BACKUP_DIR": "db_backups",
    "LOG_DIR": "logs",
    "COMPRESS": "zstd",
    "ZSTD_LEVEL": 3,
    "EXCLUDE_TABLE_DATA": ["django_session"],
    "DATABASES": [],
    "PG_BIN_DIR": None,
    "MYSQL_BIN_DIR": None,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a job needs to know, built once at the edge and passed down."""

    project_dir: Path
    settings_module: str
    backup_dir: Path
    log_dir: Path
    compress: str = "zstd"
    zstd_level: int = 3
    exclude_table_data: tuple[str, ...] = ("django_session",)
    databases: tuple[str, ...] = ()
    pg_bin_dir: Path | None = None
    mysql_bin_dir: Path | None = None


def _split(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    raise ConfigError(f"OPSKIT[{key!r}] must be a list of names", "e.g. ['django_session']")


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def build_config(
    *,
    project_dir: Path,
    settings_module: str,
    settings_opskit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge defaults, ``settings.OPSKIT``, ``OPSKIT_*`` variables and flags, in that order."""
    merged: dict[str, Any] = dict(DEFAULTS)
    settings_opskit = settings_opskit or {}
    unknown = sorted(set(settings_opskit) - set(DEFAULTS) - _LATER_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown OPSKIT setting {', '.join(unknown)}",
            f"valid keys: {', '.join(sorted(DEFAULTS))}",
        )
    merged.update({k: v for k, v in settings_opskit.items() if k in DEFAULTS})
    for key in DEFAULTS:
        value = (environ or {}).get(f"OPSKIT_{key}")
        if value:
            merged[key] = value
    merged.update({k: v for k, v in (flags or {}).items() if v not in (None, (), [])})

    compress = str(merged["COMPRESS"]).lower()
    if compress not in COMPRESSIONS:
        raise ConfigError(
            f"unknown compression {compress!r}", f"use one of {', '.join(COMPRESSIONS)}"
        )
    try:
        level = int(merged["ZSTD_LEVEL"])
    except (TypeError, ValueError):
        raise ConfigError("ZSTD_LEVEL must be a whole number", "e.g. 3") from None
    if not 1 <= level <= 22:
        raise ConfigError(f"ZSTD_LEVEL {level} is out of range", "use 1 to 22 (3 is fast)")

    def optional_dir(key: str) -> Path | None:
        return _path(merged[key], project_dir) if merged[key] else None

    return Config(
        project_dir=project_dir,
        settings_module=settings_module,
        backup_dir=_path(merged["BACKUP_DIR"], project_dir),
        log_dir=_path(merged["LOG_DIR"], project_dir),
        compress=compress,
        zstd_level=level,
        exclude_table_data=tuple(_split(merged["EXCLUDE_TABLE_DATA"], "EXCLUDE_TABLE_DATA")),
        databases=tuple(_split(merged["DATABASES"], "DATABASES")),
        pg_bin_dir=optional_dir("PG_BIN_DIR"),
        mysql_bin_dir=optional_dir("MYSQL_BIN_DIR"),
    )


# Keys read by the scheduling and monitoring modules; accepted here so one list stays valid.
_LATER_KEYS = frozenset({"HEALTHCHECKS", "HEALTHCHECKS_PING_URL", "CRONTAB"})
