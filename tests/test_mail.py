"""The failure mail, received by a real SMTP server on 127.0.0.1 and parsed back."""

from __future__ import annotations

import email
import os
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from support.project import run_opskit, write_project
from support.services import unavailable

from opskit.engines import DbParams
from opskit.mail import compose, subject
from opskit.report import Report

PASSWORD = "s3cret-Pa55word"
HOST = socket.gethostname()


class Inbox:
    """Collects every message the SMTP server accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Inbox]]:
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        unavailable("aiosmtpd (pip install 'aiosmtpd>=1.4')")
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    return {**env, **extra}


def failing_site(tmp_path: Path, port: int, opskit: str = "{'MAIL_ADMINS_ON_ERROR': True}") -> Path:
    """Two databases whose files do not exist (two errors); the password sits in one's path."""
    missing = DbParams(
        alias="default",
        django_engine="django.db.backends.sqlite3",
        name=str(tmp_path / PASSWORD / "gone.sqlite3"),
        password=PASSWORD,
    )
    other = DbParams(
        alias="other",
        django_engine="django.db.backends.sqlite3",
        name=str(tmp_path / "also-gone.sqlite3"),
    )
    site = write_project(tmp_path / "site", {"default": missing, "other": other}, opskit=opskit)
    settings = next(site.glob("settings_*.py"))
    with settings.open("a") as f:
        f.write(
            f"EMAIL_HOST = '127.0.0.1'\nEMAIL_PORT = {port}\nEMAIL_TIMEOUT = 5\n"
            "EMAIL_SUBJECT_PREFIX = '[Django] '\n"
            "SERVER_EMAIL = 'opskit@example.com'\n"
            "ADMINS = [('Ops', 'ops@example.com'), ('Dev', 'dev@example.com')]\n"
        )
    return site


def parts(message: Message) -> dict[str, str]:
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_type()] = payload.decode(part.get_content_charset() or "utf-8")
    return found


def test_a_failed_backup_mails_the_admins_text_and_html_without_the_password(
    tmp_path: Path, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    site = failing_site(tmp_path, port)

    done = run_opskit("backup", cwd=site, env=clean_env(), timeout=60)

    assert done.returncode == 2, done.stderr
    assert "event=mail_sent" in done.stderr
    [(sender, rcpts, raw)] = inbox.messages
    assert sender == "opskit@example.com"
    assert sorted(rcpts) == ["dev@example.com", "ops@example.com"]
    message = email.message_from_bytes(raw)
    assert message["Subject"] == f"[opskit] backup on {HOST}: 2 errors"
    body = parts(message)
    text, page = body["text/plain"], body["text/html"]
    assert "opskit backup on" in text
    assert "ended with 2 errors" in text
    assert "FAILED" in text
    assert "  other  FAILED" in text
    assert "Log (last" in text
    assert "event=job_finished" in text
    assert "<table" in page
    assert "<pre>" in page
    assert "FAILED</td>" in page
    assert PASSWORD not in raw.decode("utf-8", "replace")
    assert "********" in text


def test_the_environment_turns_the_mail_on_and_a_good_run_sends_none(
    tmp_path: Path, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    site = failing_site(tmp_path, port, opskit="{}")
    assert run_opskit("backup", cwd=site, env=clean_env()).returncode == 2
    assert inbox.messages == []

    env = clean_env(OPSKIT_MAIL_ADMINS_ON_ERROR="1")
    assert run_opskit("backup", "-d", "other", cwd=site, env=env).returncode == 1
    [(_, _, raw)] = inbox.messages
    assert email.message_from_bytes(raw)["Subject"] == f"[opskit] backup on {HOST}: 1 error"

    flag = run_opskit("--mail-admins", "backup", "-d", "other", cwd=site, env=clean_env())
    assert flag.returncode == 1
    assert len(inbox.messages) == 2  # the global flag turns it on too

    (tmp_path / "also-gone.sqlite3").touch()
    done = run_opskit("backup", "-d", "other", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    assert len(inbox.messages) == 2


def test_the_global_flag_mails_a_failed_check_too(tmp_path: Path, smtp: tuple[int, Inbox]) -> None:
    """check is set up like every command: --mail-admins reaches it as it reaches backup."""
    port, inbox = smtp
    site = failing_site(tmp_path, port, opskit="{}")
    quiet = run_opskit("check", "--only", "database", cwd=site, env=clean_env())
    assert quiet.returncode >= 1, quiet.stdout
    assert inbox.messages == []

    done = run_opskit("--mail-admins", "check", "--only", "database", cwd=site, env=clean_env())
    assert done.returncode == quiet.returncode, done.stderr
    [(_, _, raw)] = inbox.messages
    assert email.message_from_bytes(raw)["Subject"].startswith(f"[opskit] check on {HOST}: ")


def test_a_dead_smtp_server_is_logged_and_changes_no_exit_status(tmp_path: Path) -> None:
    site = failing_site(tmp_path, free_port())

    done = run_opskit("backup", cwd=site, env=clean_env(), timeout=60)

    assert done.returncode == 2
    mail_lines = [line for line in done.stderr.splitlines() if "event=mail_failed" in line]
    assert len(mail_lines) == 1
    assert "ConnectionRefusedError" in mail_lines[0]
    assert PASSWORD not in done.stderr


def test_html_escapes_reasons_and_log_and_masks_secrets() -> None:
    report = Report("restore")
    report.fail("load", "default", f"<script>alert(1)</script> password={PASSWORD}")
    text, page = compose(report, "web1", "line <b>1</b>\n", secrets=[PASSWORD])
    assert subject(report, "web1") == "[opskit] restore on web1: 1 error"
    assert "&lt;script&gt;" in page
    assert "<script>" not in page
    assert "line &lt;b&gt;1&lt;/b&gt;" in page
    assert PASSWORD not in text + page
    assert "load  default  FAILED: <script>alert(1)</script> password=********" in text
