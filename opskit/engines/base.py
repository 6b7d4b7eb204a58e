"""What every database engine offers: dump to a stream, restore from one, say its versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from opskit import killpoints
from opskit.errors import ArchiveError

if TYPE_CHECKING:
    from opskit.engines.journal import Journal


@dataclasses.dataclass(frozen=True)
class DbParams:
    """One entry of Django's DATABASES, as opskit needs it."""

    alias: str
    django_engine: str
    name: str
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    host: str = ""
    port: str = ""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self, name: str | None = None) -> str:
        """Say which database this is (host, port, user; never the password)."""
        if "sqlite" in self.django_engine or "spatialite" in self.django_engine:
            return self.name
        where = f"{self.host or 'localhost'}{':' + self.port if self.port else ''}"
        who = f"user {self.user} at " if self.user else ""
        return f"database {name or self.name} ({who}{where})"


@dataclasses.dataclass(frozen=True)
class Tools:
    """Where to look for client programs (None: on PATH)."""

    pg_bin_dir: Path | None = None
    mysql_bin_dir: Path | None = None

    @classmethod
    def of(cls, config: _BinDirs) -> Tools:
        """The tools a configuration names (``Config``, or anything with its two folders)."""
        return cls(pg_bin_dir=config.pg_bin_dir, mysql_bin_dir=config.mysql_bin_dir)


class _BinDirs(Protocol):
    @property
    def pg_bin_dir(self) -> Path | None: ...
    @property
    def mysql_bin_dir(self) -> Path | None: ...


class Content(Protocol):
    """An archive's decompressed content, as a loader reads it."""

    def read(self, size: int = -1, /) -> bytes:
        """Return the next bytes (fewer than ``size`` is fine); b"" at the end."""
        ...

    def check_end(self) -> None:
        """Raise ArchiveError unless the archive was read to its end, decompressed cleanly
        and matched its manifest's size and sha256. Call it before anything is committed."""
        ...


# Opens the archive's decompressed content afresh each time it is called.
OpenArchive = Callable[[], AbstractContextManager[Content]]


class Transform(Protocol):
    """Rewrites a loader's input on its way (e.g. psql's sandbox lines, MySQL definers)."""

    def feed(self, data: bytes) -> bytes:
        """Return what may be passed on so far (it may hold bytes back)."""
        ...

    def finish(self) -> bytes:
        """Return what was held back, at the verified end of the content."""
        ...


class ContentObserver(Protocol):
    """Sees a dump's content as it is written (e.g. to measure the longest statement)."""

    def feed(self, data: bytes) -> None: ...

    def result(self) -> dict[str, Any]:
        """Facts for the manifest's ``properties``."""
        ...


@dataclasses.dataclass(frozen=True)
class Leftover:
    """Something a restore keeps or left behind: a previous database, a scratch one."""

    kind: str  # "previous" (kept on purpose), "scratch" (a killed run's), "safety-copy"
    name: str
    drop: str  # the command that removes it
    size: int | None = None


@dataclasses.dataclass(frozen=True)
class ArchiveDir:
    """A directory-format archive (pg_dump -Fd): its loader reads the folder itself."""

    path: Path
    jobs: int = 1

    def __call__(self) -> AbstractContextManager[Content]:
        raise ArchiveError(
            f"{self.path.name} is a PostgreSQL directory archive, not a stream",
            "restore it into a PostgreSQL database",
        )


@dataclasses.dataclass
class RestoreContext:
    """What a restore strategy may use besides the archive."""

    work_dir: Path
    now: datetime
    drop_old: bool = False
    # Writes a safety copy of the database and returns its path (MySQL --in-place).
    save_safety_copy: Callable[[DbParams], Path] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    # Each step of the swap is recorded here before it runs (None: no journal, e.g. tests).
    journal: Journal | None = None
    # The archive's checked manifest: ``properties`` holds what the engine recorded.
    manifest: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    in_place: bool = False  # load into the live database itself (explicit flag only)
    no_owner: bool = False  # PostgreSQL: leave out ownership (ALTER ... OWNER TO)
    no_privileges: bool = False  # PostgreSQL: leave out GRANT/REVOKE
    definer: str = ""  # MySQL: "current-user" rewrites DEFINER clauses to the restoring account

    @property
    def properties(self) -> Mapping[str, Any]:
        value = self.manifest.get("properties")
        return value if isinstance(value, Mapping) else {}

    def step(self, name: str) -> None:
        """Record that a swap step completed (and stop here if a fault test asked to)."""
        if self.journal is not None:
            self.journal.done(name)
        killpoints.reached(f"{self.manifest.get('engine', 'restore')}:{name}")


class Engine(Protocol):
    """A database vendor: how to dump, restore, count and describe it."""

    vendor: str
    suffix: str

    def versions(self, db: DbParams) -> dict[str, str]:
        """Return the dump tool's and the server's versions."""
        ...

    def dump(
        self, db: DbParams, exclude_data: tuple[str, ...]
    ) -> AbstractContextManager[IO[bytes]]:
        """Stream a dump; leaving the block checks the dump succeeded."""
        ...

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        """Replace the database's content, or leave it exactly as it was and raise."""
        ...

    def size(self, db: DbParams) -> int:
        """Return the size of the database's tables in bytes (the free-space check's fallback)."""
        ...

    def table_counts(self, db: DbParams) -> dict[str, int]:
        """Return the exact number of rows of every table, by name."""
        ...

    def scratch_copy(
        self, db: DbParams, open_archive: OpenArchive, now: datetime, work_dir: Path
    ) -> AbstractContextManager[DbParams]:
        """Load an archive into a new scratch database, yield it, and always drop it after."""
        ...

    def properties(self, db: DbParams) -> dict[str, Any]:
        """Facts recorded in the manifest at backup time and applied or checked at restore
        (charset and collation, database-level settings, owners, definers...)."""
        ...

    def observer(self) -> ContentObserver | None:
        """Something to watch the dump's content as it is written, or None."""
        ...

    def recover(self, db: DbParams, journal: Journal) -> str:
        """Finish or undo the restore a killed opskit left; return what was done, in words."""
        ...

    def leftovers(self, db: DbParams) -> list[Leftover]:
        """Previous databases kept by restores, and scratch ones left by killed runs."""
        ...


@runtime_checkable
class DirectoryDumper(Protocol):
    """An engine that can also write pg_dump's directory format (PostgreSQL)."""

    def dump_directory(
        self, db: DbParams, exclude_data: tuple[str, ...], target: Path, level: int, jobs: int
    ) -> None:
        """Dump into a new folder, ``jobs`` tables at a time, files compressed at ``level``."""
        ...
