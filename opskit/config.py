"""One frozen Config; precedence: defaults < settings.OPSKIT < OPSKIT_* env < flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opskit.archive import codec
from opskit.errors import ConfigError
from opskit.offsite.settings import Destination, media_folders
from opskit.offsite.settings import parse as parse_offsite

FORMATS = ("plain", "directory")

# Every key of settings.OPSKIT, its environment variable and its default.
DEFAULTS: dict[str, Any] = {
    "BACKUP_DIR": "db_backups",
    "LOG_DIR": "logs",
    "COMPRESS": "zstd",
    "FORMAT": "plain",
    # Measured on this project's benchmark: level 1 is as small as 3 with zstd -T0 and
    # takes 40% of its CPU, which on a small server is the whole difference.
    "ZSTD_LEVEL": 1,
    # gzip -6 takes 2.5 times the CPU of -1 for archives about 5% smaller.
    "GZIP_LEVEL": 1,
    "EXCLUDE_TABLE_DATA": ["django_session"],
    "DATABASES": [],
    "LOCK_WAIT": 0,
    "VERIFY_RESTORE": False,
    "COUNT_ROWS": False,
    "PG_BIN_DIR": None,
    "MYSQL_BIN_DIR": None,
    "CRONTAB": None,
    "HEALTHCHECKS": {},
    "HEALTHCHECKS_PING_URL": "https://hc-ping.com/",
    "HEALTHCHECKS_CREATE": False,
    "HEALTHCHECKS_TIMEOUT": 10,
    "HEALTHCHECKS_BUDGET": 30,
    "HEALTHCHECKS_API_URL": "https://healthchecks.io/api/v3/",
    "HEALTHCHECKS_API_KEY": None,
    "STRICT_PING": False,
    "MAIL_ADMINS_ON_ERROR": False,
    # Signs manifests; default: the project's SECRET_KEY (and SECRET_KEY_FALLBACKS).
    "SIGNING_KEY": None,
    # Small files every web worker reads (the maintenance switch), next to manage.py.
    "STATE_DIR": ".opskit",
    # Who still gets through while maintenance is on: addresses or networks, path
    # prefixes, staff users; and what everyone else is told.
    "MAINTENANCE_ALLOW_IPS": [],
    "MAINTENANCE_ALLOW_PATHS": [],
    "MAINTENANCE_ALLOW_STAFF": False,
    # The request header (WSGI name, e.g. HTTP_X_REAL_IP) holding the client's address,
    # when a proxy in front sets it; default REMOTE_ADDR.
    "MAINTENANCE_IP_HEADER": None,
    "MAINTENANCE_MESSAGE": "The site is down for maintenance and will be back shortly.",
    "MAINTENANCE_RETRY_AFTER": 120,
    # opskit restore turns maintenance on for the swap (the whole load with --in-place).
    "MAINTENANCE_DURING_RESTORE": True,
    # The start ping's own bound; the final ping has HEALTHCHECKS_BUDGET to itself.
    "HEALTHCHECKS_START_BUDGET": 10,
    # node_exporter textfile written after every job (None: no metrics).
    "METRICS_FILE": None,
    # A dump smaller than this fraction of the median of the last 7 runs is a WARN (0: off).
    "SIZE_DROP_RATIO": 0.5,
    # Seconds a step runs before the terminal shows its progress line.
    "PROGRESS_DELAY": 0.5,
    # Off-site copies through restic: a dict, or a list of dicts (docs/offsite.md).
    "OFFSITE": None,
    # Local media copies per weekday (unchanged files hard-linked): True for MEDIA_ROOT, or folders.
    "MEDIA_SNAPSHOTS": False,
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
# Environment variables opskit reads besides OPSKIT_<key of DEFAULTS> and OPSKIT_HC_<JOB>.
OTHER_ENV = (
    "OPSKIT_CACHE_DIR",  # where the Healthchecks body limits are cached
    "OPSKIT_CRON_D_DIR",  # where --cron-d files go (a system whose cron.d is elsewhere)
    "OPSKIT_REQUIRE_SERVICES",  # the test suite: fail instead of skipping
    "OPSKIT_TEST_KILL_AT",  # fault tests: stop at a named point
    "OPSKIT_TEST_PROC_DIR",  # cron tests: the /proc that tells whether cron runs
    "OPSKIT_TEST_SCREENSHOTS",  # the browser tests: where screenshots go
    # Read by the commands/*.sh wrappers, so the opskit they start sees them too.
    "OPSKIT_BIN",
    "OPSKIT_DATABASE",
    "OPSKIT_PROJECT_DIR",
)
# Settings keys that name a file or folder: a relative one is relative to the project folder,
# whether it comes from a flag, an OPSKIT_* variable or settings.OPSKIT.
PATH_KEYS = (
    "BACKUP_DIR",
    "LOG_DIR",
    "STATE_DIR",
    "CRONTAB",
    "METRICS_FILE",
    "PG_BIN_DIR",
    "MYSQL_BIN_DIR",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a job needs to know, built once at the edge and passed down."""

    project_dir: Path
    settings_module: str
    backup_dir: Path
    log_dir: Path
    compress: str = "zstd"
    format: str = "plain"  # "directory": pg_dump -Fd for PostgreSQL databases
    zstd_level: int = 1
    gzip_level: int = 1
    exclude_table_data: tuple[str, ...] = ("django_session",)
    databases: tuple[str, ...] = ()
    lock_wait: float = 0.0
    verify_restore: bool = False
    count_rows: bool = False
    pg_bin_dir: Path | None = None
    mysql_bin_dir: Path | None = None
    crontab: Path | None = None
    # Job name -> check (UUID, ping URL or <ping key>/<slug>).
    healthchecks: dict[str, str] = dataclasses.field(default_factory=dict)
    ping_url: str = "https://hc-ping.com/"
    ping_create: bool = False
    ping_timeout: float = 10.0
    ping_budget: float = 30.0
    api_url: str = "https://healthchecks.io/api/v3/"
    api_key: str = dataclasses.field(default="", repr=False)
    strict_ping: bool = False
    # Send Django's ADMINS a mail when a job ends with errors.
    mail_admins_on_error: bool = False
    # Manifests are signed with the first and checked against all (SECRET_KEY_FALLBACKS).
    signing_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    state_dir: Path = Path(".opskit")
    maintenance_allow_ips: tuple[str, ...] = ()  # networks, e.g. "10.0.0.0/8", "192.0.2.7/32"
    maintenance_allow_paths: tuple[str, ...] = ()
    maintenance_allow_staff: bool = False
    maintenance_ip_header: str = ""
    maintenance_message: str = DEFAULTS["MAINTENANCE_MESSAGE"]
    maintenance_retry_after: int = 120
    maintenance_during_restore: bool = True
    ping_start_budget: float = 10.0
    metrics_file: Path | None = None
    size_drop_ratio: float = 0.5
    progress_delay: float = 0.5
    # Problems worth a warning that do not stop a run (an unknown OPSKIT_* variable).
    warnings: tuple[str, ...] = ()
    # restic repositories each run pushes to (OPSKIT["OFFSITE"]).
    offsite: tuple[Destination, ...] = ()
    # Media folders snapshotted per weekday under backup_dir/media/ (OPSKIT["MEDIA_SNAPSHOTS"]).
    media_snapshots: tuple[Path, ...] = ()
    # What opskit may keep between runs (the Healthchecks body limits): OPSKIT_CACHE_DIR.
    cache_dir: Path = dataclasses.field(default_factory=lambda: Path.home() / ".cache" / "opskit")
    # The keys not left at their default (set by settings.OPSKIT, an OPSKIT_* variable or a flag).
    given: frozenset[str] = frozenset()

    def offsite_secrets(self) -> tuple[str, ...]:
        """The off-site passwords and credentials, for redaction."""
        import os

        found = [s for d in self.offsite for s in d.secrets()]
        found += [os.environ.get(d.password_env, "") for d in self.offsite if d.password_env]
        return tuple(s for s in found if s)

    def check_for(self, job: str) -> str | None:
        """Return the Healthchecks check configured for a job, if any."""
        return self.healthchecks.get(job)

    @property
    def level(self) -> int:
        """The compression level of ``compress`` (0 for none)."""
        return {"zstd": self.zstd_level, "gzip": self.gzip_level}.get(self.compress, 0)


