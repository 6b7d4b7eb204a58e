"""What backups exist: per database, each archive with its age, size, ratio and state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import archive, rotation
from opskit.engines import DbParams
from opskit.errors import ArchiveError


def describe_archive(path: Path, latest: set[Path], now: datetime) -> dict[str, Any]:
    """Return one archive's row: slot, file, size, ratio, age and whether it checks out."""
    row: dict[str, Any] = {
        "slot": path.name.split(".", 1)[0],
        "file": str(path),
        "size": archive.size_of(path),
        "latest": path.resolve() in latest,
    }
    try:
        manifest = archive.read_manifest(path)
    except ArchiveError as exc:
        return {**row, "status": "no-manifest", "problem": exc.line()}
    finished = manifest.get("finished_at")
    age = None
    if finished:
        age = (now - datetime.fromisoformat(finished)).total_seconds()
    ok = manifest.get("size") == row["size"] and manifest.get("verified") is True
    return {
        **row,
        "database": manifest.get("database"),
        "engine": manifest.get("engine"),
        "raw_size": manifest.get("raw_size"),
        "ratio": manifest.get("ratio"),
        "sha256": manifest.get("sha256"),
        "finished_at": finished,
        "age_seconds": round(age) if age is not None else None,
        "status": "verified" if ok else "size-mismatch",
    }


def catalog(
    backup_dir: Path, databases: Mapping[str, DbParams], aliases: list[str], now: datetime
) -> list[dict[str, Any]]:
    """Return, per database alias, its folder and archive rows."""
    result = []
    for alias in aliases:
        folder = rotation.db_dir(backup_dir, alias)
        latest = {link.resolve() for link in rotation.latest_links(folder) if link.exists()}
        rows = [describe_archive(p, latest, now) for p in rotation.list_archives(folder)]
        db = databases[alias]
        result.append(
            {"alias": alias, "database": db.name, "folder": str(folder), "archives": rows}
        )
    return result
