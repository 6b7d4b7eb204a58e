"""Compressions: one entry each, everything opskit needs to know about it.

Each entry says the archive's file ending, which programs do the work (they run beside the
dump, joined to it by OS pipes, so the uncompressed stream never passes through Python),
their argv, and the in-process library that stands in when no program is installed.
``Decoder`` checks a compressed stream as it goes by. A new compression is one entry here.
"""

from __future__ import annotations

import dataclasses
import shutil
import zlib
from collections.abc import Callable
from typing import Any

import zstandard

from opskit.errors import ArchiveError


def _zstd_argv(program: str, level: int) -> list[str]:
    ultra = ["--ultra"] if level > 19 else []
    return [program, "-q", "-c", "-T0", *ultra, f"-{level}"]


def _gzip_argv(program: str, level: int) -> list[str]:
    return [program, "-c", "-n", f"-{level}"]  # gzip, pigz: -n, no name or time


class _Gzip:
    """zlib in gzip framing, with the compress/flush interface zstandard's objects have."""

    def __init__(self, level: int) -> None:
        self.obj = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self.obj.compress(data)

    def flush(self) -> bytes:
        return self.obj.flush()


@dataclasses.dataclass(frozen=True)
class Spec:
    """One compression: its name, file ending, programs (in order of preference), and the
    in-process library's encoder and decoder."""

    name: str
    extension: str
    programs: tuple[str, ...] = ()
    library: str = ""
    argv: Callable[[str, int], list[str]] | None = None
    encoder: Callable[[int, int], Any] | None = None  # (level, threads) -> .compress/.flush
    decoder: Callable[[], Any] | None = None  # -> .decompress/.eof/.unused_data (.flush)
    errors: tuple[type[Exception], ...] = ()


CODECS: dict[str, Spec] = {
    "zstd": Spec(
        "zstd",
        ".zst",
        ("zstd",),
        "in-process zstandard",
        _zstd_argv,
        lambda level, threads: zstandard.ZstdCompressor(level=level, threads=threads).compressobj(),
        lambda: zstandard.ZstdDecompressor().decompressobj(),
        (zstandard.ZstdError,),
    ),
    # pigz compresses on every core; gzip's output is the same format, on one core.
    "gzip": Spec(
        "gzip",
        ".gz",
        ("pigz", "gzip"),
        "in-process zlib",
        _gzip_argv,
        lambda level, threads: _Gzip(level),
        lambda: zlib.decompressobj(31),
        (zlib.error,),
    ),
    "none": Spec("none", ""),
}
NAMES = tuple(CODECS)  # what --compress, OPSKIT["COMPRESS"] and manifests accept


def of_name(filename: str) -> str:
    """Return the compression an archive's file name says it has ("none" if no ending)."""
    for name, spec in CODECS.items():
        if spec.extension and filename.endswith(spec.extension):
            return name
    return "none"


@dataclasses.dataclass(frozen=True)
class Codec:
    """How one compression is done here: by ``program`` (a path), or in process when None."""

    name: str
    program: str | None = None

    @property
    def spec(self) -> Spec:
        return CODECS[self.name]

    @property
    def tool(self) -> str:
        """The program's name ("zstd", "pigz", "gzip"), or "" when done in process."""
        return self.program.rsplit("/", 1)[-1] if self.program else ""

    @property
    def label(self) -> str:
        """What the log says does the work, e.g. "zstd (/usr/bin/zstd)" or "in-process zlib"."""
        if self.name == "none":
            return "none"
        if self.program:
            return f"{self.tool} ({self.program})"
        return self.spec.library

    def compress_argv(self, level: int) -> list[str]:
        assert self.program is not None
        assert self.spec.argv is not None
        return self.spec.argv(self.program, level)

    def decompress_argv(self) -> list[str]:
        assert self.program is not None
        return [self.program, "-q", "-d", "-c"]

    def encoder(self, level: int, threads: int = -1) -> Any:
        """The in-process compressor: ``.compress(data)`` and ``.flush()``, or None for none."""
        make = self.spec.encoder
        return make(level, threads) if make is not None else None


def find(name: str) -> Codec:
    """Return the codec for ``name``: its first program on PATH, else the in-process library."""
    for program in CODECS[name].programs:
        path = shutil.which(program)
        if path:
            return Codec(name, path)
    return Codec(name)


class Decoder:
    """Decompress a stream fed in pieces; fail loudly on corruption or a missing end."""

    def __init__(self, compress: str, name: str) -> None:
        self.spec = CODECS[compress]
        self.name = name
        self.dobj: Any = self._new()

    def _new(self) -> Any:
        return self.spec.decoder() if self.spec.decoder is not None else None

    def feed(self, chunk: bytes) -> bytes:
        """Return the content that ``chunk`` completes."""
        if self.dobj is None:
            return chunk
        try:
            data: bytes = self.dobj.decompress(chunk)
            if self.dobj.eof and self.dobj.unused_data:
                # Several frames or gzip members one after another are one valid stream.
                rest = self.dobj.unused_data
                self.dobj = self._new()
                data += self.feed(rest)
            return data
        except self.spec.errors as exc:
            raise ArchiveError(f"{self.name} is corrupt: {exc}", "use another backup") from None

    def finish(self) -> bytes:
        """Return what is left; raise ArchiveError if the stream stopped before its end."""
        if self.dobj is None:
            return b""
        rest: bytes = self.dobj.flush() if hasattr(self.dobj, "flush") else b""
        if not self.dobj.eof:
            raise ArchiveError(f"{self.name} is truncated", "use another backup")
        return rest
