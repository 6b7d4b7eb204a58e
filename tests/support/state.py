"""Back up and restore one PostgreSQL or MariaDB database through its engine alone, as the
jobs do (no CLI, no project): what ``pg_state`` and ``mysql_state`` share.

``Through(PostgreSQL)`` and ``Through(MySQL)`` give each vendor's ``backup``, ``archive_with``,
``context`` and ``restore``; ``dump_to`` writes an archive without its manifest file (the
benchmark's restore scripts use it).
"""

from __future__ import annotations

import dataclasses
import io
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import files
from opskit.archive import formats, pipes
from opskit.archive import manifest as manifests
from opskit.archive import stream as archive
from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.journal import Journal
from opskit.engines.mysql import MySQL
from opskit.engines.postgresql import PostgreSQL

STAMP = datetime(2026, 11, 22, 2, 0).astimezone()
Vendor = PostgreSQL | MySQL


@dataclasses.dataclass
class Backup:
    path: Path
    manifest: dict[str, Any]

    def opener(self) -> Any:
        expect = pipes.Expect(self.manifest["size"], self.manifest["sha256"])
        return formats.opener(self.path, expect=expect)


def dump_to(engine: Vendor, db: DbParams, final: Path, exclude: tuple[str, ...] = ()) -> Backup:
    """Dump with the engine, watched by its observer, into a zstd archive at ``final``; the
    manifest the backup job would write beside it (not written here)."""
    props = engine.properties(db)
    found = engine.observer()
    assert found is not None
    observer = found  # narrowed: the class below reads it
    with engine.dump(db, exclude) as stream:

        class Watched:
            def read(self, size: int = -1) -> bytes:
                data = stream.read(size)
                observer.feed(data)
                return data

        written = archive.write_stream(Watched(), final, "zstd")  # type: ignore[arg-type]
    files.commit(written.path, final)
    manifest = {
        "engine": engine.vendor,
        "database": db.name,
        "size": written.size,
        "sha256": written.sha256,
        "raw_size": written.raw_size,
        "properties": {**props, **observer.result()},
    }
    return Backup(final, manifest)


def content_of(b: Backup) -> bytes:
    with archive.open_content(b.path) as reader:
        data: bytes = reader.read(-1)
        return data


@dataclasses.dataclass(frozen=True)
class Through:
    """Backups and restores through one vendor's engine (a new engine object each time)."""

    engine: Callable[[], Vendor]

    @property
    def vendor(self) -> str:
        return self.engine().vendor

    def backup(
        self,
        db: DbParams,
        folder: Path,
        *,
        fname: str = "archive.sql.zst",
        exclude: tuple[str, ...] = (),
    ) -> Backup:
        """Dump with the engine, watched by its observer: a zstd archive and its manifest."""
        folder.mkdir(parents=True, exist_ok=True)
        done = dump_to(self.engine(), db, folder / fname, exclude)
        manifests.write(done.manifest, manifests.path_of(done.path))
        return done

    def archive_with(self, content: bytes, folder: Path, like: Backup | None = None) -> Backup:
        """An archive holding ``content`` whose manifest matches it (a crafted but valid one)."""
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"crafted-{secrets.token_hex(3)}.sql.zst"
        written = archive.write_stream(io.BytesIO(content), final, "zstd")
        files.commit(written.path, final)
        manifest: dict[str, Any] = dict(like.manifest) if like else {"engine": self.vendor}
        manifest.update(size=written.size, sha256=written.sha256, raw_size=written.raw_size)
        return Backup(final, manifest)

    def context(self, b: Backup, folder: Path | None = None, **options: Any) -> RestoreContext:
        """A restore context as the restore job builds it, with a journal when ``folder`` is
        given."""
        ctx = RestoreContext(work_dir=folder or b.path.parent, now=STAMP, manifest=b.manifest)
        for key, value in options.items():
            setattr(ctx, key, value)
        if folder is not None:
            database = b.manifest.get("database", "")
            ctx.journal = Journal.begin(
                folder, alias="default", engine=self.vendor, database=database
            )
        return ctx

    def restore(
        self, db: DbParams, b: Backup, folder: Path | None = None, **options: Any
    ) -> RestoreContext:
        """engine.restore as the restore job calls it: the journal goes once the database is
        whole."""
        ctx = self.context(b, folder, **options)
        try:
            self.engine().restore(db, b.opener(), ctx)
        finally:
            if ctx.journal is not None and ctx.journal.phase in ("started", "done"):
                ctx.journal.finish()
        return ctx
