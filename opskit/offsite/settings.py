"""OPSKIT["OFFSITE"]: one restic repository (a dict) or several (a list), checked key by key."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opskit.errors import ConfigError

KEEP_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
KEYS = (
    "repository",
    "password_file",
    "password_env",
    "password",
    "keep",
    "media",
    "env",
    "options",
    "name",
    "host",
    "project",
    "restic",
    "timeout",
)
DEFAULT_TIMEOUT = 4 * 3600.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# user:password@ inside a URL (rest:https://u:p@host/, s3:https://k:s@host/b, sftp://u:p@h/)
_USERINFO = re.compile(
    r"(?P<lead>//|^(?:sftp|rest|s3|swift|b2|azure|gs|rclone):)"
    r"(?P<user>[^/@:\s]*):(?P<password>[^/@\s]+)@"
)
_PASSWORD_VARS = ("RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND")


def redact_url(url: str) -> str:
    """The repository as it may be shown: any password in its URL replaced by a mask."""
    return _USERINFO.sub(lambda m: f"{m['lead']}{m['user']}:********@", url)


def url_secrets(url: str) -> tuple[str, ...]:
    return tuple(m["password"] for m in _USERINFO.finditer(url))


@dataclasses.dataclass(frozen=True)
class Destination:
    """One restic repository and what opskit keeps there."""

    name: str
    repository: str = dataclasses.field(repr=False)
    password_file: Path | None = None
    password_env: str = ""
    password: str = dataclasses.field(default="", repr=False)
    keep: tuple[tuple[str, int], ...] = ()
    media: bool = False
    media_dirs: tuple[Path, ...] = ()  # empty with media=True: MEDIA_ROOT
    env: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)
    options: tuple[tuple[str, str], ...] = ()
    host: str = ""
    project: str = ""
    restic: str = "restic"
    # Seconds one restic command may take before it is killed (0: no limit).
    timeout: float = DEFAULT_TIMEOUT

    @property
    def shown(self) -> str:
        """The repository with credentials masked: for logs, errors and listings."""
        return redact_url(self.repository)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.shown})"

    def secrets(self) -> tuple[str, ...]:
        """Everything about this destination that must never be shown."""
        values = [self.password, *url_secrets(self.repository), *(v for _, v in self.env)]
        return tuple(v for v in values if v)


def _where(index: int | None, key: str = "") -> str:
    at = "OPSKIT['OFFSITE']" + (f"[{index}]" if index is not None else "")
    return at + (f"[{key!r}]" if key else "")


def parse(
    value: Any, *, project_dir: Path, media_root: Path | None = None
) -> tuple[Destination, ...]:
    """Return the destinations of OPSKIT["OFFSITE"] (None or empty: none)."""
    if not value:
        return ()
    if isinstance(value, Mapping):
        items: list[Any] = [value]
        indexed = False
    elif isinstance(value, list | tuple):
        items, indexed = list(value), True
    else:
        raise ConfigError(
            "OPSKIT['OFFSITE'] must be a dict or a list of dicts",
            "e.g. {'repository': '/srv/restic', 'password_file': '/etc/opskit/restic.pass'}",
        )
    found = [
        _one(item, n if indexed else None, project_dir, media_root, len(items))
        for n, item in enumerate(items)
    ]
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"OPSKIT['OFFSITE']: two destinations are named {_dupe(names)!r}",
            "give each a different 'name'",
        )
    return tuple(found)


def _dupe(names: list[str]) -> str:
    return next(n for n in names if names.count(n) > 1)


def _one(
    item: Any, index: int | None, project_dir: Path, media_root: Path | None, count: int
) -> Destination:
    where = _where(index)
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where} must be a dict", "with at least 'repository'")
    unknown = sorted(set(map(str, item)) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {', '.join(map(repr, unknown))}",
            f"valid keys: {', '.join(KEYS)}",
        )
    repository = _repository(item.get("repository"), index, project_dir)
    env = _env(item.get("env"), index)
    path, password_env, password = _password(item, env, index, project_dir)
    media, dirs = _media(item.get("media", False), index, project_dir, media_root)
    name, host, project = _names(item, index, project_dir, count)
    return Destination(
        name=name,
        repository=repository,
        password_file=path,
        password_env=password_env,
        password=password,
        keep=_keep(item.get("keep"), index),
        media=media,
        media_dirs=dirs,
        env=env,
        options=_options(item.get("options"), index),
        host=host,
        project=project,
        restic=str(item.get("restic") or "restic"),
        timeout=_timeout(item.get("timeout", DEFAULT_TIMEOUT), index),
    )


def _repository(value: Any, index: int | None, project_dir: Path) -> str:
    """A restic repository; a relative folder is the project's."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{_where(index, 'repository')} is missing or empty",
            "e.g. '/srv/restic', 'sftp:backup@vault:/srv/opskit' or 's3:https://host/bucket'",
        )
    repository = value.strip()
    if not re.match(r"^[a-z0-9]+:", repository) and not repository.startswith("/"):
        repository = str(project_dir / repository)
    return repository