def _split(value: Any, key: str, name: str | None = None) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    raise ConfigError(f"{name or _setting(key)} must be a list of names", "e.g. ['django_session']")


def _setting(key: str) -> str:
    return f"OPSKIT[{key!r}]"


def known_env() -> list[str]:
    """Every OPSKIT_* variable opskit reads (OPSKIT_HC_<JOB> stands for one per job)."""
    keys = [f"OPSKIT_{k}" for k in DEFAULTS if k != "HEALTHCHECKS"]
    return sorted([*keys, *OTHER_ENV, "OPSKIT_HC_<JOB>"])


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """Return the OPSKIT_* variables set in ``environ`` that opskit does not read (typos)."""
    known = set(known_env())
    return sorted(
        name
        for name in environ
        if name.startswith("OPSKIT_") and name not in known and not name.startswith("OPSKIT_HC_")
    )


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
    secret_keys: tuple[str, ...] = (),
    media_root: Path | None = None,
) -> Config:
    """Merge defaults, ``settings.OPSKIT``, ``OPSKIT_*`` variables and flags, in that order."""
    environ = environ or {}
    values = _merge(settings_opskit or {}, environ, flags or {}, project_dir)
    signing = values.merged["SIGNING_KEY"]
    return Config(
        project_dir=project_dir,
        settings_module=settings_module,
        **_archives(values),
        healthchecks=values.checks,
        **_pings(values),
        signing_keys=((str(signing),) if signing else ()) + secret_keys,
        **_maintenance(values),
        warnings=_env_warnings(environ),
        offsite=parse_offsite(
            values.merged["OFFSITE"], project_dir=project_dir, media_root=media_root
        ),
        media_snapshots=_media_snapshots(values.merged["MEDIA_SNAPSHOTS"], project_dir, media_root),
        cache_dir=_cache_dir(environ, project_dir),
        given=frozenset(values.origin),
    )


