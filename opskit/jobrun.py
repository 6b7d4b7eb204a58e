"""One job run's frame: start ping, summary event, final ping with the log tail, exit status."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from opskit import __version__, healthchecks, logs
from opskit.config import Config
from opskit.errors import ConfigError
from opskit.logs import LogTail
from opskit.report import Report

log = logs.get("job")


class JobRun:
    """Report a job to Healthchecks around its run; a ping never changes the outcome."""

    def __init__(
        self,
        job: str,
        config: Config,
        *,
        tail: LogTail | None = None,
        secrets: Iterable[str] = (),
        check: str | None = None,
    ) -> None:
        self.job = job
        self.config = config
        self.tail = tail
        self.secrets = tuple(secrets)
        self.check = check or config.check_for(job)
        self.pinger: healthchecks.Pinger | None = None
        self.ping_problem = ""

    def start(self) -> None:
        """Send the start ping (with a new run id) if the job has a check."""
        if not self.check:
            return
        try:
            target = healthchecks.parse_check(
                self.check, self.config.ping_url, self.config.ping_create
            )
        except ConfigError as exc:
            self.ping_problem = exc.line()
            log.warning("ping_not_sent", job=self.job, reason=self.ping_problem)
            return
        self.pinger = healthchecks.Pinger(
            target,
            secrets=self.secrets,
            timeout=min(self.config.ping_timeout, self.config.ping_budget),
            budget=self.config.ping_budget,
        )
        result = self.pinger.start()
        if not result.ok:
            self.ping_problem = result.message

    def abort(self, exit_status: int, reason: str) -> None:
        """Report a run stopped by a signal (after its cleanup) as a failure."""
        log.error("job_interrupted", job=self.job, reason=reason, exit_status=exit_status)
        if self.pinger is not None:
            tail = self.tail.text() if self.tail else ""
            summary = {"job": self.job, "host": socket.gethostname(), "stopped": reason}
            self.pinger.finish(exit_status, tail, summary)

    def finish(self, report: Report) -> int:
        """Log failed steps and the summary, send the final ping, return the exit status."""
        strict = self.config.strict_ping
        if self.ping_problem and strict:
            # Known before the final ping, so Healthchecks hears the same status opskit exits with.
            report.fail("ping", None, self.ping_problem)
        for step in report.failed():
            log.error("step_failed", step=step.name, database=step.database, reason=step.reason)
        databases = sorted({s.database for s in report.steps if s.database})
        summary = {
            "job": report.job,
            "host": socket.gethostname(),
            "databases": databases,
            "errors": report.errors,
            "bytes": report.bytes,
            "duration": round(report.duration, 3),
            "opskit": __version__,
        }
        log.info("job_finished", **{**summary, "databases": ",".join(databases)})
        if self.pinger is not None:
            tail = self.tail.text() if self.tail else ""
            result = self.pinger.finish(report.exit_code, tail, summary)
            # A run's pings count as one error at most, however many of them failed.
            if not result.ok and strict and not self.ping_problem:
                step = report.fail("ping", None, result.message)
                log.error("step_failed", step=step.name, database=None, reason=step.reason)
        if report.errors and self.config.mail_admins_on_error:
            from opskit.mail import mail_failure  # logs a failure to mail; never raises

            tail = self.tail.text() if self.tail else ""
            mail_failure(report, socket.gethostname(), tail, self.secrets)
        return report.exit_code
