"""Run one PostgreSQL or MariaDB engine restore in a process of its own, as the restore job
runs it.

    python tests/support/restore_child.py <job.json>

job.json: {"db": {...DbParams...}, "archive": path, "manifest": {...}, "folder": path,
"options": {...RestoreContext fields...}, "term_at": step or ""}. The engine is the one
of ``db``'s Django ENGINE. Signals are handled as opskit's CLI handles them;
OPSKIT_TEST_KILL_AT kills it at a named step (opskit's own kill points); ``term_at`` sends
it SIGTERM there instead. The journal goes when the restore leaves it "started" or "done",
as the job does. Exit 0 when restored, 3 on an OpsError.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from opskit import killpoints, signals
from opskit.archive import formats, pipes
from opskit.engines import DbParams, vendor_of
from opskit.engines.base import Engine, RestoreContext
from opskit.engines.journal import Journal
from opskit.engines.mysql import MySQL
from opskit.engines.postgresql import PostgreSQL
from opskit.errors import Interrupted, OpsError

STAMP = "2026-11-22T02:00:00"
ENGINES: dict[str, type[Engine]] = {"postgresql": PostgreSQL, "mysql": MySQL}


def term_at(vendor: str, step: str) -> None:
    """Send this process SIGTERM when the restore reaches ``step`` (then go on as usual)."""
    kill_at = killpoints.reached

    def reached(name: str) -> None:
        if name == f"{vendor}:{step}":
            os.kill(os.getpid(), signal.SIGTERM)
        kill_at(name)

    killpoints.reached = reached


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    db = DbParams(**job["db"])
    vendor = vendor_of(db.django_engine)
    folder = Path(job["folder"])
    manifest = job["manifest"]
    if job.get("term_at"):
        term_at(vendor, job["term_at"])
    signals.install()
    ctx = RestoreContext(work_dir=folder, now=datetime.fromisoformat(STAMP).astimezone())
    ctx.manifest = manifest
    for key, value in job.get("options", {}).items():
        setattr(ctx, key, value)
    ctx.journal = Journal.begin(folder, alias=db.alias, engine=vendor, database=db.name)
    expect = pipes.Expect(manifest["size"], manifest["sha256"])
    try:
        ENGINES[vendor]().restore(db, formats.opener(Path(job["archive"]), expect=expect), ctx)
    except OpsError as exc:
        print(exc.line(), file=sys.stderr)
        return 3
    except Interrupted as exc:
        print(f"stopped by signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        if ctx.journal.phase in ("started", "done"):
            ctx.journal.finish()
        print(json.dumps(ctx.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
