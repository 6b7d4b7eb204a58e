"""PostgreSQL directory archives (pg_dump -Fd): a folder per slot, every file checksummed.

pg_dump writes the folder, one file per table, several tables at once; pg_restore loads it
with one worker per core. PostgreSQL 15's pg_dump compresses these files with gzip only:
at GZIP_LEVEL (1 by default: fast), or not at all with COMPRESS none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opskit import files
from opskit.archive import stream as archive
from opskit.engines.base import DbParams, DirectoryDumper
from opskit.errors import ArchiveError

SUFFIX = "pgdir"
COMPRESSION = {"zstd": "gzip", "gzip": "gzip", "none": "none"}  # what the files hold


def level(compress: str, gzip_level: int) -> int:
    """Return pg_dump's --compress for a directory archive (gzip only before PostgreSQL 16)."""
    return 0 if compress == "none" else gzip_level


def jobs() -> int:
    """Return how many tables to dump or load at once: one per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


@dataclasses.dataclass(frozen=True)
class FileCheck:
    name: str
    size: int
    sha256: str
    raw_size: int
    problem: str = ""


def _check_file(path: Path, decompress: bool = True) -> FileCheck:
    """Hash one file and, if it is gzip (and ``decompress``), decompress it to its end."""
    sha = hashlib.sha256()
    size = raw = 0
    gz = decompress and path.name.endswith(".gz")
    dobj: Any = zlib.decompressobj(31) if gz else None
    problem = ""
    with path.open("rb") as fh:
        while chunk := fh.read(archive.CHUNK):
            sha.update(chunk)
            size += len(chunk)
            if dobj is None:
                raw += len(chunk)
            elif not problem:
                try:
                    raw += len(dobj.decompress(chunk, archive.CHUNK * 16))
                    while dobj.unconsumed_tail:
                        raw += len(dobj.decompress(dobj.unconsumed_tail, archive.CHUNK * 16))
                except zlib.error as exc:
                    problem = f"{path.name} is corrupt: {exc}"
    if dobj is not None and not problem:
        raw += len(dobj.flush())
        if not dobj.eof:
            problem = f"{path.name} is truncated"
    return FileCheck(path.name, size, sha.hexdigest(), raw, problem)


def check_files(folder: Path, decompress: bool = True) -> list[FileCheck]:
    """Check every file of a directory archive, several at once."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    with ThreadPoolExecutor(jobs()) as pool:
        return list(pool.map(lambda p: _check_file(p, decompress), files))


def digest(checks: list[FileCheck]) -> str:
    """Return the archive's sha256: of its listing, one "name size sha256" line per file."""
    listing = "".join(f"{c.name} {c.size} {c.sha256}\n" for c in checks)
    return hashlib.sha256(listing.encode()).hexdigest()


def inspect(folder: Path) -> archive.Inspection:
    """Read a directory archive once: its size, digest, content size and first problem."""
    checks = check_files(folder)
    problems = [c.problem for c in checks if c.problem]
    if not any(c.name == "toc.dat" for c in checks):
        problems.insert(0, f"{folder.name} has no toc.dat (not a pg_dump directory archive)")
    return archive.Inspection(
        size=sum(c.size for c in checks),
        sha256=digest(checks),
        raw_size=sum(c.raw_size for c in checks),
        problem=problems[0] if problems else "",
    )


def dump_to_temp(
    engine: DirectoryDumper,
    db: DbParams,
    final: Path,
    exclude: tuple[str, ...],
    compress_level: int,
) -> tuple[archive.Written, dict[str, list[Any]]]:
    """Dump into a temp folder beside ``final``, check every file, fsync it all."""
    tmp = files.temp_name(final)
    try:
        engine.dump_directory(db, exclude, tmp, compress_level, jobs())
        checks = check_files(tmp)
        problems = [c.problem for c in checks if c.problem]
        if problems:
            msg = f"{final.name} does not decompress: {problems[0]}"
            raise ArchiveError(msg, "run a new backup")
        for path in tmp.iterdir():
            path.chmod(0o600)  # like every archive: the dump is readable by its owner only
            files.fsync(path)
        files.fsync(tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise archive.disk_error(exc, final.parent) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    written = archive.Written(
        tmp, sum(c.size for c in checks), sum(c.raw_size for c in checks), digest(checks)
    )
    return written, {c.name: [c.size, c.sha256] for c in checks}


def check_checksum(folder: Path, manifest: dict[str, Any]) -> None:
    """Raise ArchiveError unless every file matches the manifest (pg_restore checks the rest)."""
    checks = check_files(folder, decompress=False)
    if digest(checks) == manifest["sha256"]:
        return
    expected = manifest.get("files") or {}
    actual = {c.name: [c.size, c.sha256] for c in checks}
    changed = sorted(n for n in set(actual) | set(expected) if actual.get(n) != expected.get(n))
    raise ArchiveError(
        f"{folder.name} does not match the sha256 in its manifest"
        f" ({', '.join(changed[:3]) or 'its listing'} differ)",
        "use another backup",
    )
