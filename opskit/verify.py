"""The verify job: re-read archives against their manifests, and optionally restore-test them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import logs
from opskit.archive import formats, rotation
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.config import Config
from opskit.engines import DbParams, vendor_of
from opskit.errors import ArchiveError, OpsError
from opskit.progress import ProgressFn
from opskit.report import Report, Step
from opskit.restore import looks_like_path, resolve_source
from opskit.restoretest import RestoreTestResult, restore_test

log = logs.get("verify")


@dataclasses.dataclass
class Verdict:
    """One archive's outcome: OK or not, what was found, and what to do about it."""

    alias: str
    archive: Path | None
    label: str
    ok: bool
    found: str
    fix: str = ""
    latest: bool = False
    restore: RestoreTestResult | None = None

    def line(self) -> str:
        text = f"{'OK' if self.ok else 'FAIL':<4}  {self.alias}  {self.label}: {self.found}"
        return text + (f"; fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["archive"] = str(self.archive) if self.archive else None
        row["restore"] = self.restore.as_dict() if self.restore else None
        return row


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def check_archive(
    path: Path,
    vendor: str | None,
    progress: ProgressFn | None = None,
    keys: tuple[str, ...] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Return what a whole re-read of the archive found; raise ArchiveError if it is bad.

    ``keys`` (None: not checked) are the signing keys the manifest must be signed with.
    """
    manifest = manifests.read(path)
    if keys is not None:
        manifests.check_signature(path, manifest, keys)
    if vendor and manifest["engine"] != vendor:
        raise ArchiveError(f"it is a {manifest['engine']} backup, not {vendor}")
    seen = formats.of(path).inspect(path, manifest.get("compression") or None, progress)
    if seen.size != manifest["size"]:
        raise ArchiveError(
            f"it is {seen.size:,} bytes but its manifest says {manifest['size']:,}"
            " (truncated or replaced)"
        )
    if seen.sha256 != manifest["sha256"]:
        raise ArchiveError("its sha256 does not match the manifest (changed on disk: corrupt)")
    if seen.problem:
        raise ArchiveError(f"it does not decompress: {seen.problem}")
    raw = manifest.get("raw_size")
    if raw is not None and seen.raw_size != raw:
        raise ArchiveError(f"it decompresses to {seen.raw_size:,} bytes but {raw:,} were written")
    when = str(manifest.get("finished_at") or "?")[:19].replace("T", " ")
    found = (
        f"{_size(seen.size)}, sha256 matches, decompresses to {_size(seen.raw_size)}"
        f" as recorded; backed up {when}"
    )
    return found, manifest


def _fix(alias: str, path: Path, latest: bool, problem: str) -> str:
    if path.name.startswith("pre-restore-"):
        return "this safety copy cannot bring back the pre-restore state; keep the other copies"
    again = f"run opskit backup --database {alias} now"
    if "corrupt" in problem:
        again = "check the disk (dmesg, smartctl); " + again
    if latest:
        return f"{again}, and restore from another weekday (opskit list) until then"
    slot = path.name.split(".", 1)[0]
    return f"do not restore from it; {again} or wait for the next {slot[2:]}, which replaces it"


def verify_one(
    config: Config,
    db: DbParams | None,
    alias: str,
    path: Path,
    *,
    latest: bool = False,
    restore_at: datetime | None = None,
    progress: ProgressFn | None = None,
    trust_unsigned: bool = False,
) -> Verdict:
    """Check one archive, and restore-test it if ``restore_at`` is given; never raise OpsError."""
    inside = path.is_relative_to(config.backup_dir)
    label = str(path.relative_to(config.backup_dir)) if inside else str(path)
    verdict = Verdict(alias, path, label, ok=False, found="", latest=latest)
    try:
        vendor = vendor_of(db.django_engine) if db else None
        keys = None if trust_unsigned else config.signing_keys
        verdict.found, manifest = check_archive(path, vendor, progress, keys)
        if db is not None and not trust_unsigned:
            ident = manifests.identity(db, config.settings_module, config.project_dir)
            other = manifests.other_database(manifest, ident)
            if other and not manifest.get("safety_copy"):
                raise ArchiveError(other, "it cannot be restored into this database unasked")
    except OpsError as exc:
        verdict.found = exc.message
        verdict.fix = _fix(alias, path, latest, exc.message)
        return verdict
    if restore_at is not None and db is not None:
        try:
            verdict.restore = restore_test(config, db, path, restore_at, manifest)
        except OpsError as exc:
            verdict.found += f"; restore test failed: {exc.message}"
            verdict.fix = exc.hint or "see the log for the restore test's output"
            return verdict
        verdict.found += f"; {verdict.restore.summary()}"
    verdict.ok = True
    return verdict


@dataclasses.dataclass(frozen=True)
class Target:
    """An archive to verify for a database alias, or why there is none."""

    alias: str
    path: Path | None
    problem: OpsError | None = None
    source: str = "all"


def plan(
    config: Config,
    databases: Mapping[str, DbParams],
    aliases: list[str],
    sources: tuple[str, ...] = (),
    *,
    every: bool = False,
) -> list[Target]:
    """Return the archives to verify: each source (default latest) of each alias, or all."""
    targets: list[Target] = []
    if every:
        for alias in aliases:
            folder = rotation.db_dir(config.backup_dir, alias)
            found = rotation.list_archives(folder) + _safety_copies(folder)
            targets += [Target(alias, p) for p in found] or [
                Target(alias, None, ArchiveError(f"no backups in {folder}"), "--all")
            ]
        return targets
    for source in sources or ("latest",):
        if looks_like_path(source):
            targets.append(_path_target(config, aliases, source))
            continue
        for alias in aliases:
            try:
                targets.append(Target(alias, resolve_source(config, alias, source)))
            except OpsError as exc:
                targets.append(Target(alias, None, exc, source))
    seen: set[tuple[str, Path]] = set()
    unique = []
    for target in targets:
        key = (target.alias, target.path.resolve()) if target.path else None
        if key is None or key not in seen:
            unique.append(target)
        if key is not None:
            seen.add(key)
    return unique


def _path_target(config: Config, aliases: list[str], source: str) -> Target:
    """A path names one file: verify it once, as the database its manifest names if selected."""
    try:
        path = resolve_source(config, aliases[0], source)
    except OpsError as exc:
        return Target(aliases[0], None, exc, source)
    try:
        alias = str(manifests.read(path).get("alias", ""))
    except ArchiveError:
        alias = ""
    return Target(alias if alias in aliases else aliases[0], path)


def _safety_copies(folder: Path) -> list[Path]:
    """Return restore's pre-restore safety copies in a database's folder (not manifests)."""
    return sorted(
        p for p in folder.glob("pre-restore-*") if p.is_file() and not p.name.endswith(".json")
    )


def run_verify(
    config: Config,
    databases: Mapping[str, DbParams],
    targets: list[Target],
    *,
    restore_at: datetime | None = None,
    progress: ProgressFn | None = None,
    trust_unsigned: bool = False,
) -> tuple[Report, list[Verdict]]:
    """Verify each target; the report has one step per archive, failed if the archive is bad."""
    report = Report("verify")
    verdicts = []
    for target in targets:
        started = time.monotonic()
        if target.path is None:
            problem = target.problem or ArchiveError("no archive")
            fix = problem.hint or f"run opskit backup --database {target.alias}"
            verdict = Verdict(target.alias, None, target.source, False, problem.message, fix)
        else:
            folder = rotation.db_dir(config.backup_dir, target.alias)
            latest = {link.resolve() for link in rotation.latest_links(folder) if link.exists()}
            verdict = verify_one(
                config,
                databases.get(target.alias),
                target.alias,
                target.path,
                latest=target.path.resolve() in latest,
                restore_at=restore_at,
                progress=progress,
                trust_unsigned=trust_unsigned,
            )
        reason = "" if verdict.ok else f"{verdict.label}: {verdict.found}"
        step = Step("verify", target.alias, ok=verdict.ok, reason=reason)
        step.duration = time.monotonic() - started
        report.steps.append(step)
        if verdict.archive is not None and verdict.ok:
            report.bytes += archive.size_of(verdict.archive)
        # A bad archive is also logged as a failed step at the end; this event adds the fix.
        event = log.info if verdict.ok else log.warning
        event(
            "archive_verified" if verdict.ok else "archive_bad",
            database=target.alias,
            archive=str(verdict.archive or ""),
            found=verdict.found,
            fix=verdict.fix,
        )
        verdicts.append(verdict)
    return report, verdicts
