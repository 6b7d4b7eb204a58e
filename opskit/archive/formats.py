"""The two archive formats, chosen once per archive: a stream, or a directory (pg_dump -Fd).

A backup asks ``for_backup`` which format it writes; everything that reads an archive asks
``of(path)``. Each format knows its file name, what its manifest records, how it is dumped,
checked, hashed and opened for a load; nothing else branches on the format.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from opskit import logs
from opskit.archive import codec, directory, pipes
from opskit.archive import stream as archive
from opskit.config import Config
from opskit.engines.base import ArchiveDir, DbParams, DirectoryDumper, Engine, OpenArchive
from opskit.errors import ArchiveError
from opskit.progress import ProgressFn

log = logs.get("backup")


@dataclasses.dataclass(frozen=True)
class Dumped:
    """A dump in its temp place, and what the manifest records of it beyond the common fields."""

    written: archive.Written
    files: dict[str, list[Any]] | None = None  # a directory archive: name -> [size, sha256]
    observed: dict[str, Any] = dataclasses.field(default_factory=dict)  # the content's facts


class ArchiveFormat(Protocol):
    """What opskit does with an archive that depends on how it is laid out on disk."""

    name: str  # the manifest's ``archive_format``
    # Whether a load hashes what it reads (so a restore need not read the archive twice).
    hashed_as_loaded: bool

    def final(self, folder: Path, slot: str, suffix: str, compress: str) -> Path:
        """Where the archive of ``slot`` goes."""
        ...

    def compression(self, compress: str) -> str:
        """What the manifest records as the archive's compression."""
        ...

    def compressor(self, config: Config) -> str:
        """What compresses, in words for the log."""
        ...

    def dump(
        self, engine: Engine, db: DbParams, final: Path, config: Config, progress: ProgressFn | None
    ) -> Dumped:
        """Dump ``db`` into a checked, fsynced temp beside ``final``."""
        ...

    def inspect(
        self, path: Path, compress: str | None = None, progress: ProgressFn | None = None
    ) -> archive.Inspection:
        """Read the archive once: its size, sha256, content size and first problem."""
        ...

    def sha256(self, path: Path) -> str:
        """The archive's sha256 as its manifest records it."""
        ...

    def check_checksum(self, path: Path, manifest: dict[str, Any]) -> None:
        """Raise ArchiveError unless the archive's size and sha256 match its manifest."""
        ...

    def opener(
        self,
        path: Path,
        compress: str | None = None,
        progress: ProgressFn | None = None,
        label: str = "",
        expect: pipes.Expect | None = None,
    ) -> OpenArchive:
        """What an engine loads the archive from."""
        ...


def _check_size(path: Path, manifest: dict[str, Any]) -> None:
    size = archive.size_of(path)
    if size != manifest["size"]:
        raise ArchiveError(
            f"{path.name} is {size} bytes but its manifest says {manifest['size']}"
            " (truncated or replaced)",
            "use another backup",
        )


class Stream:
    """One compressed file: the dump piped through the compressor, hashed as it is written."""

    name = "plain"
    hashed_as_loaded = True

    def final(self, folder: Path, slot: str, suffix: str, compress: str) -> Path:
        return folder / f"{slot}.{suffix}{codec.CODECS[compress].extension}"

    def compression(self, compress: str) -> str:
        return compress

    def compressor(self, config: Config) -> str:
        return codec.find(config.compress).label

    def dump(
        self, engine: Engine, db: DbParams, final: Path, config: Config, progress: ProgressFn | None
    ) -> Dumped:
        if config.compress == "gzip" and codec.find("gzip").tool != "pigz":
            log.warning("gzip_on_one_core", hint="install pigz to compress on every core")
        watcher = engine.observer()
        written = dump_stream(
            engine,
            db,
            final,
            config.exclude_table_data,
            config.compress,
            config.level,
            progress,
            watcher,
        )
        return Dumped(written, observed=watcher.result() if watcher is not None else {})

    def inspect(
        self, path: Path, compress: str | None = None, progress: ProgressFn | None = None
    ) -> archive.Inspection:
        return archive.inspect(path, compress, progress)

    def sha256(self, path: Path) -> str:
        return archive.sha256_file(path)

    def check_checksum(self, path: Path, manifest: dict[str, Any]) -> None:
        _check_size(path, manifest)
        if archive.sha256_file(path) != manifest["sha256"]:
            raise ArchiveError(
                f"{path.name} does not match the sha256 in its manifest (corrupt)",
                "use another backup",
            )

    def opener(
        self,
        path: Path,
        compress: str | None = None,
        progress: ProgressFn | None = None,
        label: str = "",
        expect: pipes.Expect | None = None,
    ) -> OpenArchive:
        return lambda: pipes.decompressed(path, compress, progress, label, expect)


