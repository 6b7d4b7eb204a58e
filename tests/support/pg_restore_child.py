"""Run one PostgreSQL engine restore in a process of its own, as the restore job runs it.

    python tests/support/pg_restore_child.py <job.json>

job.json: {"db": {...DbParams...}, "archive": path, "manifest": {...}, "folder": path,
"options": {...RestoreContext fields...}}. OPSKIT_TEST_KILL_AT kills it at a named step
(opskit's own kill points). The journal goes when the restore leaves it "started" or
"done", as the job does. Exit 0 when restored, 3 on an OpsError.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from opskit import signals
from opskit.archive import formats, pipes
from opskit.engines import DbParams
from opskit.engines.base import RestoreContext
from opskit.engines.journal import Journal
from opskit.engines.postgresql import PostgreSQL
from opskit.errors import Interrupted, OpsError

STAMP = "2026-11-22T02:00:00"


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    db = DbParams(**job["db"])
    folder = Path(job["folder"])
    manifest = job["manifest"]
    signals.install()
    ctx = RestoreContext(work_dir=folder, now=datetime.fromisoformat(STAMP).astimezone())
    ctx.manifest = manifest
    for key, value in job.get("options", {}).items():
        setattr(ctx, key, value)
    ctx.journal = Journal.begin(folder, alias=db.alias, engine="postgresql", database=db.name)
    expect = pipes.Expect(manifest["size"], manifest["sha256"])
    try:
        PostgreSQL().restore(db, formats.opener(Path(job["archive"]), expect=expect), ctx)
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