def _password(
    item: Mapping[str, Any],
    env: tuple[tuple[str, str], ...],
    index: int | None,
    project_dir: Path,
) -> tuple[Path | None, str, str]:
    """(password file, variable name, password): exactly one way to the password is given."""
    where = _where(index)
    password_file = item.get("password_file")
    password_env = item.get("password_env") or ""
    password = item.get("password") or ""
    given = [k for k in ("password_file", "password_env", "password") if item.get(k)]
    given += [k for k, _ in env if k in _PASSWORD_VARS]
    if not given:
        raise ConfigError(
            f"{where} has no password",
            "set 'password_file' (a 0600 file) or 'password_env' (a variable's name)",
        )
    if len(given) > 1:
        raise ConfigError(f"{where}: give one of {', '.join(given)}, not several", "keep one")
    path = None
    if password_file:
        path = Path(str(password_file)).expanduser()
        path = path if path.is_absolute() else project_dir / path
    if password_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(password_env)):
        raise ConfigError(
            f"{_where(index, 'password_env')} must name an environment variable",
            "e.g. 'OPSKIT_RESTIC_PASSWORD'",
        )
    return path, str(password_env), str(password)


def _names(
    item: Mapping[str, Any], index: int | None, project_dir: Path, count: int
) -> tuple[str, str, str]:
    """The destination's name, and the host and project its snapshots are tagged with."""
    name = str(item.get("name") or ("offsite" if count == 1 else f"offsite-{(index or 0) + 1}"))
    host = str(item.get("host") or socket.gethostname())
    project = str(item.get("project") or project_dir.name)
    for key, text in (("name", name), ("host", host), ("project", project)):
        if not _NAME.fullmatch(text):
            raise ConfigError(
                f"{_where(index, key)} {text!r} is not a plain name",
                "use letters, digits, dots, dashes and underscores (no commas or spaces)",
            )
    return name, host, project


def _timeout(value: Any, index: int | None) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ConfigError(
        f"{_where(index, 'timeout')} must be a number of seconds (0: no limit)",
        f"e.g. {DEFAULT_TIMEOUT:g}",
    )


def _keep(value: Any, index: int | None) -> tuple[tuple[str, int], ...]:
    where = _where(index, "keep")
    if value in (None, {}):
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a dict", "e.g. {'daily': 7, 'weekly': 5}")
    rules = []
    for rule, count in value.items():
        if rule not in KEEP_RULES:
            raise ConfigError(
                f"{where}: {rule!r} is not a keep rule", f"use {', '.join(KEEP_RULES)}"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"{where}[{rule!r}] must be a whole number from 1", "e.g. 7")
        rules.append((str(rule), count))
    return tuple(sorted(rules, key=lambda r: KEEP_RULES.index(r[0])))


def _media(
    value: Any, index: int | None, project_dir: Path, media_root: Path | None
) -> tuple[bool, tuple[Path, ...]]:
    return media_folders(value, _where(index, "media"), project_dir, media_root)


def media_folders(
    value: Any, where: str, project_dir: Path, media_root: Path | None
) -> tuple[bool, tuple[Path, ...]]:
    """``True`` (MEDIA_ROOT), ``False`` or a list of folders, checked; ``where`` names the key."""
    if value is False or value is None:
        return False, ()
    if value is True:
        if media_root is None:
            raise ConfigError(
                f"{where} is True but the project has no MEDIA_ROOT on a FileSystemStorage",
                "set MEDIA_ROOT, or list the folders: 'media': ['/srv/site/media']",
            )
        return True, (media_root,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        dirs = []
        for text in value:
            path = Path(text).expanduser()
            dirs.append(path if path.is_absolute() else project_dir / path)
        names = [d.name for d in dirs]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: two folders are named {_dupe(names)!r}", "rename one")
        return True, tuple(dirs)
    raise ConfigError(f"{where} must be True, False or a list of folders", "e.g. True")


def _env(value: Any, index: int | None) -> tuple[tuple[str, str], ...]:
    where = _where(index, "env")
    if value in (None, {}):
        return ()
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            f"{where} must be a dict of environment variables", "e.g. {'AWS_ACCESS_KEY_ID': ...}"
        )
    bad = [k for k in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    if bad:
        raise ConfigError(f"{where}: {bad[0]!r} is not a variable name", "e.g. AWS_ACCESS_KEY_ID")
    if "RESTIC_REPOSITORY" in value:
        raise ConfigError(f"{where} sets RESTIC_REPOSITORY", "use the 'repository' key")
    return tuple((k, str(v)) for k, v in value.items())


def _options(value: Any, index: int | None) -> tuple[tuple[str, str], ...]:
    """restic's extended options (``-o key=value``): on its command line, so never secrets."""
    where = _where(index, "options")
    if value in (None, {}):
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a dict", "e.g. {'sftp.command': 'ssh ... -s sftp'}")
    return tuple((str(k), str(v)) for k, v in value.items())
