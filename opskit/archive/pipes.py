"""Programs joined by OS pipes: a dump into a compressor, a decompressor into a loader.

Python stays out of the way of the uncompressed data: it only sees the compressed side,
which is several times smaller, to hash it, check it and report progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, cast

from opskit import proc
from opskit.archive import codec
from opskit.archive import stream as archive
from opskit.engines.base import Content, ContentObserver, Transform
from opskit.errors import ArchiveError, CommandFailed, OpsError
from opskit.progress import ProgressFn, counting


def source_fds(source: IO[bytes]) -> list[int] | None:
    """Return the descriptors a stream reads from, in order, or None for an in-memory one."""
    parts = getattr(source, "streams", None)
    if parts is not None:
        fds = [source_fds(part) for part in parts]
        return None if None in fds else [fd for group in fds if group for fd in group]
    try:
        return [source.fileno()]
    except (AttributeError, OSError, ValueError):
        return None


class _Feeder(threading.Thread):
    """Copy descriptors (or a stream) into a program's stdin on a thread, then close it."""

    def __init__(
        self,
        sink: IO[bytes],
        fds: Sequence[int] = (),
        source: IO[bytes] | None = None,
        progress: ProgressFn | None = None,
        label: str = "",
        total: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.sink = sink
        self.fds = fds
        self.source = source
        self.progress = progress
        self.label = label
        self.total = total

    def run(self) -> None:
        out = self.sink.fileno()
        try:
            for fd in self.fds:
                # splice(2) moves the bytes inside the kernel, pipe to pipe.
                while os.splice(fd, out, 1 << 20):
                    pass
            if self.source is not None:
                done = 0
                if self.progress:
                    self.progress(self.label, 0, self.total, False)
                while chunk := self.source.read(archive.CHUNK):
                    done += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                    if self.progress:
                        self.progress(self.label, done, self.total, False)
                if self.progress:
                    self.progress(self.label, done, self.total, True)
        except OSError:
            pass  # the program stopped reading: its exit status says why
        finally:
            with contextlib.suppress(OSError):
                self.sink.close()


@contextlib.contextmanager
def through(source: IO[bytes], argv: list[str], *, what: str) -> Iterator[IO[bytes]]:
    """Run ``argv`` with ``source`` as its stdin; yield its stdout. Leaving checks its exit."""
    fds = source_fds(source)
    feeder = None
    if fds is not None and len(fds) == 1:
        child = proc.Child(argv, os.environ, what=what, stdin=fds[0], stdout=proc.PIPE)
        # Ours must not hold a pipe open: if the program dies, the dump must see it. A file
        # stays open until the caller's block ends: closing any descriptor of it would drop
        # this process's POSIX locks on it (the read lock that keeps an SQLite file still).
        if not stat.S_ISREG(os.fstat(fds[0]).st_mode):
            source.close()
    else:
        child = proc.Child(argv, os.environ, what=what, stdin=proc.PIPE, stdout=proc.PIPE)
        if fds is None:
            feeder = _Feeder(child.stdin, source=source)
        else:
            feeder = _Feeder(child.stdin, fds=fds)
        feeder.start()
    try:
        with _blaming(child, lambda failure: failure):
            yield proc.interruptible(child.stdout)
    finally:
        if feeder is not None:
            feeder.join(timeout=5)
    child.wait()


@contextlib.contextmanager
def _blaming(child: proc.Child, name: Callable[[CommandFailed], OpsError]) -> Iterator[None]:
    """Stop ``child`` if the block fails; when the failure only echoes the child's, raise that.

    A stream that broke off is usually the work of the program that produced it: its
    exit status and message, turned into an error by ``name``, say what really happened.
    """
    try:
        yield
    except OpsError:
        cause = child.failure(timeout=2)
        child.kill()
        if cause is not None:
            raise name(cause) from None
        raise
    except BaseException:
        child.kill()
        raise


class _Observed:
    """A reader that shows each piece of content to an observer on its way."""

    def __init__(self, source: IO[bytes], observer: ContentObserver) -> None:
        self.source = source
        self.observer = observer

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if data:
            self.observer.feed(data)
        return data


def compress_to_temp(
    source: IO[bytes],
    final: Path,
    compress: str,
    level: int,
    progress: ProgressFn | None = None,
    label: str = "",
    observer: ContentObserver | None = None,
) -> archive.Written:
    """Compress ``source`` into a verified temp file beside ``final``.

    With the zstd, pigz or gzip program installed, it compresses beside the dump and this
    process only checks its output; without, the libraries compress here, and the file is
    read back once to check it.
    """
    if compress == "none":
        # Nothing to decompress: written once and hashed on the way, like the others.
        return archive.write_verified(source, final, "none", progress, label, observer)
    found = codec.find(compress)
    if found.program is None:
        plain = source if observer is None else cast(IO[bytes], _Observed(source, observer))
        written = archive.write_stream(
            counting(plain, label, None, progress), final, compress, level
        )
        try:
            archive.check_written(written, compress, final.name)
        except BaseException:
            written.path.unlink(missing_ok=True)
            raise
        return written
    what = f"{found.tool} compressing into {final.name}"
    verified: archive.Written | None = None
    try:
        with through(source, found.compress_argv(level), what=what) as compressed:
            verified = archive.write_verified(
                compressed, final, compress, progress, label, observer
            )
    except BaseException:  # the compressor failed, or a signal came while waiting for it
        if verified is not None:
            verified.path.unlink(missing_ok=True)
        raise
    return verified


@dataclasses.dataclass(frozen=True)
class Expect:
    """What the archive must turn out to be once read: its manifest's size and sha256."""

    size: int
    sha256: str


class _HashingFile:
    """The opened archive, hashed and counted as it is read (and reported as progress)."""

    def __init__(self, fh: IO[bytes], label: str, progress: ProgressFn | None) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0
        self.total = os.fstat(fh.fileno()).st_size
        self.label = label
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.sha.update(data)
        self.size += len(data)
        if self.progress:
            self.progress(self.label, self.size, self.total, not data)
        return data


class ArchiveContent:
    """An archive's decompressed content, read from the one descriptor that is hashed.

    ``check_end`` is the proof a loader waits for before it commits: the decompressor ended
    cleanly, the whole file was read, and its size and sha256 are the manifest's.
    """

    def __init__(
        self,
        path: Path,
        hashing: _HashingFile,
        reader: IO[bytes],
        child: proc.Child | None,
        feeder: _Feeder | None,
        expect: Expect | None,
    ) -> None:
        self.path = path
        self.hashing = hashing
        self.reader = reader
        self.child = child
        self.feeder = feeder
        self.expect = expect
        self.checked = False

    def read(self, size: int = -1) -> bytes:
        try:
            return self.reader.read(size if size > 0 else archive.CHUNK)
        except ArchiveError as exc:
            raise ArchiveError(f"{self.path.name} is truncated or corrupt: {exc.message}") from None

    def fileno(self) -> int:
        return self.reader.fileno()

    def check_end(self) -> None:
        if self.checked:
            return
        if self.feeder is not None:
            self.feeder.join()
        if self.child is not None:
            try:
                self.child.wait()
            except CommandFailed as exc:
                raise _unreadable(self.path, exc) from None
        else:
            while self.hashing.read(archive.CHUNK):  # the rest, e.g. after a gzip trailer
                pass
        if self.expect is not None:
            size, sha = self.hashing.size, self.hashing.sha.hexdigest()
            if size != self.expect.size or sha != self.expect.sha256:
                raise ArchiveError(
                    f"{self.path.name} changed while it was read: {size:,} bytes with another"
                    " sha256 than its manifest's; nothing was committed",
                    "find who writes in the backup folder; use another backup",
                )
        self.checked = True

    def settle(self) -> ArchiveError | None:
        """After the loader stopped early: read the rest (unused) and say if the archive
        was the cause, so that a corrupt archive is named as such and a good one is not."""
        try:
            while self.read(archive.CHUNK):
                pass
            self.check_end()
        except ArchiveError as exc:
            return exc
        return None

    def abandon(self) -> None:
        """Stop reading early (the loader failed, or a signal): stop the decompressor."""
        if self.child is not None:
            self.child.kill()
        if self.feeder is not None:
            self.feeder.join(timeout=5)


@contextlib.contextmanager
def decompressed(
    path: Path,
    compress: str | None = None,
    progress: ProgressFn | None = None,
    label: str = "",
    expect: Expect | None = None,
) -> Iterator[ArchiveContent]:
    """Open the archive once and yield its content; the decompressor program (if any) reads
    the archive from this process, which hashes it on the way and reports progress."""
    compress = compress or archive.compression_of(path)
    found = codec.find(compress)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        hashing = _HashingFile(fh, label, progress)
        if compress == "none" or found.program is None:
            reader = cast(IO[bytes], hashing)
            if compress != "none":
                reader = archive.decompressing(reader, compress, path.name)
            content = ArchiveContent(path, hashing, reader, None, None, expect)
            yield content
            return
        child = proc.Child(
            found.decompress_argv(),
            os.environ,
            what=f"{found.tool} decompressing {path.name}",
            stdin=proc.PIPE,
            stdout=proc.PIPE,
        )
        feeder = _Feeder(child.stdin, source=cast(IO[bytes], hashing))
        feeder.start()
        content = ArchiveContent(
            path, hashing, proc.interruptible(child.stdout), child, feeder, expect
        )
        try:
            yield content
        finally:
            if not content.checked:
                content.abandon()


def _unreadable(path: Path, exc: CommandFailed) -> ArchiveError:
    return ArchiveError(f"{path.name} is truncated or corrupt: {exc.message}", "use another backup")


def load(
    argv: Sequence[str | Path],
    env: Mapping[str, str],
    content: Content,
    *,
    what: str,
    secrets: Sequence[str] = (),
    prologue: bytes = b"",
    epilogue: bytes = b"",
    transform: Transform | None = None,
) -> None:
    """Run a loader fed ``prologue``, the content (through ``transform``), then ``epilogue``.

    The epilogue (a COMMIT, say) is written only after ``content.check_end()`` proved the
    archive whole and unchanged; on any failure the loader's input ends without it. When
    the loader fails, its own error is the one raised; when the archive fails, the archive's.
    """
    child = proc.Child(argv, env, what=what, secrets=secrets, stdin=proc.PIPE, stdout=proc.DEVNULL)
    out = child.stdin.fileno()
    try:
        _write(out, prologue)
        while chunk := content.read(archive.CHUNK):
            _write(out, transform.feed(chunk) if transform else chunk)
        # The archive's own verdict first (a cut or corrupt file says so), then what the
        # transform may still refuse in a whole one (a dump without its end, say).
        content.check_end()
        if transform is not None:
            _write(out, transform.finish())
        _write(out, epilogue)
    except BrokenPipeError:
        # The loader stopped reading. Its message says why, unless the archive was the cause
        # (a corrupt byte in the middle makes bad SQL): the rest of the archive tells which.
        settle = getattr(content, "settle", None)
        damaged = settle() if settle is not None else None
        _abandon(content)
        try:
            child.wait()
        except CommandFailed:
            if damaged is not None:
                raise ArchiveError(
                    f"{damaged.message}; {what} stopped on it", damaged.hint
                ) from None
            raise
        raise CommandFailed(f"{what} stopped reading its input", "see its log") from None
    except BaseException:
        _abandon(content)
        child.kill()
        raise
    child.wait()


def _abandon(content: Content) -> None:
    stop = getattr(content, "abandon", None)
    if stop is not None:
        stop()


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
