"""The maintenance switch: one small JSON file in the state folder that every web worker reads.

No Django here (the middleware in ``opskit.web`` is the Django side). Writers (``opskit
maintenance``, ``opskit restore``) replace ``<STATE_DIR>/maintenance.json`` atomically under a
lock; readers (``Watcher``, once per web worker) stat it on each request and re-read it only
when it changed, so maintenance off costs one stat(2) per request and needs no database, and
every worker sees a change on its next request, even while the database is being swapped.

What is on: the whole site (``opskit maintenance on``), URL prefixes (``--path /shop/``), and
holds of restores: a restore holds maintenance for its swap and releases it at the end; a
restore that was killed leaves its hold until its journal is resolved (``opskit restore
--recover``, or the next backup of that database).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from opskit import files, logs
from opskit.archive import locks
from opskit.errors import OpsError

FILE = "maintenance.json"
FORMAT = 1
FILE_MODE = 0o640  # web workers of the same group may read it; it holds no secret
DIR_MODE = 0o750
REREAD = 1.0  # seconds: a reader re-reads an unchanged file this often all the same

log = logs.get("maintenance")


class MaintenanceError(OpsError):
    """The state file cannot be read or written."""


@dataclasses.dataclass(frozen=True)
class Switch:
    """Maintenance turned on by hand, for the whole site or one URL prefix."""

    since: float
    message: str = ""  # "" = the configured MAINTENANCE_MESSAGE
    until: float | None = None  # off by itself at this time (``--for``)
    by: str = ""

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def retry_after(self, now: float, default: int) -> int:
        """Seconds a client should wait: until the end if known, else ``default``."""
        if self.until is None:
            return default
        return max(1, round(self.until - now))


@dataclasses.dataclass(frozen=True)
class Hold:
    """A restore keeping the site in maintenance while it touches the live database."""

    alias: str
    pid: int
    since: float
    journal: str
    host: str = ""

    def switch(self) -> Switch:
        return Switch(since=self.since, by=f"opskit restore of {self.alias!r} (pid {self.pid})")

    def stale(self) -> bool:
        """Whether its restore is gone and left no journal (only knowable on its host)."""
        from opskit.proc import pid_alive

        if self.host and self.host != socket.gethostname():
            return False
        return not pid_alive(self.pid) and not Path(self.journal).exists()


@dataclasses.dataclass(frozen=True)
class State:
    """Everything that is on. An empty State means the site is served as usual."""

    site: Switch | None = None
    paths: Mapping[str, Switch] = dataclasses.field(default_factory=dict)
    restores: Mapping[str, Hold] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.site is None and not self.paths and not self.restores

    def applies(self, path: str, now: float) -> Switch | None:
        """The switch that puts ``path`` in maintenance now, or None."""
        if self.restores:
            return next(iter(self.restores.values())).switch()
        if self.site is not None and self.site.active(now):
            return self.site
        matching = [(len(p), s) for p, s in self.paths.items() if path.startswith(p)]
        active = [m for m in matching if m[1].active(now)]
        return max(active, key=lambda m: m[0])[1] if active else None

    def active(self, now: float) -> State:
        """The same state without the switches whose time ran out."""
        site = self.site if self.site is not None and self.site.active(now) else None
        paths = {p: s for p, s in self.paths.items() if s.active(now)}
        return State(site, paths, dict(self.restores))

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "site": dataclasses.asdict(self.site) if self.site else None,
            "paths": {p: dataclasses.asdict(s) for p, s in sorted(self.paths.items())},
            "restores": {a: dataclasses.asdict(h) for a, h in sorted(self.restores.items())},
        }


OFF = State()


def path_in(state_dir: Path) -> Path:
    return state_dir / FILE


def parse(data: Any) -> State:
    """Build a State from the file's JSON; raise ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")

    def switch(item: Any) -> Switch:
        if not isinstance(item, dict):
            raise ValueError("a switch is not an object")
        until = item.get("until")
        return Switch(
            since=float(item.get("since") or 0),
            message=str(item.get("message") or ""),
            until=None if until is None else float(until),
            by=str(item.get("by") or ""),
        )

    site = data.get("site")
    paths = data.get("paths") or {}
    restores = data.get("restores") or {}
    if not isinstance(paths, dict) or not isinstance(restores, dict):
        raise ValueError("paths and restores must be objects")
    holds = {}
    for alias, item in restores.items():
        if not isinstance(item, dict):
            raise ValueError("a restore hold is not an object")
        holds[str(alias)] = Hold(
            alias=str(alias),
            pid=int(item.get("pid") or 0),
            since=float(item.get("since") or 0),
            journal=str(item.get("journal") or ""),
            host=str(item.get("host") or ""),
        )
    return State(
        site=switch(site) if site is not None else None,
        paths={str(p): switch(s) for p, s in paths.items()},
        restores=holds,
    )


