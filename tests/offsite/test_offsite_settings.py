"""OPSKIT['OFFSITE'] is checked key by key, with one-line errors; credentials never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.config import build_config
from opskit.errors import ConfigError
from opskit.offsite.restic import Restic, reason
from opskit.offsite.settings import Destination, parse, redact_url

BASE = {"repository": "/srv/restic", "password_file": "/etc/opskit/restic.pass"}


def _parse(value: object, media_root: Path | None = None) -> tuple[Destination, ...]:
    return parse(value, project_dir=Path("/srv/site"), media_root=media_root)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sftp:x", "OPSKIT['OFFSITE'] must be a dict or a list of dicts"),
        ({"password_file": "/p"}, "OPSKIT['OFFSITE']['repository'] is missing or empty"),
        ({"repository": "/r"}, "OPSKIT['OFFSITE'] has no password"),
        ({**BASE, "password_env": "X"}, "give one of password_file, password_env, not several"),
        ({**BASE, "keep": {"dayly": 7}}, "OPSKIT['OFFSITE']['keep']: 'dayly' is not a keep rule"),
        ({**BASE, "keep": {"daily": 0}}, "OPSKIT['OFFSITE']['keep']['daily'] must be a whole"),
        ({**BASE, "media": "yes"}, "OPSKIT['OFFSITE']['media'] must be True, False or a list"),
        ({**BASE, "media": True}, "OPSKIT['OFFSITE']['media'] is True but the project has no"),
        ({**BASE, "colour": 1}, "OPSKIT['OFFSITE']: unknown key 'colour'"),
        ({**BASE, "timeout": "1h"}, "OPSKIT['OFFSITE']['timeout'] must be a number of seconds"),
        ({**BASE, "project": "a,b"}, "OPSKIT['OFFSITE']['project'] 'a,b' is not a plain name"),
        ({**BASE, "env": {"RESTIC_REPOSITORY": "x"}}, "OPSKIT['OFFSITE']['env'] sets RESTIC_REPO"),
        ([BASE, {**BASE, "keep": []}], "OPSKIT['OFFSITE'][1]['keep'] must be a dict"),
        ([{**BASE, "name": "a"}, {**BASE, "name": "a"}], "two destinations are named 'a'"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(value)
    assert message in caught.value.line()
    assert "\n" not in caught.value.line()


def test_good_settings_and_their_defaults() -> None:
    (dest,) = _parse({**BASE, "keep": {"weekly": 5, "daily": 7}, "media": True}, Path("/m"))
    assert dest.name == "offsite"
    assert dest.project == "site"
    assert dest.keep == (("daily", 7), ("weekly", 5))
    assert dest.media_dirs == (Path("/m"),)
    two = _parse([BASE, {**BASE, "name": "vault", "media": ["uploads", "/srv/private"]}])
    assert [d.name for d in two] == ["offsite-1", "vault"]
    assert two[1].media_dirs == (Path("/srv/site/uploads"), Path("/srv/private"))
    assert _parse(None) == ()
    assert _parse({}) == ()


def test_credentials_in_urls_are_masked_everywhere() -> None:
    url = "rest:https://backup:hunter22@vault.example:8000/site"
    assert redact_url(url) == "rest:https://backup:********@vault.example:8000/site"
    assert redact_url("s3:https://s3.example/bucket") == "s3:https://s3.example/bucket"
    (dest,) = _parse({**BASE, "repository": url, "env": {"AWS_SECRET_ACCESS_KEY": "k3y-secret"}})
    assert "hunter22" not in dest.label
    assert "hunter22" not in repr(dest)
    assert {"hunter22", "k3y-secret"} <= set(dest.secrets())
    assert "k3y-secret" not in repr(dest)
    config = build_config(
        project_dir=Path("/srv/site"),
        settings_module="s",
        settings_opskit={"OFFSITE": {**BASE, "repository": url}},
    )
    assert "hunter22" in config.offsite_secrets()
    assert "hunter22" not in repr(config)


def test_the_password_can_come_from_a_variable(tmp_path: Path) -> None:
    (dest,) = _parse({"repository": "/r", "password_env": "MY_RESTIC_PW"})
    env = Restic(dest, {"MY_RESTIC_PW": "from-env"}).env()
    assert env["RESTIC_PASSWORD"] == "from-env"
    assert "RESTIC_PASSWORD_FILE" not in env
    with pytest.raises(ConfigError, match=r"MY_RESTIC_PW .* is not set"):
        Restic(dest, {}).env()


def test_restic_messages_become_one_line_reasons() -> None:
    label = "offsite (/r)"
    cases = {
        "Fatal: wrong password or no key found\n": "wrong password for offsite (/r)",
        "unable to create lock in backend: repository is already locked exclusively by PID 9"
        " on web1 by root (UID 0, GID 0)\nlock was created at 2026-11-03 02:00:01 (5m ago)\n"
        "storage ID 1234": "offsite (/r) is locked by PID 9 on web1 by root since 2026-11-03",
        "Fatal: unable to open config file: Stat: The specified bucket does not exist.": (
            "the bucket of offsite (/r) does not exist"
        ),
        "Save(<data/1>) returned error: write /r/data/x: no space left on device": (
            "the disk of offsite (/r) is full"
        ),
        "Fatal: unable to open config file: stat /r/config: no such file or directory\n"
        "Is there a repository at the following location?\n/r": "no restic repository at",
        "subprocess ssh: ssh: connect to host vault port 22: Connection refused": "cannot reach",
        'Fatal: unable to open config file: client.Head: Head "http://u:***@h:1/config": dial tcp'
        " h:1: connect: connection refused\nIs there a repository at the following location?": (
            "cannot reach offsite (/r)"
        ),
    }
    for stderr, expected in cases.items():
        line = reason(stderr, label).line()
        assert expected in line, line
        assert "\n" not in line
