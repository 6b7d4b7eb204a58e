"""The only package that runs programs: argv lists, no shell, secrets via env or 0600 files.

Callers use the names below (``proc.run``, ``proc.Child``, ...); each lives in one module:
``spawn`` starts programs and runs them to completion, ``streams`` streams their stdin or
stdout, ``passthrough`` runs a wrapped command, ``credentials`` hands them secrets.
"""

from __future__ import annotations

from opskit.proc.credentials import child_env, secret_file, sweep_secret_dirs
from opskit.proc.passthrough import Finished, passthrough
from opskit.proc.spawn import pid_alive, run, start_detached
from opskit.proc.streams import DEVNULL, PIPE, Child, interruptible, reading, writing

__all__ = [
    "DEVNULL",
    "PIPE",
    "Child",
    "Finished",
    "child_env",
    "interruptible",
    "passthrough",
    "pid_alive",
    "reading",
    "run",
    "secret_file",
    "start_detached",
    "sweep_secret_dirs",
    "writing",
]
