"""What is off-site, and is it sound: the listing, ``check --offsite``, ``verify --offsite``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from opskit import logs
from opskit.check import FAIL, OK, Result
from opskit.config import Config
from opskit.errors import OpsError
from opskit.offsite import catalog
from opskit.offsite.restic import Restic, SnapshotContent
from opskit.progress import human_age
from opskit.report import Report, StepFailed

log = logs.get("offsite")


def listing(
    config: Config, *, all_hosts: bool = False, environ: Mapping[str, str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of snapshots, newest first (with ``all_hosts``: every host's newest per database),
    and one problem line per destination that could not be read."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for dest in config.offsite:
        restic = Restic(dest, environ)
        try:
            snaps = catalog.snapshots(restic, all_hosts=all_hosts, all_projects=all_hosts)
        except OpsError as exc:
            problems.append(f"{dest.name}: {exc.line()}")
            continue
        chosen: Iterable[catalog.Snap]
        if all_hosts:
            chosen = sorted(
                catalog.newest(snaps).values(), key=lambda s: (s.host, s.project, s.what)
            )
        else:
            chosen = [s for s in snaps if s.kind in ("dump", "media")]
        rows += [
            {
                "destination": dest.name,
                "repository": dest.shown,
                "host": s.host,
                "project": s.project,
                "what": s.what,
                "time": s.time.isoformat(),
                "id": s.short,
                "size": s.size,
                "run": s.run,
            }
            for s in chosen
        ]
    return rows, problems


def check_offsite(
    config: Config,
    aliases: Iterable[str],
    now: datetime,
    max_age: float,
    environ: Mapping[str, str] | None = None,
) -> list[Result]:
    """Each repository reachable; the newest snapshot of each database and media folder
    younger than ``max_age``."""
    results: list[Result] = []
    aliases = list(aliases)
    for dest in config.offsite:
        restic = Restic(dest, environ)
        try:
            snaps = catalog.snapshots(restic)
        except OpsError as exc:
            results.append(Result(f"offsite:{dest.name}", FAIL, exc.message, exc.hint))
            continue
        results.append(
            Result(f"offsite:{dest.name}", OK, f"{dest.shown} reachable, {len(snaps)} snapshots")
        )
        newest = {s.what: s for s in reversed(snaps) if s.kind in ("dump", "media")}
        names = aliases + [f"media:{d.name}" for d in dest.media_dirs if dest.media]
        for what in names:
            name = f"offsite:{dest.name}:{what}"
            snap = newest.get(what)
            if snap is None:
                fix = "run opskit backup (with OFFSITE set)"
                results.append(Result(name, FAIL, "no off-site snapshot yet", fix))
                continue
            age = (now - snap.time).total_seconds()
            found = f"newest {snap.short} of {snap.time:%Y-%m-%d %H:%M}, {human_age(age)} old"
            if age > max_age:
                fix = "see why the last backups did not push (opskit.log, step offsite)"
                results.append(
                    Result(name, FAIL, found + f", older than {human_age(max_age)}", fix)
                )
            else:
                results.append(Result(name, OK, found))
    return results


def verify_offsite(
    config: Config,
    aliases: Iterable[str],
    subset: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Report, list[str]]:
    """``restic check`` of each repository, then the newest snapshot of each database read
    back and hashed against the sha256 recorded at push time."""
    report = Report("verify")
    lines: list[str] = []
    aliases = list(aliases)
    for dest in config.offsite:
        restic = Restic(dest, environ)
        start = time.monotonic()
        try:
            with report.step("offsite-check", None):
                restic.run("check", *(["--read-data-subset", subset] if subset else []))
            lines.append(
                f"OK    {dest.name}: restic check" + (f" (data {subset})" if subset else "")
            )
        except StepFailed as exc:
            lines.append(f"FAIL  {dest.name}: {exc.step.reason}")
            continue
        for alias in aliases:
            try:
                with report.step("offsite-rehash", alias):
                    lines.append(f"OK    {dest.name}: {alias}: " + _rehash(restic, alias))
            except StepFailed as exc:
                lines.append(f"FAIL  {dest.name}: {alias}: {exc.step.reason}")
        log.info("offsite_verified", destination=dest.name, duration=time.monotonic() - start)
    return report, lines


def _rehash(restic: Restic, alias: str) -> str:
    snaps = catalog.snapshots(restic, kind="dump", db=alias)
    snap = catalog.pick(snaps, "latest", repr(alias))
    side = catalog.sidecar(restic, snap, alias)
    if side.get("archive_format") == "directory":
        return f"snapshot {snap.short} is a directory archive (its blobs checked by restic check)"
    with restic.dump(snap.id, str(side["file"])) as child:
        content = SnapshotContent(
            restic, child, f"snapshot {snap.short}", side["size"], side["sha256"]
        )
        content.check_end()
    when = f"{snap.time:%Y-%m-%d %H:%M}"
    return f"snapshot {snap.short} of {when}: {side['size']:,} bytes, sha256 matches"