class Directory:
    """A folder per slot, one file per table, as pg_dump -Fd writes it; every file checksummed."""

    name = "directory"
    hashed_as_loaded = False  # pg_restore reads the files itself

    def final(self, folder: Path, slot: str, suffix: str, compress: str) -> Path:
        return folder / f"{slot}.{directory.SUFFIX}"

    def compression(self, compress: str) -> str:
        return directory.COMPRESSION[compress]

    def compressor(self, config: Config) -> str:
        level = directory.level(config.compress, config.gzip_level)
        return f"pg_dump (gzip level {level}, {directory.jobs()} jobs)" if level else "none"

    def dump(
        self, engine: Engine, db: DbParams, final: Path, config: Config, progress: ProgressFn | None
    ) -> Dumped:
        assert isinstance(engine, DirectoryDumper)  # for_backup chose this format for it
        level = directory.level(config.compress, config.gzip_level)
        written, listing = directory.dump_to_temp(
            engine, db, final, config.exclude_table_data, level
        )
        return Dumped(written, files=listing)

    def inspect(
        self, path: Path, compress: str | None = None, progress: ProgressFn | None = None
    ) -> archive.Inspection:
        return directory.inspect(path)

    def sha256(self, path: Path) -> str:
        return directory.inspect(path).sha256

    def check_checksum(self, path: Path, manifest: dict[str, Any]) -> None:
        _check_size(path, manifest)
        directory.check_checksum(path, manifest)

    def opener(
        self,
        path: Path,
        compress: str | None = None,
        progress: ProgressFn | None = None,
        label: str = "",
        expect: pipes.Expect | None = None,
    ) -> OpenArchive:
        return ArchiveDir(path, directory.jobs())


STREAM = Stream()
DIRECTORY = Directory()


def of(path: Path) -> ArchiveFormat:
    """The format of an archive on disk: a folder is a directory archive."""
    return DIRECTORY if path.is_dir() and not path.is_symlink() else STREAM


def for_backup(config: Config, engine: Engine, db: DbParams) -> ArchiveFormat:
    """The format a backup writes: the directory format where asked for and possible."""
    if config.format != "directory":
        return STREAM
    if isinstance(engine, DirectoryDumper):
        return DIRECTORY
    log.info("format_plain", database=db.alias, reason="the directory format is PostgreSQL's")
    return STREAM


def opener(
    path: Path,
    compress: str | None = None,
    progress: ProgressFn | None = None,
    label: str = "",
    expect: pipes.Expect | None = None,
) -> OpenArchive:
    """What an engine loads: a directory archive's folder, else its content's stream."""
    return of(path).opener(path, compress, progress, label, expect)


def dump_stream(
    engine: Engine,
    db: DbParams,
    final: Path,
    exclude: tuple[str, ...],
    compress: str,
    level: int,
    progress: ProgressFn | None = None,
    observer: Any = None,
) -> archive.Written:
    """Stream a dump into a verified temp file beside ``final``; the dump's exit is checked last."""
    written = None
    try:
        with engine.dump(db, exclude) as stream:
            written = pipes.compress_to_temp(
                stream, final, compress, level, progress, f"dump {db.alias}", observer
            )
    except BaseException:
        if written is not None:
            written.path.unlink(missing_ok=True)
        raise
    return written
