"""Archives: streaming compression with sha256, atomic writes, verification, manifests."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from opskit import files
from opskit.archive import codec
from opskit.archive.codec import Decoder
from opskit.errors import ArchiveError
from opskit.progress import ProgressFn, counting

if TYPE_CHECKING:
    from opskit.engines.base import ContentObserver

CHUNK = 1 << 20
# A compressed piece expands about tenfold when checked: keep the pieces small.
VERIFY_CHUNK = 1 << 17


def compression_of(path: Path) -> str:
    """Return the compression an archive's name says it has."""
    return codec.of_name(path.name)


@dataclasses.dataclass(frozen=True)
class Written:
    """What was written: the temp file, and the sizes and checksum of its content."""

    path: Path
    size: int
    raw_size: int
    sha256: str


class _HashingWriter:
    """A file writer that hashes and counts what passes through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.fh.write(data)
        return len(data)


def disk_error(exc: OSError, where: Path) -> ArchiveError:
    if exc.errno == errno.ENOSPC:
        return ArchiveError(
            f"no space left on the device of {where}", "free space or set --backup-dir elsewhere"
        )
    return ArchiveError(f"cannot write {where}: {exc.strerror or exc}", "check the folder")


def write_stream(
    source: IO[bytes], final: Path, compress: str, level: int = 1, *, threads: int = -1
) -> Written:
    """Compress ``source`` into a 0600 temp file beside ``final``, fsynced; remove it on failure."""
    raw = 0
    try:
        with files.temp_file(final) as (tmp, fh):
            out = _HashingWriter(fh)
            encoder = codec.Codec(compress).encoder(level, threads)
            while chunk := source.read(CHUNK):
                raw += len(chunk)
                out.write(encoder.compress(chunk) if encoder is not None else chunk)
            if encoder is not None:
                out.write(encoder.flush())
    except OSError as exc:
        raise disk_error(exc, final.parent) from None
    return Written(tmp, out.size, raw, out.sha.hexdigest())


def write_verified(
    compressed: IO[bytes],
    final: Path,
    compress: str,
    progress: ProgressFn | None = None,
    label: str = "",
    observer: ContentObserver | None = None,
) -> Written:
    """Write an already compressed stream to a 0600 temp file beside ``final``, fsynced.

    Each piece is hashed and decompressed on its way to the disk (the content is counted
    and dropped), so the file is proven to decompress to its end without reading it again.
    """
    decoder = Decoder(compress, final.name)
    raw = 0
    try:
        with files.temp_file(final) as (tmp, fh):
            out = _HashingWriter(fh)
            if progress:
                progress(label, 0, None, False)
            while chunk := compressed.read(CHUNK if compress == "none" else VERIFY_CHUNK):
                out.write(chunk)
                plain = decoder.feed(chunk)
                if observer is not None and plain:
                    observer.feed(plain)
                content = len(plain)
                raw += content
                if progress and content:
                    progress(label, raw, None, False)
            fh.flush()
            os.fsync(fh.fileno())
            size = os.fstat(fh.fileno()).st_size
            rest = decoder.finish()
            if observer is not None and rest:
                observer.feed(rest)
            raw += len(rest)
    except OSError as exc:
        raise disk_error(exc, final.parent) from None
    except ArchiveError as exc:
        raise ArchiveError(
            f"{final.name} does not decompress: {exc.message}", "run a new backup"
        ) from None
    if progress:
        progress(label, raw, None, True)
    if size != out.size:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(
            f"{final.name} is {size} bytes on disk, {out.size} were written", "check the disk"
        )
    return Written(tmp, out.size, raw, out.sha.hexdigest())


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def remove(path: Path) -> None:
    """Delete an archive or a temp one, if it is there: a file, or a directory archive."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def size_of(path: Path) -> int:
    """Return an archive's size: a file's, or the sum of a directory archive's files."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


class _Decompressing:
    """A reader of an archive's content that fails loudly on a truncated stream."""

    def __init__(self, fh: IO[bytes], compress: str, name: str) -> None:
        self.fh = fh
        self.decoder = Decoder(compress, name)
        self.buffer = b""
        self.pos = 0
        self.done = False

    def read(self, size: int = -1) -> bytes:
        """Return up to ``size`` bytes (fewer is fine); b"" only at the verified end."""
        while self.pos >= len(self.buffer) and not self.done:
            chunk = self.fh.read(CHUNK)
            if chunk:
                self.buffer, self.pos = self.decoder.feed(chunk), 0
            else:
                self.done = True
                self.buffer, self.pos = self.decoder.finish(), 0
        end = len(self.buffer) if size < 0 else self.pos + size
        out = self.buffer[self.pos : end]
        self.pos += len(out)
        return out


@contextlib.contextmanager
def open_content(archive: Path, compress: str | None = None) -> Iterator[IO[bytes]]:
    """Yield a reader of the archive's decompressed content."""
    compress = compress or compression_of(archive)
    with archive.open("rb") as fh:
        yield decompressing(fh, compress, archive.name)


def decompressing(fh: IO[bytes], compress: str, name: str) -> IO[bytes]:
    """Return a reader of ``fh``'s decompressed content that fails loudly when it is cut."""
    return _Decompressing(fh, compress, name)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Inspection:
    """What one read of an archive found: its size, sha256, and decompressed size or problem."""

    size: int
    sha256: str
    raw_size: int  # bytes decompressed before the end or the problem
    problem: str = ""  # why decompression stopped early ("" when it reached a proper end)


class _HashingReader(_HashingWriter):
    """A file reader that hashes and counts what passes through it."""

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.sha.update(data)
        self.size += len(data)
        return data


def inspect(
    archive: Path, compress: str | None = None, progress: ProgressFn | None = None
) -> Inspection:
    """Read a stream archive once: hash it and decompress it to the end, noting what went wrong."""
    compress = compress or compression_of(archive)
    raw = 0
    problem = ""
    with archive.open("rb") as fh:
        total = archive.stat().st_size
        hashing = _HashingReader(counting(fh, f"verify {archive.name}", total, progress))
        reader = _Decompressing(hashing, compress, archive.name)  # type: ignore[arg-type]
        try:
            while chunk := reader.read(CHUNK):
                raw += len(chunk)
        except ArchiveError as exc:
            problem = exc.message
        # The checksum covers the whole file even when its content broke off early.
        while hashing.read(CHUNK):
            pass
    return Inspection(hashing.size, hashing.sha.hexdigest(), raw, problem)


def check_written(written: Written, compress: str, name: str) -> None:
    """Re-read a just-written temp file once: it must decompress to the end and be unchanged."""
    seen = inspect(written.path, compress)
    if seen.problem:
        raise ArchiveError(f"{name} does not decompress: {seen.problem}", "run a new backup")
    if seen.raw_size != written.raw_size:
        raise ArchiveError(
            f"{name} holds {seen.raw_size} bytes but {written.raw_size} were written",
            "run a new backup",
        )
    if (seen.size, seen.sha256) != (written.size, written.sha256):
        raise ArchiveError(f"{name} changed on disk while written", "check the disk")


def check_size(written: Written) -> None:
    """Check that the temp file is still the one written: the same size at the same path."""
    try:
        size = size_of(written.path)
    except OSError as exc:
        raise ArchiveError(
            f"{written.path.name} vanished: {exc.strerror}", "check the disk"
        ) from None
    if size != written.size:
        raise ArchiveError(
            f"{written.path.name} is {size} bytes but {written.size} were written",
            "check the disk",
        )
