"""Steps and reports: what a job did, and the exit status it earns."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opskit import status
from opskit.errors import OpsError


@dataclasses.dataclass
class Step:
    """One named step of a job, for one database (or none)."""

    name: str
    database: str | None = None
    ok: bool = True
    reason: str = ""
    duration: float = 0.0


@dataclasses.dataclass
class Report:
    """The steps of one job run; its exit status is the number of failed steps."""

    job: str
    steps: list[Step] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.monotonic)
    bytes: int = 0
    details: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.steps if not s.ok)

    @property
    def exit_code(self) -> int:
        return status.for_errors(self.errors)

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started

    def fail(self, name: str, database: str | None, reason: str) -> Step:
        """Record a failed step without running anything."""
        step = Step(name, database, ok=False, reason=reason)
        self.steps.append(step)
        return step

    @contextmanager
    def step(self, name: str, database: str | None = None) -> Iterator[Step]:
        """Run a block as a step: an OpsError fails it; anything else propagates.

        Its start and end are debug events (shown with -v), the end with the step's duration.
        """
        from opskit import logs

        log = logs.get()
        step = Step(name, database)
        start = time.monotonic()
        self.steps.append(step)
        log.debug("step_started", job=self.job, step=name, database=database)
        try:
            yield step
        except OpsError as exc:
            step.ok = False
            step.reason = exc.line()
            raise StepFailed(step) from exc
        finally:
            step.duration = time.monotonic() - start
            log.debug(
                "step_finished",
                job=self.job,
                step=name,
                database=database,
                ok=step.ok,
                duration=round(step.duration, 3),
                since_start=round(time.monotonic() - self.started, 3),
            )

    def failed(self, database: str | None = None) -> list[Step]:
        return [s for s in self.steps if not s.ok and (database is None or s.database == database)]


class StepFailed(Exception):
    """Raised out of ``Report.step`` so a job can skip the rest of a database's steps."""

    def __init__(self, step: Step) -> None:
        self.step = step
        super().__init__(step.reason)
