"""Expected failures: each one fails a step with a one-line reason and a fix."""

from __future__ import annotations


class OpsError(Exception):
    """An expected failure; ``str()`` is one line naming the problem and the fix."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


class ConfigError(OpsError):
    """A setting, flag or project layout is wrong."""


class ToolNotFound(OpsError):
    """A required program (pg_dump, mysqldump, ...) is missing or unusable."""


class CommandFailed(OpsError):
    """A child process exited non-zero or was killed."""


class ArchiveError(OpsError):
    """An archive is missing, corrupt, truncated or does not match its manifest."""


class RestoreRefused(OpsError):
    """A restore was refused before anything touched the database."""


class UnsupportedEngine(OpsError):
    """The Django database ENGINE is not one opskit can back up."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, cleaning up on the way out."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by signal {signum}")
