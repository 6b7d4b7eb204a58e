"""The snapshots opskit keeps in a repository: their tags, and finding the one asked for.

Every snapshot opskit writes is tagged ``opskit``, ``project=<name>``, ``kind=<dump,
manifest or media>``, ``run=<run id>``, and ``db=<alias>`` (or ``media=<folder name>``);
restic's own host field says which machine pushed it. A ``manifest`` snapshot (the sidecar)
beside each ``dump`` holds the local archive's signed manifest and the sha256 and size of
the bytes pushed, so a restore proves it read back exactly those.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from opskit.errors import RestoreRefused
from opskit.offsite.restic import OffsiteError, Restic
from opskit.offsite.settings import Destination

TAG = "opskit"
SIDECAR_FORMAT = 1


def tags(dest: Destination, kind: str, run: str, **more: str | int) -> list[str]:
    found = [TAG, f"project={dest.project}", f"kind={kind}", f"run={run}"]
    return found + [f"{key}={value}" for key, value in more.items()]


def dump_name(dest: Destination, alias: str, suffix: str) -> str:
    """The file name a dump has in its snapshot (``<project>/<alias>.<suffix>``)."""
    return f"{dest.project}/{alias}.{suffix}"


def sidecar_name(dest: Destination, alias: str) -> str:
    return f"{dest.project}/{alias}.opskit.json"


@dataclasses.dataclass(frozen=True)
class Snap:
    """One snapshot as restic lists it, its tags read into fields."""

    id: str
    time: datetime
    host: str
    paths: tuple[str, ...]
    tags: dict[str, str]

    @property
    def short(self) -> str:
        return self.id[:8]

    @property
    def kind(self) -> str:
        return self.tags.get("kind", "")

    @property
    def what(self) -> str:
        """The database alias, or ``media:<folder>``."""
        if "media" in self.tags:
            return f"media:{self.tags['media']}"
        return self.tags.get("db", "?")

    @property
    def project(self) -> str:
        return self.tags.get("project", "")

    @property
    def run(self) -> str:
        return self.tags.get("run", "")

    @property
    def size(self) -> int | None:
        text = self.tags.get("size", "")
        return int(text) if text.isdigit() else None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Snap:
        found: dict[str, str] = {}
        for tag in data.get("tags") or []:
            key, _, value = str(tag).partition("=")
            found[key] = value
        when = datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00"))
        return cls(
            id=str(data["id"]),
            time=when.astimezone(),
            host=str(data.get("hostname", "")),
            paths=tuple(str(p) for p in data.get("paths") or ()),
            tags=found,
        )


def snapshots(
    restic: Restic, *, all_hosts: bool = False, all_projects: bool = False, **filters: str
) -> list[Snap]:
    """Opskit's snapshots, newest first: this host's and project's unless told otherwise."""
    dest = restic.dest
    wanted = [TAG]
    if not all_projects:
        wanted.append(f"project={dest.project}")
    wanted += [f"{key}={value}" for key, value in filters.items()]
    raw = restic.snapshots(None if all_hosts else dest.host, wanted)
    return [Snap.of(s) for s in raw]


def newest(snaps: Iterable[Snap]) -> dict[tuple[str, str, str], Snap]:
    """The newest snapshot per host, project and database (or media folder)."""
    found: dict[tuple[str, str, str], Snap] = {}
    for snap in sorted(snaps, key=lambda s: s.time, reverse=True):
        if snap.kind in ("dump", "media"):
            found.setdefault((snap.host, snap.project, snap.what), snap)
    return found


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID = re.compile(r"[0-9a-f]{8,64}")


def pick(snaps: Sequence[Snap], source: str, what: str) -> Snap:
    """The snapshot SOURCE names: ``latest``, a day (YYYY-MM-DD, newest of it) or an id."""
    if not snaps:
        raise RestoreRefused(
            f"no off-site snapshot of {what} from this host and project",
            "run opskit backup with OFFSITE set; opskit offsite list shows what there is",
        )
    if source in ("", "latest"):
        return snaps[0]
    if _DATE.fullmatch(source):
        day = date.fromisoformat(source)
        same = [s for s in snaps if s.time.date() == day]
        if not same:
            days = ", ".join(sorted({s.time.date().isoformat() for s in snaps})[-7:])
            raise RestoreRefused(
                f"no off-site snapshot of {what} on {source}", f"days with one: {days}"
            )
        return same[0]
    if _ID.fullmatch(source):
        same = [s for s in snaps if s.id.startswith(source)]
        if len(same) == 1:
            return same[0]
        if len(same) > 1:
            raise RestoreRefused(f"snapshot id {source} is ambiguous", "give more digits")
        raise RestoreRefused(
            f"no off-site snapshot {source} of {what} here", "opskit offsite list shows the ids"
        )
    raise RestoreRefused(
        f"{source!r} is not a day or a snapshot id", "give YYYY-MM-DD, latest or an id"
    )


def sidecar(restic: Restic, snap: Snap, alias: str) -> dict[str, Any]:
    """The sidecar pushed with a dump snapshot: its manifest, sha256 and size."""
    dest = restic.dest
    side = snapshots(restic, kind="manifest", db=alias, run=snap.run)
    side = [s for s in side if s.host == snap.host]
    if not side:
        raise OffsiteError(
            f"snapshot {snap.short} of {alias!r} has no manifest beside it (its push did not"
            " finish)",
            "restore another snapshot",
        )
    data = restic.read_file(side[0].id, "/" + sidecar_name(dest, alias))
    try:
        record = json.loads(data)
    except ValueError:
        raise OffsiteError(f"the manifest of snapshot {snap.short} is not JSON") from None
    ok = (
        isinstance(record, dict)
        and record.get("format") == SIDECAR_FORMAT
        and isinstance(record.get("manifest"), dict)
        and isinstance(record.get("sha256"), str)
        and isinstance(record.get("size"), int)
        and str(record.get("snapshot", "")).startswith(snap.short)
    )
    if not ok:
        raise OffsiteError(
            f"the manifest of snapshot {snap.short} of {alias!r} is malformed or of another"
            " snapshot",
            "restore another snapshot",
        )
    found: dict[str, Any] = record
    return found