@dataclasses.dataclass(frozen=True)
class _Values:
    """The merged settings, and where each that is not a default came from."""

    merged: dict[str, Any]
    origin: dict[str, str]  # key -> OPSKIT['KEY'], OPSKIT_KEY or --key
    checks: dict[str, str]
    project_dir: Path

    def check(self, key: str, parse: Any, *args: Any) -> Any:
        """Parse one value; a bad one is a ConfigError naming it as the user wrote it."""
        return parse(self.merged[key], key, *args, name=self.origin.get(key, _setting(key)))

    def path(self, key: str) -> Path:
        return _path(self.merged[key], self.project_dir)

    def optional_path(self, key: str) -> Path | None:
        return self.path(key) if self.merged[key] else None

    def text(self, key: str) -> str:
        return str(self.merged[key] or "")


def _merge(
    settings_opskit: Mapping[str, Any],
    environ: Mapping[str, str],
    flags: Mapping[str, Any],
    project_dir: Path,
) -> _Values:
    """Apply the precedence: defaults < settings.OPSKIT < OPSKIT_* variables < flags."""
    unknown = sorted(set(settings_opskit) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown OPSKIT setting {', '.join(unknown)}",
            f"valid keys: {', '.join(sorted(DEFAULTS))}",
        )
    merged: dict[str, Any] = {**DEFAULTS, **settings_opskit}
    origin = {key: _setting(key) for key in settings_opskit}
    for key in DEFAULTS:
        value = environ.get(f"OPSKIT_{key}")
        if value and key not in ("HEALTHCHECKS", "OFFSITE"):
            merged[key] = value
            origin[key] = f"OPSKIT_{key}"
    checks = _checks(merged["HEALTHCHECKS"], environ)
    given = {k: v for k, v in flags.items() if v not in (None, (), [])}
    merged.update(given)
    origin.update({k: "--" + k.lower().replace("_", "-") for k in given})
    return _Values(merged, origin, checks, project_dir)


