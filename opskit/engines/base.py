"""What every database engine offers: dump to a stream, restore from one, say its versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from opskit.errors import ArchiveError


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


# Opens the archive's decompressed content afresh each time it is called.
OpenArchive = Callable[[], AbstractContextManager[IO[bytes]]]


@dataclasses.dataclass(frozen=True)
class ArchiveDir:
    """A directory-format archive (pg_dump -Fd): its loader reads the folder itself."""

    path: Path
    jobs: int = 1

    def __call__(self) -> AbstractContextManager[IO[bytes]]:
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
    # Writes a safety copy of the database and returns its path (engines without transactional DDL).
    save_safety_copy: Callable[[DbParams], Path] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


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


def chunks(stream: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """Yield a stream's content in chunks."""
    while chunk := stream.read(size):
        yield chunk
