"""Named instants of a commit or a swap where the fault tests kill opskit with SIGKILL.

Set ``OPSKIT_TEST_KILL_AT=<name>`` and opskit kills itself when it reaches that point, so a
test can prove the next run finishes or undoes what was left. Unset, each point costs one
dictionary lookup. Only the test suite sets the variable.
"""

from __future__ import annotations

import os
import signal

ENV = "OPSKIT_TEST_KILL_AT"


def reached(name: str) -> None:
    """Die here, at once and without cleanup, if the tests asked for it."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
