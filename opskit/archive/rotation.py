"""Weekday rotation: slot names, folders, the latest link, stale temp files, listing."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import files, killpoints, logs
from opskit.archive import formats
from opskit.archive.stream import remove, size_of
from opskit.errors import ArchiveError, ConfigError, OpsError
from opskit.files import commit, fsync
from opskit.proc import pid_alive

log = logs.get("backup")

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
    """Create a backup folder (and parents) with mode 0700; use an existing one as it is.

    A folder opskit did not create is never chmodded; one that others can write is used
    with a warning, since they could replace what is in it (manifests are signed for that).
    """
    try:
        files.make_dirs(folder, 0o700)
    except OSError as exc:
        raise OpsError(
            f"cannot create {folder}: {exc.strerror or exc}", "check --backup-dir"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OpsError(
            f"{folder} is not writable by this user", "fix its owner or set --backup-dir"
        )
    who = files.writable_by_others(folder)
    if who:
        log.warning(
            "backup_folder_shared",
            folder=str(folder),
            writable_by=who,
            fix=f"chmod go-w {folder}, or use a folder only this user can write",
        )


OWNER_FILE = ".opskit-folder.json"


def claim(folder: Path, identity: dict[str, Any]) -> None:
    """Record which database a folder's backups are of; refuse a second one's.

    Two projects pointed at one folder would overwrite each other's weekday slots. The
    database is known by its engine and name: a server that moved (another host or port)
    is the same database, and is only logged.
    """
    path = folder / OWNER_FILE
    if not path.exists() and not path.is_symlink():
        data = json.dumps(identity, indent=2, sort_keys=True).encode() + b"\n"
        files.write_atomic(path, data, 0o600)
        return
    known: Any = None
    if files.is_own_regular(path):
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(known, dict):
        raise OpsError(
            f"{path} is not a record opskit wrote",
            "inspect and remove it; the next backup rewrites it",
        )
    from opskit.archive.manifest import describe_identity

    if all(str(known.get(k, "")) == str(identity.get(k, "")) for k in ("engine", "database")):
        if any(str(known.get(k, "")) != str(identity.get(k, "")) for k in ("host", "port")):
            log.warning(
                "database_server_changed",
                folder=str(folder),
                before=describe_identity(known),
                now=describe_identity(identity),
            )
            files.write_atomic(path, json.dumps(identity, indent=2, sort_keys=True).encode(), 0o600)
        return
    project = known.get("project")
    project = project if isinstance(project, dict) else {}
    raise OpsError(
        f"{folder} holds the backups of {describe_identity(known)} (project"
        f" {project.get('dir', '?')}), not of {describe_identity(identity)} (project"
        f" {identity['project']['dir']}): two databases must not share a backup folder",
        "set BACKUP_DIR (or --backup-dir) of one of them elsewhere; if this is the same"
        f" database under a new name, move the old backups away and remove {path}",
    )


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
    tmp = files.temp_name(link)
    os.symlink(archive.name, tmp)  # relative: the folder can be moved or mounted elsewhere
    commit(tmp, link)
    for other in latest_links(archive.parent):
        if other != link:
            other.unlink()
    return link


def commit_archive(tmp: Path, final: Path, record: dict[str, Any]) -> None:
    """Put a verified archive and its manifest in place so that a kill at any instant is safe.

    The manifest is written (fsynced) under a temporary name first; then the archive is
    renamed into the slot, then the manifest. Killed between the two renames, the slot holds
    the new archive beside the old manifest: ``recover_commits`` finds the temporary
    manifest that matches the archive and completes the commit; killed before, the old
    pair is untouched and the temporary files are swept.
    """
    from opskit.archive import manifest as manifests

    final_manifest = manifests.path_of(final)
    pending = files.temp_name(final_manifest)
    try:
        data = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
        fd = files.create(pending)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        fsync(final.parent)
        killpoints.reached("backup:manifest-pending")
        if tmp.is_dir():
            exchange(tmp, final)
        else:
            os.replace(tmp, final)
        killpoints.reached("backup:archive-renamed")
        os.replace(pending, final_manifest)
        fsync(final.parent)
        killpoints.reached("backup:manifest-renamed")
    except OSError as exc:
        pending.unlink(missing_ok=True)
        raise OpsError(f"cannot rename into {final}: {exc.strerror}", "check the disk") from None
    if tmp.is_dir():
        remove(tmp)  # the previous folder archive, swapped out


def exchange(new: Path, final: Path) -> None:
    """Put the folder ``new`` at ``final``; the previous folder (if any) ends up at ``new``.

    renameat2(RENAME_EXCHANGE) swaps both names in one step, so the slot is never empty.
    Where the file system cannot, the old folder is first renamed aside under a name the
    recovery knows (``.<slot>.old.tmp-<pid>``), which it renames back if killed between.
    """
    if not final.exists():
        os.rename(new, final)
        return
    if _exchange is not None and _exchange(new, final):
        return
    old = final.with_name(f".{final.name}.old.tmp-{os.getpid()}")
    os.rename(final, old)
    killpoints.reached("backup:old-folder-aside")
    os.rename(new, final)
    os.rename(old, new)


def _renameat2() -> Callable[[Path, Path], bool] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2

    def swap(a: Path, b: Path) -> bool:
        if call(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return False  # this file system cannot: do it in two renames
        raise OSError(err, os.strerror(err), str(b))

    return swap


_exchange = _renameat2()


def drop_other_formats(archive: Path) -> list[Path]:
    """Remove the same slot's archives in other formats (e.g. .gz after switching to zstd).

    Only files that opskit's own manifests name are deleted; anything else is left alone.
    """
    from opskit.archive import manifest as manifests

    slot = archive.name.split(".", 1)[0]
    removed = []
    for other in _archives(archive.parent, slot):
        if other == archive:
            continue
        try:
            named = manifests.read(other).get("file") == other.name
        except OpsError:
            named = False
        if not named:
            log.warning(
                "unknown_file_kept",
                path=str(other),
                reason="no opskit manifest names it, so opskit leaves it alone",
            )
            continue
        remove(other)
        with contextlib.suppress(FileNotFoundError):
            manifests.path_of(other).unlink()
        removed.append(other)
    if removed:
        fsync(archive.parent)
    return removed


def recover_commits(folder: Path) -> list[str]:
    """Finish or undo backup commits that a killed opskit left half-done; say what was done."""
    from opskit.archive import manifest as manifests

    done: list[str] = []
    if not folder.is_dir():
        return done
    for path in sorted(folder.iterdir()):
        match = _TMP.match(path.name)
        if not match or (pid_alive(int(match.group(1))) and int(match.group(1)) != os.getpid()):
            continue
        real = path.name[1 : path.name.rindex(".tmp-")]
        if real.endswith(".old") and path.is_dir() and not path.is_symlink():
            target = folder / real[: -len(".old")]
            if not target.exists():
                os.rename(path, target)
                fsync(folder)
                done.append(f"put {target.name} back in its slot (a folder swap was cut short)")
        elif real.endswith(".json") and files.is_own_regular(path):
            target = folder / real[: -len(".json")]
            try:
                record = manifests.validate(path, json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, OpsError):
                continue  # swept as a stale temp file
            if target.exists() and _matches(target, record):
                os.replace(path, manifests.path_of(target))
                fsync(folder)
                done.append(f"completed the commit of {target.name} (its manifest was pending)")
    return done


def _matches(target: Path, record: dict[str, Any]) -> bool:
    """Whether the archive at ``target`` is the one a pending manifest describes."""
    try:
        sha256 = formats.of(target).sha256
        return bool(size_of(target) == record["size"] and sha256(target) == record["sha256"])
    except OSError:
        return False


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