def _env_warnings(environ: Mapping[str, str]) -> tuple[str, ...]:
    """A warning for the OPSKIT_* variables that are set but read by nothing (typos)."""
    typos = unknown_env(environ)
    if not typos:
        return ()
    return (
        f"unknown environment variable {', '.join(typos)} is ignored;"
        f" valid ones: {', '.join(known_env())}",
    )


def _checks(checks: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Job -> check: settings.OPSKIT['HEALTHCHECKS'], then OPSKIT_HC_<JOB> over it."""
    if not isinstance(checks, dict):
        raise ConfigError("OPSKIT['HEALTHCHECKS'] must be a dict", "e.g. {'backup': '<uuid>'}")
    found = {str(k): str(v) for k, v in checks.items() if v}
    # OPSKIT_HC_BACKUP=<check>, OPSKIT_HC_CLEAR_SESSIONS=<check>, ...
    for name, value in environ.items():
        if name.startswith("OPSKIT_HC_") and value:
            found[name[len("OPSKIT_HC_") :].lower().replace("_", "-")] = value
    return found


def _choice(values: _Values, key: str, choices: tuple[str, ...], what: str) -> str:
    value = str(values.merged[key]).lower()
    if value not in choices:
        name = values.origin.get(key, _setting(key))
        raise ConfigError(f"{name}: unknown {what} {value!r}", f"use one of {', '.join(choices)}")
    return value


def _archives(values: _Values) -> dict[str, Any]:
    """What a backup writes and where, and the tools it runs."""
    return {
        "compress": _choice(values, "COMPRESS", codec.NAMES, "compression"),
        "format": _choice(values, "FORMAT", FORMATS, "format"),
        "zstd_level": values.check("ZSTD_LEVEL", _level, 22),
        "gzip_level": values.check("GZIP_LEVEL", _level, 9),
        "backup_dir": values.path("BACKUP_DIR"),
        "log_dir": values.path("LOG_DIR"),
        "exclude_table_data": tuple(values.check("EXCLUDE_TABLE_DATA", _split)),
        "databases": tuple(values.check("DATABASES", _split)),
        "lock_wait": values.check("LOCK_WAIT", _seconds, True),
        "verify_restore": values.check("VERIFY_RESTORE", _bool),
        "count_rows": values.check("COUNT_ROWS", _bool),
        "pg_bin_dir": values.optional_path("PG_BIN_DIR"),
        "mysql_bin_dir": values.optional_path("MYSQL_BIN_DIR"),
        "crontab": values.optional_path("CRONTAB"),
        "mail_admins_on_error": values.check("MAIL_ADMINS_ON_ERROR", _bool),
        "size_drop_ratio": values.check("SIZE_DROP_RATIO", _ratio),
        "progress_delay": values.check("PROGRESS_DELAY", _seconds, True),
        "metrics_file": values.optional_path("METRICS_FILE"),
    }


def _pings(values: _Values) -> dict[str, Any]:
    """Where the Healthchecks pings go and how long they may take; the management API."""
    return {
        "ping_url": values.check("HEALTHCHECKS_PING_URL", _url),
        "ping_create": values.check("HEALTHCHECKS_CREATE", _bool),
        "ping_timeout": values.check("HEALTHCHECKS_TIMEOUT", _seconds),
        "ping_budget": values.check("HEALTHCHECKS_BUDGET", _seconds),
        "ping_start_budget": values.check("HEALTHCHECKS_START_BUDGET", _seconds),
        "api_url": values.check("HEALTHCHECKS_API_URL", _url),
        "api_key": values.text("HEALTHCHECKS_API_KEY"),
        "strict_ping": values.check("STRICT_PING", _bool),
    }


def _maintenance(values: _Values) -> dict[str, Any]:
    """The maintenance switch: where it lives, who gets through, what the others are told."""
    return {
        "state_dir": values.path("STATE_DIR"),
        "maintenance_allow_ips": values.check("MAINTENANCE_ALLOW_IPS", _networks),
        "maintenance_allow_paths": values.check("MAINTENANCE_ALLOW_PATHS", _prefixes),
        "maintenance_allow_staff": values.check("MAINTENANCE_ALLOW_STAFF", _bool),
        "maintenance_ip_header": values.text("MAINTENANCE_IP_HEADER"),
        "maintenance_message": values.text("MAINTENANCE_MESSAGE")
        or DEFAULTS["MAINTENANCE_MESSAGE"],
        "maintenance_retry_after": int(values.check("MAINTENANCE_RETRY_AFTER", _seconds)),
        "maintenance_during_restore": values.check("MAINTENANCE_DURING_RESTORE", _bool),
    }


def _media_snapshots(value: Any, project_dir: Path, media_root: Path | None) -> tuple[Path, ...]:
    """OPSKIT['MEDIA_SNAPSHOTS']: True (MEDIA_ROOT), a list of folders, or off."""
    wanted = _bool(value) if isinstance(value, str) else value
    return media_folders(wanted, "OPSKIT['MEDIA_SNAPSHOTS']", project_dir, media_root)[1]


def _cache_dir(environ: Mapping[str, str], project_dir: Path) -> Path:
    """OPSKIT_CACHE_DIR (relative: to the project folder), else the XDG cache folder's opskit/."""
    if environ.get("OPSKIT_CACHE_DIR"):
        return _path(environ["OPSKIT_CACHE_DIR"], project_dir)
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "opskit"


def _url(value: Any, key: str, *, name: str = "") -> str:
    """An http(s) URL with a host (a typo'd scheme would send every ping nowhere)."""
    text = str(value).strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name or key}={value!r} is not an http(s) URL", f"e.g. {name or key}={DEFAULTS[key]}"
        )
    return text


