"""Weekday rotation: slot names, folders, the latest link, stale temp files, listing."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import datetime
from pathlib import Path

from opskit.archive import EXTENSIONS, remove
from opskit.errors import ArchiveError, ConfigError
from opskit.files import commit, fsync
from opskit.proc import pid_alive

# English whatever the locale: file names must not change with LANG.
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
SLOTS = tuple(f"{n}-{name}" for n, name in enumerate(WEEKDAYS))
# A temp file and the journal SQLite may leave beside a temp database.
_TMP = re.compile(r"^\..+\.tmp-(\d+)(?:-[0-9a-f]+)?(-journal|-wal|-shm)?$")


def slot_for(when: datetime) -> str:
    """Return the rotation slot of a date: ``0-Sunday`` … ``6-Saturday``."""
    return SLOTS[(when.weekday() + 1) % 7]


def parse_slot(text: str) -> str:
    """Accept ``1``, ``Monday``, ``mon`` or ``1-Monday`` and return ``1-Monday``."""
    value = text.strip().lower()
    for n, slot in enumerate(SLOTS):
        name = WEEKDAYS[n].lower()
        if value in (str(n), name, name[:3], slot.lower()):
            return slot
    raise ConfigError(
        f"{text!r} is not a weekday", "use latest, 0-6, a weekday name, or a path to an archive"
    )


def db_dir(backup_dir: Path, alias: str) -> Path:
    """Return the folder of one database's archives (``default`` lives at the top)."""
    return backup_dir if alias == "default" else backup_dir / alias


def ensure_dir(folder: Path) -> None:
    """Create a backup folder with mode 0700 (parents too)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)


def archive_name(slot: str, suffix: str, compress: str) -> str:
    return f"{slot}.{suffix}{EXTENSIONS[compress]}"


def _archives(folder: Path, stem: str) -> list[Path]:
    """Return the archives named ``<stem>.*`` in a folder (not manifests, not temp files)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(stem + ".")
        and not p.name.endswith(".json")
        and (p.is_file() or (p.is_dir() and not p.is_symlink()))
    )


def latest_links(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith("latest.") and p.is_symlink()]


def link_latest(archive: Path) -> Path:
    """Point ``latest.<ext>`` at ``archive`` atomically; drop latest links of other formats."""
    link = archive.with_name("latest" + archive.name[archive.name.index(".") :])
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(archive.name, tmp)  # relative: the folder can be moved or mounted elsewhere
    commit(tmp, link)
    for other in latest_links(archive.parent):
        if other != link:
            other.unlink()
    return link


def drop_other_formats(archive: Path) -> list[Path]:
    """Remove the same slot's archives in other formats (e.g. .gz after switching to zstd)."""
    slot = archive.name.split(".", 1)[0]
    removed = []
    for other in _archives(archive.parent, slot):
        if other != archive:
            remove(other)
            with contextlib.suppress(FileNotFoundError):
                other.with_name(other.name + ".json").unlink()
            removed.append(other)
    if removed:
        fsync(archive.parent)
    return removed


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete temp files and folders left by runs whose process is gone (a killed backup)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TMP.match(path.name)
        pid = int(match.group(1)) if match else 0
        # Our own pid in a name is a leftover of an earlier process that had it.
        if match and (pid == os.getpid() or not pid_alive(pid)):
            remove(path)
            removed.append(path)
    return removed


def find_archive(folder: Path, source: str) -> Path:
    """Resolve ``latest`` or a weekday to an archive file in a database's folder."""
    if source == "latest":
        links = [p for p in latest_links(folder) if p.exists()]
        if not links:
            raise ArchiveError(f"no latest backup in {folder}", "run opskit backup first")
        return links[0].resolve()
    slot = parse_slot(source)
    found = _archives(folder, slot)
    if not found:
        raise ArchiveError(f"no {slot} backup in {folder}", "run opskit list to see what exists")
    return max(found, key=lambda p: p.stat().st_mtime)


def list_archives(folder: Path) -> list[Path]:
    """Return every slot archive of one database, Sunday first."""
    return [p for slot in SLOTS for p in _archives(folder, slot)]
