"""The clear-sessions job: delete expired Django sessions with Django's own clearsessions."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from opskit import django_project, logs
from opskit.errors import OpsError
from opskit.report import Report, StepFailed

log = logs.get("sessions")
STEP = "clear-sessions"


def run_clear_sessions(now: datetime) -> Report:
    """Run ``clearsessions`` once and, for a database engine, count the rows it removed."""
    report = Report("clear-sessions")
    try:
        alias = django_project.session_database()
    except OpsError as exc:
        report.fail(STEP, None, exc.line())
        return report
    # Sessions live wherever the router writes the Session model, so one step covers them all.
    with contextlib.suppress(StepFailed), report.step(STEP, alias):
        details = _clear(alias, now)
        report.details[alias or "sessions"] = details
        log.info("sessions_cleared", job="clear-sessions", database=alias, **details)
    return report


def _clear(alias: str | None, now: datetime) -> dict[str, Any]:
    engine = django_project.session_engine_name()
    if alias is None:
        # File and cache engines keep no countable rows (a cache expires its own entries).
        django_project.clear_sessions(None)
        return {"engine": engine}
    expired, _ = django_project.count_sessions(alias, now)
    django_project.clear_sessions(alias)
    # Counting expired rows (not all rows) ignores sessions that visitors create meanwhile.
    still_expired, remaining = django_project.count_sessions(alias, now)
    return {"engine": engine, "removed": expired - still_expired, "remaining": remaining}


def describe(details: dict[str, Any]) -> str:
    """Say in words what one clear-sessions run did."""
    if "removed" not in details:
        return f"cleared expired sessions ({details['engine']})"
    word = "session" if details["removed"] == 1 else "sessions"
    return f"removed {details['removed']} expired {word}, {details['remaining']} left"
