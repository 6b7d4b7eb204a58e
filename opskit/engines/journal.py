"""The restore journal: every step of a swap is on disk before it runs.

A restore writes ``.opskit-restore-journal.json`` in the database's backup folder when it
starts, records each phase and step as it goes (fsynced), and removes the file when the
live database is whole again. If opskit is killed in between, the next opskit command on
that database reads the journal and lets the engine finish or undo what was left
(``Engine.recover``), so the live database is never left half-swapped, and a backup never
takes a half-restored database for a good one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opskit import files
from opskit.errors import OpsError

NAME = ".opskit-restore-journal.json"


class JournalError(OpsError):
    """A journal is unreadable, or a restore is already recorded as unfinished."""


def path_in(folder: Path) -> Path:
    return folder / NAME


class Journal:
    """One database's restore journal: a dict of facts plus the list of steps done."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state
        # Called after each durable write (e.g. to turn maintenance on as a swap begins).
        self.listeners: list[Callable[[Journal], None]] = []

    @classmethod
    def begin(cls, folder: Path, *, alias: str, engine: str, database: str, **data: Any) -> Journal:
        """Start the journal of a new restore; refuse if an unfinished one is there."""
        path = path_in(folder)
        if path.exists() or path.is_symlink():
            raise JournalError(
                f"{path} records an unfinished restore",
                f"run opskit restore --recover --database {alias} first",
            )
        state: dict[str, Any] = {
            "format": 1,
            "alias": alias,
            "engine": engine,
            "database": database,
            "pid": os.getpid(),
            "started_at": time.time(),
            "phase": "started",
            "steps": [],
            **data,
        }
        journal = cls(path, state)
        journal._write()
        return journal

    @property
    def phase(self) -> str:
        return str(self.state.get("phase", ""))

    @property
    def steps(self) -> list[str]:
        return [str(s) for s in self.state.get("steps", [])]

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def record(self, phase: str | None = None, **data: Any) -> None:
        """Set the phase and/or facts (e.g. names, saved definitions); durable on return."""
        if phase is not None:
            self.state["phase"] = phase
        self.state.update(data)
        self._write()

    def done(self, step: str) -> None:
        """Note that ``step`` has completed; durable on return."""
        self.state.setdefault("steps", []).append(step)
        self._write()

    def has(self, step: str) -> bool:
        return step in self.steps

    def finish(self) -> None:
        """The live database is whole again: remove the journal (durably)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        files.fsync(self.path.parent)

    def describe(self) -> str:
        """Say in a few words what the journal records, for messages."""
        steps = self.steps
        last = f", last step done: {steps[-1]}" if steps else ""
        return (
            f"a restore of {self.state.get('engine', '?')} database"
            f" {self.state.get('database', '?')!r} (pid {self.state.get('pid', '?')})"
            f" stopped in phase {self.phase!r}{last}"
        )

    def _write(self) -> None:
        data = json.dumps(self.state, indent=2, sort_keys=True).encode() + b"\n"
        files.write_atomic(self.path, data, 0o600)
        for listener in self.listeners:
            listener(self)


def load(folder: Path) -> Journal | None:
    """Return the journal left in ``folder``, or None; an unreadable one is a JournalError."""
    path = path_in(folder)
    if path.is_symlink() or (path.exists() and not files.is_own_regular(path)):
        raise JournalError(
            f"{path} is not a journal opskit wrote (a symlink or another user's file)",
            "inspect and remove it",
        )
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise JournalError(
            f"restore journal {path} is unreadable: {exc}",
            "inspect it; remove it only once the database is known to be whole",
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("steps", []), list):
        raise JournalError(f"restore journal {path} is malformed", "inspect it")
    for key in ("alias", "engine", "database", "phase"):
        if not isinstance(state.get(key), str):
            raise JournalError(f"restore journal {path}: field {key!r} is missing", "inspect it")
    return Journal(path, state)
