"""Django in this process, for the site-side tests only: the project of webproject.py, its
``default`` database replaced by a throwaway test database (``shop`` is the real file)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import webproject


@pytest.fixture(scope="session", autouse=True)
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Set Django up once with the web project; yield the project folder."""
    folder = tmp_path_factory.mktemp("webproject")
    module = webproject.build(folder)
    import django
    from django.conf import settings
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    if settings.configured:
        pytest.fail("Django was set up in this process before the site-side tests")
    sys.path.insert(0, str(folder))
    before = os.environ.get("DJANGO_SETTINGS_MODULE")
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    try:
        django.setup()
    finally:
        # Children (opskit runs) must not inherit it; settings are loaded by now.
        if before is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = before
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        yield folder
    finally:
        teardown_databases(old, verbosity=0)
        teardown_test_environment()
