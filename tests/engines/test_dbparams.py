"""Messages name a database's server one way: ``host:port``, localhost when no host is set."""

from __future__ import annotations

import pytest

from opskit.archive.manifest import describe_identity
from opskit.engines import DbParams

PG = "django.db.backends.postgresql"


@pytest.mark.parametrize(
    ("host", "port", "default", "said"),
    [
        ("", "", "", "localhost"),
        ("db.internal", "", "", "db.internal"),
        ("", "5433", "5432", "localhost:5433"),
        ("", "", "5432", "localhost:5432"),
        ("10.0.0.5", "3307", "3306", "10.0.0.5:3307"),
    ],
)
def test_the_server_address_fills_in_localhost_and_the_vendors_port(
    host: str, port: str, default: str, said: str
) -> None:
    db = DbParams(alias="default", django_engine=PG, name="site", host=host, port=port)
    assert db.address(default) == said


def test_describe_and_the_manifest_name_the_server_alike() -> None:
    db = DbParams(alias="default", django_engine=PG, name="site", user="app", port="5433")
    assert db.describe() == "database site (user app at localhost:5433)"
    ident = {"engine": "postgresql", "database": "site", "host": "", "port": "5433"}
    assert describe_identity(ident) == "postgresql database 'site' on localhost:5433"
