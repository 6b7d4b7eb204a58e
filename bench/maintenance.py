#!/usr/bin/env python3
"""What the maintenance switch costs a web request (goal: under 50 µs with maintenance off).

Measured in one process, with Django configured here (no database, one view):

- ``watcher/...``: ``opskit.maintenance.Watcher.state()`` alone: no state file yet (a site
  that never used maintenance), a file that says everything is off, one that says on;
- ``middleware/off``: ``MaintenanceMiddleware`` around a view that returns a prepared
  response, minus that view called directly: what the middleware adds to each request;
- ``middleware/on``: the 503 page rendered from the template (what a visitor gets);
- ``request/...``: a whole request through Django's WSGI handler, with and without the
  middleware in MIDDLEWARE (difference = its cost in a real stack).

Each figure is the median over ``--repeat`` rounds of ``--requests`` calls, in µs per call.

    .venv/bin/python bench/maintenance.py                 # print the table
    .venv/bin/python bench/maintenance.py --write bench/MAINTENANCE.md
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def per_call(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Median µs per call of ``fn`` over ``repeat`` rounds of ``n`` calls."""
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(rounds)


def configure(state_dir: Path) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["opskit"],
        MIDDLEWARE=[],
        DATABASES={},
        TEMPLATES=[
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        OPSKIT={"STATE_DIR": str(state_dir)},
        USE_TZ=True,
    )
    django.setup()


def view(request: object) -> object:
    from django.http import HttpResponse

    return HttpResponse("ok")


urlpatterns: list[object] = []


def main() -> None:  # noqa: PLR0915 — one measurement after another, printed as they come
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", type=Path, help="also write the results as Markdown here")
    args = parser.parse_args()
    n, repeat = args.requests, args.repeat

    state_dir = Path(tempfile.mkdtemp(prefix="opskit-bench-state-"))
    configure(state_dir)
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpResponse
    from django.test import RequestFactory, override_settings
    from django.urls import path

    from opskit import maintenance
    from opskit.middleware import MaintenanceMiddleware

    urlpatterns.append(path("", view))
    rows: list[tuple[str, float]] = []

    watcher = maintenance.Watcher(state_dir)
    rows.append(("watcher/no state file", per_call(watcher.state, n, repeat)))
    maintenance.turn_on(state_dir)
    maintenance.turn_off(state_dir)
    rows.append(("watcher/file says off", per_call(watcher.state, n, repeat)))
    maintenance.turn_on(state_dir)
    rows.append(("watcher/file says on", per_call(watcher.state, n, repeat)))
    maintenance.turn_off(state_dir)

    prepared = HttpResponse("ok")
    request = RequestFactory().get("/products/1/")
    mw = MaintenanceMiddleware(lambda r: prepared)
    bare = per_call(lambda: prepared, n, repeat)
    wrapped = per_call(lambda: mw(request), n, repeat)
    rows.append(("middleware/off (added to a request)", wrapped - bare))
    maintenance.turn_on(state_dir)
    rows.append(
        ("middleware/on (503 page rendered)", per_call(lambda: mw(request), n // 10, repeat))
    )
    maintenance.turn_off(state_dir)

    environ = RequestFactory().get("/").environ
    environ["wsgi.input"] = io.BytesIO(b"")

    def whole(handler: WSGIHandler) -> Callable[[], object]:
        return lambda: handler(dict(environ), lambda status, headers: None)

    plain = WSGIHandler()
    with override_settings(MIDDLEWARE=["opskit.middleware.MaintenanceMiddleware"]):
        with_mw = WSGIHandler()
    # Alternated round by round, so that other work on the machine weighs on both alike.
    pairs = [
        (per_call(whole(plain), n // 10, 1), per_call(whole(with_mw), n // 10, 1))
        for _ in range(repeat)
    ]
    r_plain = statistics.median(p for p, _ in pairs)
    r_mw = statistics.median(m for _, m in pairs)
    rows.append(("request/without the middleware", r_plain))
    rows.append(("request/with it, maintenance off", r_mw))
    rows.append(
        (
            "request/difference (median of the rounds' differences)",
            statistics.median(m - p for p, m in pairs),
        )
    )

    table = ["| what | µs per call |", "|---|---:|"]
    table += [f"| {name} | {value:.2f} |" for name, value in rows]
    print("\n".join(table))
    if args.write:
        import django

        head = [
            "# What the maintenance switch costs a request",
            "",
            f"Written by `bench/maintenance.py` on"
            f" {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC."
            f" Command: `{' '.join(['bench/maintenance.py', *sys.argv[1:]])}`",
            "",
            f"Python {platform.python_version()}, Django {django.get_version()},"
            f" {os.cpu_count()} cores, load average {_load()}"
            f" at the end; state folder on {state_dir.parent} ({_fs(state_dir)}).",
            f"Median of {repeat} rounds of {n:,} calls ({n // 10:,} for rendered pages and whole"
            " requests). Goal: under 50 µs per request with maintenance off.",
            "",
        ]
        args.write.write_text("\n".join(head + table) + "\n")


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _fs(path: Path) -> str:
    best = ("?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) >= len(best[1]):
            best = (parts[2], parts[1])
    return best[0]


if __name__ == "__main__":
    main()
