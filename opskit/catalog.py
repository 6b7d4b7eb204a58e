"""What backups exist: per database, each archive with its age, size, ratio and state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit.archive import manifest as manifests
from opskit.archive import rotation
from opskit.archive import stream as archive
from opskit.config import Config
from opskit.engines import DbParams
from opskit.errors import ArchiveError


def describe_archive(
    path: Path, latest: set[Path], now: datetime, trust: Callable[[Path, dict[str, Any]], str]
) -> dict[str, Any]:
    """Return one archive's row: slot, file, size, ratio, age and whether it checks out.

    ``trust`` says what is wrong with a manifest's signature or database ("" when nothing).
    """
    row: dict[str, Any] = {
        "slot": path.name.split(".", 1)[0],
        "file": str(path),
        "size": archive.size_of(path),
        "latest": path.resolve() in latest,
    }
    try:
        manifest = manifests.read(path)
    except ArchiveError as exc:
        status = "no-manifest" if "has no manifest" in exc.message else "bad-manifest"
        return {**row, "status": status, "problem": exc.line()}
    finished = manifests.finished_at(manifest)
    age = (now - finished).total_seconds() if finished else None
    ok = manifest.get("size") == row["size"] and manifest.get("verified") is True
    problem = trust(path, manifest) if ok else ""
    status = "verified" if ok and not problem else ("size-mismatch" if not ok else "untrusted")
    return {
        **row,
        "database": manifest.get("database"),
        "engine": manifest.get("engine"),
        "raw_size": manifest.get("raw_size"),
        "ratio": manifest.get("ratio"),
        "sha256": manifest.get("sha256"),
        "finished_at": manifest.get("finished_at"),
        "age_seconds": round(age) if age is not None else None,
        "status": status,
        **({"problem": problem} if problem else {}),
    }


def catalog(
    config: Config, databases: Mapping[str, DbParams], aliases: list[str], now: datetime
) -> list[dict[str, Any]]:
    """Return, per database alias, its folder and archive rows."""
    result = []
    for alias in aliases:
        db = databases[alias]
        folder = rotation.db_dir(config.backup_dir, alias)
        latest = {link.resolve() for link in rotation.latest_links(folder) if link.exists()}
        ident = manifests.identity(db, config.settings_module, config.project_dir)

        def trust(path: Path, manifest: dict[str, Any], ident: dict[str, Any] = ident) -> str:
            try:
                manifests.check_signature(path, manifest, config.signing_keys)
            except ArchiveError as exc:
                return exc.message
            return manifests.other_database(manifest, ident)

        rows = [describe_archive(p, latest, now, trust) for p in rotation.list_archives(folder)]
        result.append(
            {"alias": alias, "database": db.name, "folder": str(folder), "archives": rows}
        )
    return result
