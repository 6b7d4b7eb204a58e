"""IANA time-zone names as Healthchecks stores them: aliases resolved, /etc/localtime named.

The tz database keeps old names as links (``US/Eastern`` -> ``America/New_York``,
``Europe/Kiev`` -> ``Europe/Kyiv``: its ``backward`` file). A Healthchecks server replaces
such a name with the current one when it saves a check, so opskit compares zones by what
they link to, and sends the current name in the first place. The links are read from the
``tzdata.zi`` file that sits beside the zone files Python's ``zoneinfo`` uses (the system's,
or the ``tzdata`` package's). The zone cron runs in is read here too, named or as rules.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import re
import zoneinfo
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from opskit.errors import ConfigError

LOCALTIME = Path("/etc/localtime")  # the zone cron (the C library) runs in
_HINT = "use an IANA name like Europe/Riga"
# Names a server keeps as they are even where the tz database makes them links.
_KEEP = frozenset({"UTC"})


def _zoneinfo_dirs() -> list[Path]:
    dirs = [Path(p) for p in zoneinfo.TZPATH]
    with contextlib.suppress(ModuleNotFoundError, FileNotFoundError, TypeError):
        dirs.append(Path(str(importlib.resources.files("tzdata") / "zoneinfo")))
    return dirs


@functools.cache
def _tables() -> tuple[dict[str, str], frozenset[str]]:
    """Return (alias -> target) from tzdata.zi and the zones zone.tab names for countries."""
    for folder in _zoneinfo_dirs():
        zi = folder / "tzdata.zi"
        if zi.is_file():
            return _read_links(zi), _country_zones(folder)
    return {}, frozenset()


def _read_links(path: Path) -> dict[str, str]:
    links: dict[str, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "L":
                links[parts[2]] = parts[1]
    return links


def _country_zones(folder: Path) -> frozenset[str]:
    names: set[str] = set()
    for tab in ("zone1970.tab", "zone.tab"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in (folder / tab).read_text(encoding="utf-8").splitlines():
                fields = line.split("\t")
                if not line.startswith("#") and len(fields) >= 3:
                    names.add(fields[2])
    return frozenset(names)


def canonical(name: str) -> str:
    """Follow the tz database's links: ``US/Eastern`` -> ``America/New_York``."""
    links, _ = _tables()
    seen = {name}
    while name in links and links[name] not in seen:
        name = links[name]
        seen.add(name)
    return name


def same_zone(a: str, b: str) -> bool:
    """Whether two names are the same zone (one links to the other, or both to a third)."""
    return a == b or canonical(a) == canonical(b)


def for_server(name: str) -> str:
    """Return the name a Healthchecks server would store: a deprecated alias's current name.

    A link that zone.tab lists as a country's own zone (``Europe/Amsterdam``) is kept, and
    so is ``UTC``; without zone.tab to tell them apart, the name is kept as given.
    """
    _, countries = _tables()
    if not countries or name in countries or name in _KEEP:
        return name
    return canonical(name)


def check(name: str) -> str:
    """Return ``name`` if it is a time zone this machine knows, else a one-line ConfigError."""
    name = name.strip()
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise ConfigError(f"unknown time zone {name!r}", _HINT)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"unknown time zone {name!r}", _HINT) from None
    return name


def local_zone(localtime: Path = LOCALTIME) -> tzinfo:
    """Return the zone cron runs in with its DST rules (read from /etc/localtime) where known.

    Unlike ``system_zone`` it needs no name: a copied /etc/localtime still gives the rules.
    """
    try:
        with localtime.open("rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or UTC


def system_zone(localtime: Path = LOCALTIME, timezone_file: Path = Path("/etc/timezone")) -> str:
    """Return the IANA name of the zone cron runs in, from the /etc/localtime link."""
    name = ""
    if localtime.is_symlink():
        target = os.path.normpath(os.path.join(localtime.parent, os.readlink(localtime)))
        _, found, rest = target.partition("zoneinfo/")
        name = re.sub(r"^(posix|right)/", "", rest) if found else ""
    elif not localtime.exists():
        name = "UTC"  # what the C library, and so cron, falls back to
    if not name:  # a copied file, not a link: Debian keeps the name beside it
        with contextlib.suppress(OSError, IndexError):
            name = timezone_file.read_text(encoding="utf-8").split()[0]
    if not name:
        raise ConfigError(
            f"cannot tell cron's time zone from {localtime}", "pass --tz, e.g. --tz Europe/Riga"
        )
    return check(name)