def read(state_dir: Path) -> State:
    """Return what is on (OFF when the file does not exist); a bad file is MaintenanceError."""
    path = path_in(state_dir)
    try:
        return parse(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return OFF
    except (OSError, ValueError, TypeError) as exc:
        raise MaintenanceError(
            f"maintenance state {path} is unreadable: {exc}",
            "fix its owner or mode; remove it to turn every switch off",
        ) from None


@contextlib.contextmanager
def _updating(state_dir: Path) -> Iterator[list[State]]:
    """Read the state under the folder's lock, let the block replace it, write it back."""
    try:
        files.make_dirs(state_dir, DIR_MODE)
        lock = locks.hold(state_dir / ".maintenance.lock", what="opskit maintenance", wait=10)
        with lock:
            box = [read(state_dir).active(time.time())]
            before = box[0]
            yield box
            if box[0] != before or (not box[0].empty and not path_in(state_dir).exists()):
                data = json.dumps(box[0].as_dict(), indent=2, sort_keys=True) + "\n"
                files.write_atomic(path_in(state_dir), data.encode(), FILE_MODE)
    except OSError as exc:
        raise MaintenanceError(
            f"cannot write the maintenance state in {state_dir}: {exc.strerror or exc}",
            "check the folder (OPSKIT['STATE_DIR']) is writable by this user",
        ) from None


def who() -> str:
    """``user@host`` of this run, for the record."""
    try:
        user = os.getlogin()
    except OSError:
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
    return f"{user}@{socket.gethostname()}"


def turn_on(
    state_dir: Path,
    *,
    message: str = "",
    until: float | None = None,
    path: str | None = None,
    now: float | None = None,
) -> State:
    """Put the whole site (or URLs under ``path``) into maintenance; return the new state."""
    now = time.time() if now is None else now
    switch = Switch(since=now, message=message, until=until, by=who())
    with _updating(state_dir) as box:
        old = box[0]
        if path is None:
            box[0] = dataclasses.replace(old, site=switch)
        else:
            box[0] = dataclasses.replace(old, paths={**old.paths, path: switch})
    log.warning(
        "maintenance_on",
        path=path or "/",
        until=until,
        message=message,
        by=switch.by,
    )
    return box[0]


def turn_off(state_dir: Path, *, path: str | None = None, force: bool = False) -> State:
    """Turn switches off: every manual one (or the one for ``path``); ``force``: holds too.

    Holds whose restore is gone and left no journal are dropped in any case.
    """
    with _updating(state_dir) as box:
        old = box[0]
        if path is None:
            new = State()
        else:
            new = dataclasses.replace(old, paths={p: s for p, s in old.paths.items() if p != path})
        kept = {a: h for a, h in old.restores.items() if not force and not h.stale()}
        for alias in set(old.restores) - set(kept):
            log.warning("maintenance_hold_dropped", database=alias, forced=force)
        box[0] = dataclasses.replace(new, restores=kept)
    log.info("maintenance_off", path=path or "/", still_held=sorted(box[0].restores))
    return box[0]


def hold(state_dir: Path, alias: str, journal: Path) -> None:
    """Keep the site in maintenance for a restore of ``alias`` (this process)."""
    entry = Hold(alias, os.getpid(), time.time(), str(journal), socket.gethostname())
    with _updating(state_dir) as box:
        box[0] = dataclasses.replace(box[0], restores={**box[0].restores, alias: entry})
    log.warning("maintenance_on", by=f"opskit restore of {alias!r}", database=alias)


def release(state_dir: Path, alias: str) -> bool:
    """Drop the hold of a restore of ``alias``; return whether there was one."""
    if alias not in read(state_dir).restores:
        return False
    with _updating(state_dir) as box:
        found = alias in box[0].restores
        left = {a: h for a, h in box[0].restores.items() if a != alias}
        box[0] = dataclasses.replace(box[0], restores=left)
    if found:
        log.info("maintenance_released", database=alias)
    return found


class RestoreSwitch:
    """Maintenance for one restore: on once its swap begins, off at its end.

    Turning it on never fails the restore: a state folder that cannot be written is logged
    (the site then serves errors during the swap, as it would without opskit).
    """

    def __init__(self, state_dir: Path, alias: str, journal: Path, enabled: bool) -> None:
        self.state_dir = state_dir
        self.alias = alias
        self.journal = journal
        self.enabled = enabled
        self.held = False

    def on(self) -> None:
        if self.held or not self.enabled:
            return
        self.held = True  # first: a signal during the write still ends in a release
        try:
            hold(self.state_dir, self.alias, self.journal)
        except OpsError as exc:
            log.error("maintenance_not_turned_on", database=self.alias, reason=exc.line())

    def end(self) -> None:
        """Off, unless the restore left its journal: then the site stays in maintenance."""
        if not self.held:
            return
        if self.journal.exists():
            log.error(
                "maintenance_kept",
                database=self.alias,
                reason="the restore left its journal: the database may be half-swapped",
                fix=f"run opskit restore --recover --database {self.alias}",
            )
            return
        try:
            release(self.state_dir, self.alias)
        except OpsError as exc:
            log.error("maintenance_not_turned_off", database=self.alias, reason=exc.line())
            return
        self.held = False


class Watcher:
    """What is on, for a web worker: one stat per call, a re-read only when the file changed.

    A file that cannot be read counts as off (the site keeps serving) and ``problem`` says why.
    """

    def __init__(
        self, state_dir: Path, clock: Callable[[], float] = time.monotonic, reread: float = REREAD
    ) -> None:
        self.path = path_in(state_dir)
        self.clock = clock
        self.reread = reread
        self.problem = ""
        self._key: tuple[int, int, int] | None = None
        self._read_at = 0.0
        self._state = OFF

    def state(self) -> State:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._key = None
            self._state = OFF
            return OFF
        except OSError as exc:
            self.problem = f"cannot stat {self.path}: {exc.strerror}"
            return OFF
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        if key != self._key or self.clock() - self._read_at >= self.reread:
            self._load(key)
        return self._state

    def _load(self, key: tuple[int, int, int]) -> None:
        self._read_at = self.clock()
        try:
            with open(self.path, encoding="utf-8") as fh:
                self._state = parse(json.load(fh))
        except FileNotFoundError:
            self._state, self._key = OFF, None
            return
        except (OSError, ValueError, TypeError) as exc:
            self.problem = f"cannot read {self.path}: {exc}"
            self._state = OFF
        else:
            self.problem = ""
        self._key = key
