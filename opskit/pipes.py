"""Programs joined by OS pipes: a dump into a compressor, a decompressor into a loader.

Python stays out of the way of the uncompressed data: it only sees the compressed side,
which is several times smaller, to hash it, check it and report progress.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from opskit import archive, codec, pgdir, proc
from opskit.engines.base import ArchiveDir, OpenArchive
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


def compress_to_temp(
    source: IO[bytes],
    final: Path,
    compress: str,
    level: int,
    progress: ProgressFn | None = None,
    label: str = "",
) -> archive.Written:
    """Compress ``source`` into a verified temp file beside ``final``.

    With the zstd, pigz or gzip program installed, it compresses beside the dump and this
    process only checks its output; without, the libraries compress here, and the file is
    read back once to check it.
    """
    if compress == "none":
        # Nothing to decompress: written once and hashed on the way, like the others.
        return archive.write_verified(source, final, "none", progress, label)
    found = codec.find(compress)
    if found.program is None:
        written = archive.write_stream(
            counting(source, label, None, progress), final, compress, level
        )
        try:
            archive.check_written(written, compress, final.name)
        except BaseException:
            written.path.unlink(missing_ok=True)
            raise
        return written
    what = f"{found.tool} compressing into {final.name}"
    with through(source, found.compress_argv(level), what=what) as compressed:
        written = archive.write_verified(compressed, final, compress, progress, label)
    return written


@contextlib.contextmanager
def decompressed(
    path: Path,
    compress: str | None = None,
    progress: ProgressFn | None = None,
    label: str = "",
) -> Iterator[IO[bytes]]:
    """Yield the archive's content as a pipe a loader can read directly (where possible).

    The decompressor program reads the archive from this process, which reports progress
    by the compressed bytes; its output goes straight to whoever reads the pipe.
    """
    compress = compress or archive.compression_of(path)
    found = codec.find(compress)
    total = path.stat().st_size
    if found.program is None:
        with archive.open_content(path, compress) as content:
            yield counting(content, label, total, progress)
        return
    child = proc.Child(
        found.decompress_argv(),
        os.environ,
        what=f"{found.tool} decompressing {path.name}",
        stdin=proc.PIPE,
        stdout=proc.PIPE,
    )
    with path.open("rb") as fh:
        feeder = _Feeder(child.stdin, source=fh, progress=progress, label=label, total=total)
        feeder.start()
        try:
            with _blaming(child, lambda failure: _unreadable(path, failure)):
                yield child.stdout
        finally:
            feeder.join()
    try:
        child.wait()
    except CommandFailed as exc:
        raise _unreadable(path, exc) from None


def opener(
    path: Path, compress: str | None = None, progress: ProgressFn | None = None, label: str = ""
) -> OpenArchive:
    """Return what an engine loads: a directory archive's folder, else its content's stream."""
    if path.is_dir():
        return ArchiveDir(path, pgdir.jobs())
    return lambda: decompressed(path, compress, progress, label)


def _unreadable(path: Path, exc: CommandFailed) -> ArchiveError:
    return ArchiveError(f"{path.name} is truncated or corrupt: {exc.message}", "use another backup")


def load(
    argv: Sequence[str | Path],
    env: dict[str, str],
    content: IO[bytes],
    *,
    what: str,
    secrets: Sequence[str] = (),
) -> None:
    """Run a loader with ``content`` as its stdin: the pipe itself when it has one."""
    fds = source_fds(content)
    if fds is None or len(fds) != 1:
        with proc.writing(argv, env, what=what, secrets=secrets) as stdin:
            shutil.copyfileobj(content, stdin, archive.CHUNK)
        return
    child = proc.Child(argv, env, what=what, secrets=secrets, stdin=fds[0], stdout=proc.DEVNULL)
    # If the loader stops reading, the decompressor must see a broken pipe, not wait.
    content.close()
    try:
        child.wait()
    except BaseException:
        child.kill()
        raise
