"""One job run's frame: start ping, summary event, metrics, final ping, mail, exit status."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from opskit import __version__, logs
from opskit.config import Config
from opskit.errors import ConfigError
from opskit.healthchecks import ping as healthchecks
from opskit.logs import LogTail
from opskit.report import Report

log = logs.get("job")


def warnings_of(report: Report) -> list[str]:
    """The warnings a job's databases recorded (e.g. a dump much smaller than usual)."""
    return [
        str(detail["size_warning"])
        for detail in report.details.values()
        if isinstance(detail, dict) and detail.get("size_warning")
    ]


class JobRun:
    """Report a job to Healthchecks around its run; a ping never changes the outcome.

    A check that cannot be parsed is one failed step (the job still runs, unmonitored): a
    typo in a setting must not look like a good, silent night.
    """

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
        self.bad_check = False
        self.body: str | None = None  # the final ping's body instead of the log tail
        self.started_at = time.time()

    def start(self) -> None:
        """Send the start ping (with a new run id) if the job has a check."""
        self.started_at = time.time()
        if not self.check:
            return
        try:
            target = healthchecks.parse_check(
                self.check, self.config.ping_url, self.config.ping_create
            )
        except ConfigError as exc:
            self.bad_check = True
            self.ping_problem = f"the check of job {self.job!r}: {exc.line()}"
            log.warning("ping_not_sent", job=self.job, reason=self.ping_problem)
            return
        config = self.config
        self.pinger = healthchecks.Pinger(
            target,
            secrets=self.secrets,
            timeout=min(config.ping_timeout, config.ping_budget),
            budget=config.ping_budget,
            start_budget=config.ping_start_budget,
            limits=healthchecks.BodyLimits(healthchecks.limits_file(config.cache_dir)),
        )
        result = self.pinger.start()
        if not result.ok:
            self.ping_problem = result.message

    def abort(self, exit_status: int, reason: str) -> None:
        """Report a run stopped by a signal (after its cleanup) as a failure."""
        log.error("job_interrupted", job=self.job, reason=reason, exit_status=exit_status)
        self._metrics(None, exit_status)
        if self.pinger is not None:
            tail = self.tail.text() if self.tail else ""
            summary = {"job": self.job, "host": socket.gethostname(), "stopped": reason}
            self.pinger.finish(exit_status, tail, summary)

    def finish(self, report: Report) -> int:
        """Log failed steps and the summary, send the final ping, return the exit status."""
        strict = self.config.strict_ping
        if self.bad_check or (self.ping_problem and strict):
            # Known before the final ping, so Healthchecks hears the same status opskit exits with.
            report.fail("ping", None, self.ping_problem)
        for step in report.failed():
            log.error("step_failed", step=step.name, database=step.database, reason=step.reason)
        databases = sorted({s.database for s in report.steps if s.database})
        warnings = warnings_of(report)
        summary: dict[str, object] = {
            "job": report.job,
            "host": socket.gethostname(),
            "databases": databases,
            "errors": report.errors,
            "bytes": report.bytes,
            "duration": round(report.duration, 3),
            "opskit": __version__,
        }
        if warnings:
            summary["warnings"] = len(warnings)
        log.info("job_finished", **{**summary, "databases": ",".join(databases)})
        self._metrics(report, report.exit_code)
        if self.pinger is not None:
            body = self.body if self.body is not None else (self.tail.text() if self.tail else "")
            result = self.pinger.finish(report.exit_code, body, summary)
            # A run's pings count as one error at most, however many of them failed.
            if not result.ok and strict and not self.ping_problem:
                step = report.fail("ping", None, result.message)
                log.error("step_failed", step=step.name, database=None, reason=step.reason)
        if (report.errors or warnings) and self.config.mail_admins_on_error:
            from opskit.mail import mail_failure  # logs a failure to mail; never raises

            tail = self.tail.text() if self.tail else ""
            mail_failure(report, socket.gethostname(), tail, self.secrets, warnings)
        return report.exit_code

    def _metrics(self, report: Report | None, exit_status: int) -> None:
        if self.config.metrics_file is None:
            return
        from opskit.monitoring import metrics  # logs a failure to write; never raises

        run = metrics.Run.of(self.job, report, exit_status, self.started_at, time.time())
        metrics.record(self.config.metrics_file, run)
