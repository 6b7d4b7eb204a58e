"""The restore test: load an archive into a scratch database, count its rows, compare, drop."""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import logs
from opskit.archive import formats, pipes, rotation
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.config import Config
from opskit.engines import DbParams, Tools, engine_for, vendor_of
from opskit.errors import ArchiveError, RestoreRefused

log = logs.get("verify")


@dataclasses.dataclass(frozen=True)
class RestoreTestResult:
    """What a restore into a scratch database brought back, and what the backup recorded."""

    scratch: str
    tables: dict[str, int]
    expected: dict[str, int] | None  # None: the manifest recorded no row counts
    duration: float

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def summary(self) -> str:
        text = f"restore test: {len(self.tables)} tables, {self.rows:,} rows"
        if self.expected is None:
            return text + " (the manifest has no row counts to compare with)"
        return text + ", as at backup time"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rows": self.rows}


def expected_counts(manifest: Mapping[str, Any]) -> dict[str, int] | None:
    """Return the rows each table should have after a restore (excluded tables: none)."""
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        return None
    excluded = [str(t) for t in manifest.get("excluded_table_data") or []]
    props = manifest.get("properties")
    exact = props.get("excluded_tables") if isinstance(props, dict) else None
    if isinstance(exact, list):
        # What the dump really left out, as schema.table (PostgreSQL, by exact name).
        chosen = {str(t) for t in exact}
        return {
            str(t): 0 if t in chosen or f"public.{t}" in chosen else int(n)
            for t, n in tables.items()
        }

    def is_excluded(table: str) -> bool:
        # pg_dump takes patterns, qualified or not; counts name public tables unqualified.
        names = (table, table.rsplit(".", 1)[-1], f"public.{table}")
        return any(fnmatch.fnmatchcase(n, p) for p in excluded for n in names)

    return {str(t): 0 if is_excluded(str(t)) else int(n) for t, n in tables.items()}


def compare_counts(restored: Mapping[str, int], expected: Mapping[str, int]) -> list[str]:
    """Return each difference between restored and expected row counts, one phrase each."""
    problems = []
    for table, want in sorted(expected.items()):
        got = restored.get(table)
        if got is None:
            problems.append(f"table {table} is missing")
        elif got != want:
            problems.append(f"{table} has {got:,} rows, {want:,} expected")
    problems += [f"table {t} was not in the backup" for t in sorted(set(restored) - set(expected))]
    return problems


def restore_test(
    config: Config,
    db: DbParams,
    archive_path: Path,
    now: datetime,
    manifest: Mapping[str, Any] | None = None,
) -> RestoreTestResult:
    """Restore an archive into a scratch database, count its rows, drop it, compare the counts.

    ``manifest`` defaults to the archive's sidecar; pass it for a temp file that has none yet.
    The archive's checksum is the caller's to check first. Raises OpsError on any failure.
    """
    manifest = manifest if manifest is not None else manifests.read(archive_path)
    vendor = vendor_of(db.django_engine)
    if manifest.get("engine") != vendor:
        raise RestoreRefused(
            f"{archive_path.name} is a {manifest.get('engine')} backup"
            f" but {db.alias!r} is {vendor}",
            "restore-test it against a database of the same engine",
        )
    engine = engine_for(db, Tools.of(config))
    compress = str(manifest.get("compression") or archive.compression_of(archive_path))
    folder = rotation.db_dir(config.backup_dir, db.alias)
    work_dir = folder if folder.is_dir() else archive_path.parent
    started = time.monotonic()
    size, sha = manifest.get("size"), manifest.get("sha256")
    expect = pipes.Expect(size, sha) if isinstance(size, int) and isinstance(sha, str) else None
    load = formats.opener(archive_path, compress, expect=expect)
    with engine.scratch_copy(db, load, now, work_dir) as scratch:
        name = Path(scratch.name).name if vendor == "sqlite" else scratch.name
        log.info("restore_test_loaded", database=db.alias, scratch=name)
        counts = engine.table_counts(scratch)
    expected = expected_counts(manifest)
    result = RestoreTestResult(name, counts, expected, round(time.monotonic() - started, 3))
    problems = compare_counts(counts, expected) if expected is not None else []
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ArchiveError(
            f"restored {archive_path.name} differs from the database at backup time:"
            f" {'; '.join(problems[:5])}{more}",
            "do not trust this archive; if the site wrote during the backup, test the next one",
        )
    log.info("restore_test_passed", database=db.alias, tables=len(counts), rows=result.rows)
    return result
