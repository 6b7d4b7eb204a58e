"""An unreachable repository is one failed step in the failure mail, its URL's password masked."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from support.project import run_opskit, write_project
from support.restic_repo import need_restic, password_file
from test_mail import HOST, Inbox, clean_env, free_port, parts

from opskit.engines import DbParams

URL_SECRET = "url-pass-93f1"


@pytest.fixture
def inbox() -> Iterator[tuple[int, Inbox]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd), as in test_mail."""
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, box
    finally:
        controller.stop()


def test_an_unreachable_repository_is_mailed_as_one_failed_offsite_step(
    tmp_path: Path, inbox: tuple[int, Inbox]
) -> None:
    need_restic()
    port, box = inbox
    site = tmp_path / "site"
    db = DbParams("default", "django.db.backends.sqlite3", str(site / "db.sqlite3"))
    offsite = {
        "repository": f"rest:http://backup:{URL_SECRET}@127.0.0.1:1/",
        "password_file": str(password_file(tmp_path / "secrets")),
    }
    write_project(site, {"default": db}, repr({"MAIL_ADMINS_ON_ERROR": True, "OFFSITE": offsite}))
    with next(site.glob("settings_*.py")).open("a") as fh:
        fh.write(
            f"EMAIL_HOST = '127.0.0.1'\nEMAIL_PORT = {port}\nEMAIL_TIMEOUT = 5\n"
            "SERVER_EMAIL = 'opskit@example.com'\nADMINS = [('Ops', 'ops@example.com')]\n"
        )
    import sqlite3

    with sqlite3.connect(db.name) as conn:
        conn.execute("CREATE TABLE t (x)")
    done = run_opskit("backup", cwd=site, env=clean_env(), timeout=60)
    assert done.returncode == 1, done.stderr
    [(_, _, raw)] = box.messages
    message = email.message_from_bytes(raw)
    assert message["Subject"] == f"[opskit] backup on {HOST}: 1 error"
    text = parts(message)["text/plain"]
    assert "offsite" in text
    assert "FAILED" in text
    assert "cannot reach" in text
    assert "backup:********@127.0.0.1:1" in text
    everything = raw.decode("utf-8", "replace") + done.stderr + done.stdout
    everything += "".join(p.read_text() for p in (site / "logs").iterdir())
    assert URL_SECRET not in everything
    assert json.dumps(URL_SECRET) not in everything
