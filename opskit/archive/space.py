"""Free space: refuse to start a dump that cannot fit, with the numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

from opskit.archive.rotation import list_archives
from opskit.archive.stream import size_of
from opskit.errors import OpsError
from opskit.progress import human

MARGIN = 1.1  # databases grow; a dump a tenth larger than last night's must still fit


def expected_size(folder: Path, final: Path) -> int:
    """Return the size of this database's newest archive (0 when there is none)."""
    archives = [p for p in list_archives(folder) if p.suffixes[-1:] == final.suffixes[-1:]]
    archives = archives or list_archives(folder)
    if not archives:
        return 0
    return size_of(max(archives, key=lambda p: p.stat().st_mtime))


def check(folder: Path, needed: int, basis: str, free: int | None = None) -> None:
    """Raise OpsError unless ``folder`` has room for ``needed`` bytes plus the margin."""
    free = shutil.disk_usage(folder).free if free is None else free
    want = int(needed * MARGIN)
    if needed and free < want:
        raise OpsError(
            f"not enough free space in {folder}: {human(free)} free, {human(want)} needed"
            f" ({basis} plus 10%)",
            "free some space or point --backup-dir at a bigger disk",
        )