def _networks(value: Any, key: str = "MAINTENANCE_ALLOW_IPS", *, name: str = "") -> tuple[str, ...]:
    """Addresses and networks (``192.0.2.7``, ``10.0.0.0/8``, ``::1``), each as a network."""
    found = []
    for item in _split(value, key, name or None):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{name or _setting(key)}: {item!r} is not an address or network",
                "e.g. ['127.0.0.1', '10.0.0.0/8']",
            ) from None
    return tuple(found)


def _prefixes(
    value: Any, key: str = "MAINTENANCE_ALLOW_PATHS", *, name: str = ""
) -> tuple[str, ...]:
    """URL path prefixes; each must start with a slash."""
    found = _split(value, key, name or None)
    bad = [p for p in found if not p.startswith("/")]
    if bad:
        raise ConfigError(
            f"{name or _setting(key)}: {bad[0]!r} does not start with /",
            "e.g. ['/admin/', '/health/']",
        )
    return tuple(found)


def _seconds(value: Any, key: str, allow_zero: bool = False, *, name: str = "") -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        what = "a number of seconds, 0 or more" if allow_zero else "a positive number of seconds"
        raise ConfigError(
            f"{name or key}={value!r} is not {what}", f"e.g. {name or key}={DEFAULTS[key]}"
        )
    return seconds


def _ratio(value: Any, key: str, *, name: str = "") -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = -1.0
    if not 0 <= ratio < 1:
        raise ConfigError(
            f"{name or key}={value!r} is not a fraction from 0 to 1",
            f"e.g. {name or key}={DEFAULTS[key]}",
        )
    return ratio


def _bool(value: Any, key: str = "", *, name: str = "") -> bool:
    if value is None or isinstance(value, bool | int):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(
        f"{name or key}={value!r} is not yes or no", f"use one of {', '.join(_TRUE + _FALSE[:-1])}"
    )


def _level(value: Any, key: str, highest: int, *, name: str = "") -> int:
    """Return a compression level from 1 to ``highest``, or raise a one-line ConfigError."""
    name = name or key
    try:
        level = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a whole number", f"e.g. {name}=1") from None
    if not 1 <= level <= highest:
        raise ConfigError(f"{name}={level} is out of range", f"use 1 to {highest} (1 is fastest)")
    return level
