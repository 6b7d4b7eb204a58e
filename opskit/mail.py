"""The failure mail: a job that ends with errors tells Django's ADMINS what failed and why."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from opskit import django_project, logs
from opskit.redact import redact
from opskit.report import Report

log = logs.get("mail")
TAIL_LINES = 60


def _counts(report: Report, warnings: Sequence[str]) -> str:
    said = f"{report.errors} {'error' if report.errors == 1 else 'errors'}"
    if warnings:
        said += f", {len(warnings)} {'warning' if len(warnings) == 1 else 'warnings'}"
    return said


def subject(report: Report, host: str, warnings: Sequence[str] = ()) -> str:
    return f"[opskit] {report.job} on {host}: {_counts(report, warnings)}"


def _tail(text: str) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-TAIL_LINES:])


def compose(
    report: Report,
    host: str,
    tail: str,
    secrets: Iterable[str] = (),
    warnings: Sequence[str] = (),
) -> tuple[str, str]:
    """Return the plain-text body and its HTML alternative, secrets masked."""
    secrets = tuple(secrets)
    rows = [
        (s.name, s.database or "-", "ok" if s.ok else "FAILED", s.reason or "")
        for s in report.steps
    ]
    head = f"opskit {report.job} on {host} ended with {_counts(report, warnings)}."
    lines = [head, ""]
    if warnings:
        lines += ["Warnings:", *(f"  {w}" for w in warnings), ""]
    lines += ["Steps:"]
    lines += [
        f"  {name}  {db}  {state}" + (f": {why}" if why else "") for name, db, state, why in rows
    ]
    log_tail = _tail(tail)
    lines += ["", f"Log (last {TAIL_LINES} lines):", log_tail or "(empty)", ""]
    text = redact("\n".join(lines), secrets)

    def cell(value: str, failed: bool = False) -> str:
        style = ' style="color:#b00020;font-weight:bold"' if failed else ""
        return f"<td{style}>{html.escape(redact(value, secrets))}</td>"

    table = "\n".join(
        f"<tr>{cell(n)}{cell(d)}{cell(st, st == 'FAILED')}{cell(why)}</tr>"
        for n, d, st, why in rows
    )
    notes = "".join(f"<p><b>Warning:</b> {html.escape(redact(w, secrets))}</p>\n" for w in warnings)
    page = f"""<!DOCTYPE html>
<html><body style="font-family:sans-serif">
<p>{html.escape(redact(head, secrets))}</p>
{notes}<table border="1" cellpadding="4" cellspacing="0" style="border-collapse:collapse">
<tr><th>Step</th><th>Database</th><th>Result</th><th>Reason</th></tr>
{table}
</table>
<h3>Log (last {TAIL_LINES} lines)</h3>
<pre>{html.escape(redact(log_tail, secrets)) or "(empty)"}</pre>
</body></html>
"""
    return text, page


def mail_failure(
    report: Report,
    host: str,
    tail: str,
    secrets: Iterable[str] = (),
    warnings: Sequence[str] = (),
) -> bool:
    """Mail the ADMINS about a failed or warned run; a failure to mail is logged, never raised."""
    secrets = tuple(secrets)
    text, page = compose(report, host, tail, secrets, warnings)
    try:
        django_project.send_admin_mail(subject(report, host, warnings), text, page)
    except Exception as exc:  # SMTP, socket, settings: whatever it is, the job's outcome stands
        reason = redact(f"{type(exc).__name__}: {exc}", secrets)
        log.error("mail_failed", job=report.job, reason=" ".join(reason.split()))
        return False
    log.info("mail_sent", job=report.job, errors=report.errors)
    return True
