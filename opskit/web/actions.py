"""The backups page's two safe actions, run as real ``opskit`` processes beside the site.

``opskit verify`` (one archive) and ``opskit check`` can take longer than a web request may,
so the page starts them detached (opskit.proc.start_detached) and shows their outcome on
its next load: each action keeps ``<STATE_DIR>/actions/<kind>.json`` (who started what,
when, its pid) and the run's ``--json`` output, stderr and exit status beside it. One run
of each kind at a time. They log and ping like any other run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from opskit import files, proc
from opskit.config import Config
from opskit.errors import OpsError

KINDS = ("check", "verify")


def _folder(config: Config) -> Path:
    return config.state_dir / "actions"


def _python() -> str:
    """The site's Python (under uWSGI, sys.executable is uwsgi itself)."""
    exe = Path(sys.executable)
    if exe.name.startswith("python"):
        return str(exe)
    return str(Path(sys.prefix) / "bin" / "python3")


def argv(config: Config, args: list[str]) -> list[str]:
    base = [_python(), "-m", "opskit", "--project-dir", str(config.project_dir)]
    if config.settings_module:
        base += ["--settings", config.settings_module]
    return [*base, *args]


def start(config: Config, kind: str, args: list[str], by: str) -> int:
    """Start ``opskit <args>`` for ``kind``; refuse while the last one still runs."""
    assert kind in KINDS
    current = status(config, kind)
    if current is not None and current["running"]:
        raise OpsError(
            f"opskit {kind} started by {current['by']} is still running (pid {current['pid']})",
            "wait for it to finish, then reload the page",
        )
    folder = _folder(config)
    files.make_dirs(folder, 0o750)
    paths = {s: folder / f"{kind}.{s}" for s in ("out", "err", "rc")}
    for path in paths.values():
        path.unlink(missing_ok=True)
    command = argv(config, args)
    pid = proc.start_detached(
        command, cwd=config.project_dir, out=paths["out"], err=paths["err"], status=paths["rc"]
    )
    record = {"kind": kind, "args": args, "pid": pid, "started": time.time(), "by": by}
    files.write_atomic(folder / f"{kind}.json", json.dumps(record).encode(), 0o640)
    return pid


def status(config: Config, kind: str) -> dict[str, Any] | None:
    """The last run of ``kind``: its record, whether it runs, its exit status and output."""
    folder = _folder(config)
    try:
        record = json.loads((folder / f"{kind}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    rc_text = _read(folder / f"{kind}.rc").strip()
    finished = rc_text.lstrip("-").isdigit()
    record["running"] = not finished and proc.pid_alive(int(record.get("pid") or 0))
    record["exit_status"] = int(rc_text) if finished else None
    record["lost"] = not finished and not record["running"]  # killed, or the machine rebooted
    try:
        record["result"] = json.loads(_read(folder / f"{kind}.out")) if finished else None
    except ValueError:
        record["result"] = None
    record["stderr_tail"] = _read(folder / f"{kind}.err").strip().splitlines()[-5:]
    return record


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
