"""The off-site push of a backup run: each verified dump, the media, then retention.

Each destination is one ``offsite`` step of the run. Its first failure (unreachable, locked,
wrong password, full disk, a cut connection) ends that destination's work for the run and
fails its step with one line; the local archives and ``latest`` are already committed and
are never touched, and the other destinations go on.
"""

from __future__ import annotations

import dataclasses
import io
import json
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import logs
from opskit.archive import pipes
from opskit.errors import OpsError
from opskit.offsite import catalog
from opskit.offsite.restic import OffsiteError, Restic
from opskit.offsite.settings import Destination
from opskit.report import Report, Step

log = logs.get("offsite")


def new_run_id(now: datetime) -> str:
    """A run id, shared by the snapshots of one night (databases and media)."""
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class _Bytes:
    """A small in-memory source for ``backup_stream`` (the sidecar)."""

    def __init__(self, data: bytes) -> None:
        self.fh = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.fh.read(size)

    def check_end(self) -> None:
        pass


def push_dump(
    restic: Restic,
    alias: str,
    suffix: str,
    final: Path,
    record: Mapping[str, Any],
    now: datetime,
    run: str,
) -> dict[str, Any]:
    """Push one committed local archive (decompressed) and its sidecar; return the facts."""
    dest = restic.dest
    raw_size = int(record.get("raw_size") or 0)
    dump_tags = catalog.tags(dest, "dump", run, db=alias, size=raw_size)
    if final.is_dir():
        summary = restic.backup_paths([final], dump_tags, now, dest.host)
        sha, size, name, fmt = str(record["sha256"]), int(record["size"]), str(final), "directory"
    else:
        name, fmt = catalog.dump_name(dest, alias, suffix), "plain"
        expect = pipes.Expect(int(record["size"]), str(record["sha256"]))
        compress = str(record.get("compression") or "") or None
        with pipes.decompressed(final, compress, expect=expect) as content:
            summary, sha, size = restic.backup_stream(content, name, dump_tags, now, dest.host)
        name = "/" + name
    snapshot = str(summary["snapshot_id"])
    side = {
        "format": catalog.SIDECAR_FORMAT,
        "run": run,
        "alias": alias,
        "snapshot": snapshot,
        "file": name,
        "archive_format": fmt,
        "sha256": sha,
        "size": size,
        "manifest": dict(record),
    }
    data = json.dumps(side, indent=1, sort_keys=True).encode() + b"\n"
    restic.backup_stream(
        _Bytes(data),
        catalog.sidecar_name(dest, alias),
        catalog.tags(dest, "manifest", run, db=alias),
        now,
        dest.host,
    )
    return {
        "snapshot": snapshot,
        "added": int(summary.get("data_added") or 0),
        "pushed": int(summary.get("total_bytes_processed") or size),
    }


def push_media(restic: Restic, folder: Path, now: datetime, run: str) -> dict[str, Any]:
    dest = restic.dest
    if not folder.is_dir():
        raise OffsiteError(
            f"the media folder {folder} does not exist", "create it or fix OFFSITE 'media'"
        )
    media_tags = catalog.tags(dest, "media", run, media=folder.name)
    summary = restic.backup_paths([folder.resolve()], media_tags, now, dest.host)
    return {
        "snapshot": str(summary["snapshot_id"]),
        "added": int(summary.get("data_added") or 0),
        "pushed": int(summary.get("total_bytes_processed") or 0),
    }


def retention(restic: Restic, groups: list[dict[str, str]]) -> int:
    """``forget`` with the keep policy, per host, project and database (or media folder),
    then ``prune``. Only this host's snapshots of this project are ever selected."""
    dest = restic.dest
    keep = [a for rule, n in dest.keep for a in (f"--keep-{rule}", str(n))]
    removed = 0
    for group in groups:
        wanted = [catalog.TAG, f"project={dest.project}", *(f"{k}={v}" for k, v in group.items())]
        out = restic.json(
            "forget", "--host", dest.host, "--tag", ",".join(wanted), "--group-by", "host", *keep
        )
        for entry in out or []:
            removed += len(entry.get("remove") or [])
    if removed:
        restic.run("prune")
    return removed


@dataclasses.dataclass
class _State:
    dest: Destination
    reason: str = ""
    duration: float = 0.0
    groups: list[dict[str, str]] = dataclasses.field(default_factory=list)
    snapshots: int = 0


class OffsitePush:
    """A backup run's pushes, to every destination; one ``offsite`` step each at the end."""

    def __init__(
        self,
        destinations: tuple[Destination, ...],
        report: Report,
        now: datetime,
        run: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.report = report
        self.now = now
        self.run = run or new_run_id(now)
        self.environ = environ
        self.states = [_State(d) for d in destinations]

    def _attempt(self, state: _State, what: str, action: Any) -> Any:
        if state.reason:
            return None
        start = time.monotonic()
        try:
            return action(Restic(state.dest, self.environ))
        except OpsError as exc:
            state.reason = f"{what}: {exc.line()}"
            log.error("offsite_failed", destination=state.dest.name, reason=state.reason)
            return None
        finally:
            state.duration += time.monotonic() - start

    def database(self, alias: str, suffix: str, final: Path, record: Mapping[str, Any]) -> None:
        """Push one database's newly committed archive to every destination still working."""
        for state in self.states:

            def push(restic: Restic) -> dict[str, Any]:
                return push_dump(restic, alias, suffix, final, record, self.now, self.run)

            facts = self._attempt(state, f"push of {alias!r}", push)
            if facts is None:
                continue
            state.groups += [{"kind": "dump", "db": alias}, {"kind": "manifest", "db": alias}]
            state.snapshots += 1
            detail = self.report.details.setdefault(alias, {})
            detail.setdefault("offsite", {})[state.dest.name] = facts
            log.info(
                "offsite_pushed",
                database=alias,
                destination=state.dest.name,
                run=self.run,
                **facts,
            )

    def finish(self) -> None:
        """Media and retention per destination, then its step (ok, or its first failure)."""
        for state in self.states:
            dest = state.dest
            for folder in dest.media_dirs if dest.media else ():

                def media(restic: Restic, folder: Path = folder) -> dict[str, Any]:
                    return push_media(restic, folder, self.now, self.run)

                facts = self._attempt(state, f"push of media {folder.name!r}", media)
                if facts is not None:
                    state.groups.append({"kind": "media", "media": folder.name})
                    state.snapshots += 1
                    log.info(
                        "offsite_pushed",
                        media=str(folder),
                        destination=dest.name,
                        run=self.run,
                        **facts,
                    )
            if dest.keep and state.groups and not state.reason:

                def forget(restic: Restic, groups: list[dict[str, str]] = state.groups) -> int:
                    return retention(restic, groups)

                removed = self._attempt(state, "retention", forget)
                if removed is not None:
                    log.info("offsite_retention", destination=dest.name, forgotten=removed)
            # The reason names the destination (its name and masked repository) itself.
            step = Step("offsite", None, ok=not state.reason, duration=state.duration)
            step.reason = state.reason
            self.report.steps.append(step)
