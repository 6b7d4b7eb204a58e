"""Compression: the zstd, pigz or gzip program when installed, else the in-process libraries.

The programs run beside the dump, joined to it by OS pipes, so the uncompressed stream
never passes through Python. ``Decoder`` checks a compressed stream as it goes by.
"""

from __future__ import annotations

import dataclasses
import shutil
import zlib
from typing import Any

import zstandard

from opskit.errors import ArchiveError


@dataclasses.dataclass(frozen=True)
class Codec:
    """How one compression is done here: by ``program`` (a path), or in process when None."""

    name: str
    program: str | None = None

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
        return {"zstd": "in-process zstandard", "gzip": "in-process zlib"}[self.name]

    def compress_argv(self, level: int) -> list[str]:
        assert self.program is not None
        if self.name == "zstd":
            ultra = ["--ultra"] if level > 19 else []
            return [self.program, "-q", "-c", "-T0", *ultra, f"-{level}"]
        return [self.program, "-c", "-n", f"-{level}"]  # gzip, pigz: -n, no name or time

    def decompress_argv(self) -> list[str]:
        assert self.program is not None
        return [self.program, "-q", "-d", "-c"]


def find(name: str) -> Codec:
    """Return the codec for ``name``: the program on PATH, else the in-process library."""
    if name == "zstd":
        return Codec(name, shutil.which("zstd"))
    if name == "gzip":
        # pigz compresses on every core; gzip's output is the same format, on one core.
        return Codec(name, shutil.which("pigz") or shutil.which("gzip"))
    return Codec("none")


class Decoder:
    """Decompress a stream fed in pieces; fail loudly on corruption or a missing end."""

    def __init__(self, compress: str, name: str) -> None:
        self.compress = compress
        self.name = name
        self.dobj: Any = self._new()

    def _new(self) -> Any:
        if self.compress == "zstd":
            return zstandard.ZstdDecompressor().decompressobj()
        if self.compress == "gzip":
            return zlib.decompressobj(31)
        return None

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
        except (zstandard.ZstdError, zlib.error) as exc:
            raise ArchiveError(f"{self.name} is corrupt: {exc}", "use another backup") from None

    def finish(self) -> bytes:
        """Return what is left; raise ArchiveError if the stream stopped before its end."""
        if self.dobj is None:
            return b""
        rest: bytes = self.dobj.flush() if self.compress == "gzip" else b""
        if not self.dobj.eof:
            raise ArchiveError(f"{self.name} is truncated", "use another backup")
        return rest
