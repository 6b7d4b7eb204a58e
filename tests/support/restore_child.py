"""Run one MariaDB engine restore in a process of its own, as the restore job runs it.

    python tests/support/restore_child.py <job.json>

job.json: {"db": {...DbParams...}, "archive": path, "manifest": {...}, "folder": path,
"options": {...RestoreContext fields...}, "term_at": step or ""}. Signals are handled as
opskit's CLI handles them; OPSKIT_TEST_KILL_AT kills it at a named step (opskit's own kill
points); ``term_at`` sends it SIGTERM there instead. The journal goes when the restore
leaves it "started" or "done", as the job does. Exit 0 when restored, 3 on an OpsError.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from opskit import killpoints, signals
from opskit.archive import formats, pipes
from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.journal import Journal
from opskit.engines.mysql import MySQL
from opskit.errors import Interrupted, OpsError

STAMP = "2026-11-22T02:00:00"


def main(job_file: str) -> int:
    from datetime import datetime

    job = json.loads(Path(job_file).read_text())
    db = DbParams(**job["db"])
    folder = Path(job["folder"])
    manifest = job["manifest"]
    term_at = job.get("term_at") or ""
    if term_at:
        kill_at = killpoints.reached

        def reached(name: str) -> None:
            if name == f"mysql:{term_at}":
                os.kill(os.getpid(), signal.SIGTERM)
            kill_at(name)

        killpoints.reached = reached
    signals.install()
    ctx = RestoreContext(work_dir=folder, now=datetime.fromisoformat(STAMP).astimezone())
    ctx.manifest = manifest
    for key, value in job.get("options", {}).items():
        setattr(ctx, key, value)
    ctx.journal = Journal.begin(folder, alias=db.alias, engine="mysql", database=db.name)
    expect = pipes.Expect(manifest["size"], manifest["sha256"])
    try:
        MySQL().restore(db, formats.opener(Path(job["archive"]), expect=expect), ctx)
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
