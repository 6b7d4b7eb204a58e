"""Manifests: what an archive holds and of which database, checked field by field and signed.

Every archive has a sidecar ``<archive>.json``. It names the database it was taken from
(engine, host, port, name, alias, and the project), the archive's size and sha256, and what
the engine recorded. It is signed with the project's own Django signing machinery
(SECRET_KEY, or OPSKIT["SIGNING_KEY"], with SECRET_KEY_FALLBACKS honoured), so that an
archive and manifest replaced together by someone who can write the backup folder but does
not hold the key are refused at restore and verify time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opskit import django_project, files
from opskit.archive import codec
from opskit.engines import DbParams, vendor_of
from opskit.engines.base import address
from opskit.errors import ArchiveError

if TYPE_CHECKING:
    from opskit.archive.stream import Written

FORMAT = 2
SALT = "opskit.archive.stream-manifest"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ArchiveError):
    """A manifest is missing, malformed, unsigned, forged, or of another database."""


def path_of(archive: Path) -> Path:
    return archive.with_name(archive.name + ".json")


# --- identity --------------------------------------------------------------------------------


def identity(db: DbParams, settings_module: str, project_dir: Path) -> dict[str, Any]:
    """Return what names a database and its project, as recorded in every manifest."""
    vendor = vendor_of(db.django_engine)
    name = str(Path(db.name).resolve()) if vendor == "sqlite" else db.name
    return {
        "engine": vendor,
        "host": "" if vendor == "sqlite" else db.host,
        "port": "" if vendor == "sqlite" else db.port,
        "database": name,
        "alias": db.alias,
        "project": {"settings": settings_module, "dir": str(project_dir)},
    }


def record(
    vendor: str,
    db: DbParams,
    identity: Mapping[str, Any],
    final: Path,
    written: Written,
    compression: str,
    finished: datetime,
) -> dict[str, Any]:
    """The fields every manifest holds: the database, the file and its content, when it ended.

    ``finished`` is when the archive was complete: the time a restore reads as its age.
    """
    return {
        "format": FORMAT,
        "engine": vendor,
        "database": db.name,
        "alias": db.alias,
        "identity": dict(identity),
        "file": final.name,
        "compression": compression,
        "size": written.size,
        "raw_size": written.raw_size,
        "sha256": written.sha256,
        "finished_at": finished.astimezone().isoformat(),
        "verified": True,
    }


def describe_identity(ident: Mapping[str, Any]) -> str:
    where = ""
    if ident.get("host") or ident.get("port"):
        where = f" on {address(str(ident.get('host') or ''), ident.get('port') or '')}"
    return f"{ident.get('engine', '?')} database {ident.get('database', '?')!r}{where}"


def other_database(manifest: Mapping[str, Any], ident: Mapping[str, Any]) -> str:
    """Say how the manifest's database differs from ``ident`` ("" when it is the same one)."""
    theirs = manifest.get("identity")
    if not isinstance(theirs, Mapping):
        return "its manifest does not say which database it was taken from"
    keys = ("engine", "host", "port", "database")
    if all(str(theirs.get(k, "")) == str(ident.get(k, "")) for k in keys):
        return ""
    return f"it is a backup of {describe_identity(theirs)}, not of {describe_identity(ident)}"


# --- signing ---------------------------------------------------------------------------------


def canonical(manifest: Mapping[str, Any]) -> str:
    """Return the bytes that are signed: the manifest without its signature, in one form."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sign(manifest: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Add the signature (when the project has a key); return the manifest."""
    manifest.pop("signature", None)
    if keys:
        manifest["signature"] = django_project.sign(canonical(manifest), keys, SALT)
    return manifest


def check_signature(path: Path, manifest: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Raise ManifestError unless the manifest is signed with one of ``keys``."""
    fix = "if you know where this archive comes from and have inspected it, pass --trust-unsigned"
    signature = manifest.get("signature")
    if not signature:
        raise ManifestError(f"{path.name} is not signed", fix)
    if not keys:
        raise ManifestError(
            f"cannot check the signature of {path.name}: the project has no SECRET_KEY",
            "set SECRET_KEY or OPSKIT['SIGNING_KEY'], or pass --trust-unsigned",
        )
    if not django_project.signature_ok(canonical(manifest), str(signature), keys, SALT):
        raise ManifestError(
            f"{path.name} has a bad signature (written with another key, or altered)",
            fix + "; restoring from another project needs its key in OPSKIT['SIGNING_KEY']",
        )


# --- reading ---------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return _is_int(v) or isinstance(v, float)


def _is_time(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _counts(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _is_int(n) for k, n in v.items())


def _listing(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(e, list) and len(e) == 2 and _is_int(e[0]) and isinstance(e[1], str)
        for e in v.values()
    )


# field -> (check, what it must be); checked when present. Required fields are below.
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "format": (_is_int, "a whole number"),
    "engine": (lambda v: v in ("postgresql", "mysql", "sqlite"), "postgresql, mysql or sqlite"),
    "sha256": (lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)), "64 hex digits"),
    "size": (lambda v: _is_int(v) and v >= 0, "a byte count"),
    "raw_size": (lambda v: _is_int(v) and v >= 0, "a byte count"),
    "compression": (lambda v: v in codec.NAMES, " or ".join(codec.NAMES)),
    "archive_format": (lambda v: v in ("plain", "directory"), "plain or directory"),
    "ratio": (lambda v: v is None or _is_number(v), "a number"),
    "duration": (_is_number, "a number of seconds"),
    "started_at": (_is_time, "an ISO 8601 time"),
    "finished_at": (_is_time, "an ISO 8601 time"),
    "verified": (lambda v: isinstance(v, bool), "true or false"),
    "safety_copy": (lambda v: isinstance(v, bool), "true or false"),
    "excluded_table_data": (_str_list, "a list of table names"),
    "tables": (_counts, "table names with row counts"),
    "files": (_listing, "file names with [size, sha256]"),
    "tools": (lambda v: isinstance(v, dict), "an object"),
    "identity": (lambda v: isinstance(v, dict), "an object"),
    "properties": (lambda v: isinstance(v, dict), "an object"),
    "signature": (lambda v: isinstance(v, str), "a string"),
}
for _name in ("alias", "database", "host", "port", "user", "file", "opskit_version", "hostname"):
    _FIELDS[_name] = (lambda v: isinstance(v, str), "a string")
REQUIRED = ("engine", "sha256", "size")


def validate(path: Path, data: Any) -> dict[str, Any]:
    """Return ``data`` if it is a well-formed manifest; else one line naming the field."""
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} is not a JSON object", "run a new backup")
    for name in REQUIRED:
        if name not in data:
            raise ManifestError(f"manifest {path} has no {name!r} field", "run a new backup")
    for name, value in data.items():
        check = _FIELDS.get(name)
        if check is not None and not check[0](value):
            raise ManifestError(
                f"manifest {path}: field {name!r} must be {check[1]}, not {value!r:.60}",
                "run a new backup; do not restore from an archive whose manifest was edited",
            )
    return data


def read(archive: Path) -> dict[str, Any]:
    """Return an archive's manifest, checked field by field; a problem is one line."""
    path = path_of(archive)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{archive.name} has no manifest {path.name}",
            "restore only archives written by opskit backup, with their .json beside them",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {path} is unreadable: {exc}", "run a new backup") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(
            f"manifest {path} is unreadable (not JSON: {exc})", "run a new backup"
        ) from None
    return validate(path, data)


def finished_at(manifest: Mapping[str, Any]) -> datetime | None:
    """When the archive was made, as an aware time (None when the manifest does not say)."""
    text = manifest.get("finished_at")
    if not isinstance(text, str):
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.astimezone()


def write(manifest: dict[str, Any], final: Path) -> None:
    """Write a manifest atomically (exclusive temp file, fsync, rename), mode 0600."""
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    files.write_atomic(final, data, 0o600)
