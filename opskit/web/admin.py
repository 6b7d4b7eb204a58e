"""The backups page in the Django admin: read-only, plus two safe actions behind a permission.

Django-facing. The page shows what opskit.overview gathers from the backup folders, the
restores' leftovers and the JSON log; "Verify" (one archive) and "Run opskit check" are
POST forms (CSRF-protected by the admin) that need ``opskit.run_checks`` and start a real
``opskit`` run (opskit.web.actions). There is no restore from the browser.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from opskit import overview
from opskit.errors import OpsError
from opskit.progress import ago, human
from opskit.web import actions, project
from opskit.web.models import Backups

VIEW = "opskit.view_backups"
RUN = "opskit.run_checks"


@admin.register(Backups)
class BackupsAdmin(admin.ModelAdmin):
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(VIEW))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.page_view), name="opskit_backups_changelist"),
            path("verify/", wrap(require_POST(self.verify_view)), name="opskit_backups_verify"),
            path("check/", wrap(require_POST(self.check_view)), name="opskit_backups_check"),
        ]

    def page_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        config = project.config()
        now = datetime.now().astimezone()
        data = overview.collect(config, project.databases(), now)
        context = {
            **self.admin_site.each_context(request),
            "title": "Backups",
            "opts": self.opts,
            "overview": data,
            "databases": [_database(view) for view in data.databases],
            "runs": {job: [_run(r) for r in items] for job, items in data.runs.items()},
            "maintenance": _maintenance(data, now),
            "can_run": request.user.has_perm(RUN),
            "check": _action(actions.status(config, "check")),
            "verify": _action(actions.status(config, "verify")),
        }
        return TemplateResponse(request, "opskit/backups.html", context)

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(RUN):
            raise PermissionDenied
        config = project.config()
        alias, name = request.POST.get("database", ""), request.POST.get("archive", "")
        # Only an archive the page lists: never a path the browser made up.
        data = overview.collect(config, project.databases(), datetime.now().astimezone())
        known = {(d.alias, row["name"]): row["file"] for d in data.databases for row in d.archives}
        if (alias, name) not in known:
            messages.error(request, f"no archive {name!r} of database {alias!r}")
            return self._back()
        args = ["verify", "--database", alias, "--json", known[(alias, name)]]
        return self._start(request, config, "verify", args, f"opskit verify of {name}")

    def check_view(self, request: HttpRequest) -> HttpResponse:
        # Not "check": ModelAdmin.check() is Django's system check.
        if not request.user.has_perm(RUN):
            raise PermissionDenied
        config = project.config()
        return self._start(request, config, "check", ["check", "--json"], "opskit check")

    def _start(
        self, request: HttpRequest, config: Any, kind: str, args: list[str], what: str
    ) -> HttpResponse:
        try:
            pid = actions.start(config, kind, args, by=request.user.get_username())
        except OpsError as exc:
            messages.error(request, exc.line())
        else:
            messages.success(request, f"{what} started (pid {pid}); reload to see its result")
        return self._back()

    @staticmethod
    def _back() -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:opskit_backups_changelist"))


def _action(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if status is not None:
        started = datetime.fromtimestamp(float(status.get("started") or 0)).astimezone()
        status["started_at"] = started.strftime("%Y-%m-%d %H:%M:%S")
    return status


def _database(view: overview.DatabaseView) -> dict[str, Any]:
    rows = []
    for row in view.archives:
        raw = row.get("raw_size")
        rows.append(
            {
                **row,
                "age": ago(row.get("age_seconds")),
                "size_h": human(row["size"]),
                "raw_h": human(raw) if isinstance(raw, int) else "?",
                "checked_at": str((row.get("last_check") or {}).get("timestamp", ""))[:16].replace(
                    "T", " "
                ),
            }
        )
    kept = [
        {
            **item,
            "size_h": human(item["size"]) if item.get("size") else "",
            "age": ago(item["age_seconds"]) if item.get("age_seconds") is not None else "",
        }
        for item in view.kept
    ]
    last = view.dumps[-1] if view.dumps else None
    return {
        "view": view,
        "archives": rows,
        "kept": kept,
        "dropped": view.last_dump_dropped,
        "last_size": human(last.bytes) if last else "",
    }


def _run(run: Any) -> dict[str, Any]:
    return {
        "run": run,
        "when": run.timestamp[:19].replace("T", " "),
        "duration": f"{run.duration:.1f} s" if run.duration is not None else "",
        "bytes": human(run.bytes) if run.bytes else "",
    }


def _maintenance(data: overview.Overview, now: datetime) -> dict[str, Any]:
    state = data.maintenance.active(now.timestamp())
    on = []
    if state.site is not None:
        on.append(("the whole site", state.site.message, state.site.by))
    on += [(f"URLs under {p}", s.message, s.by) for p, s in sorted(state.paths.items())]
    on += [("the whole site", "", h.switch().by) for h in state.restores.values()]
    return {"on": on, "problem": data.maintenance_problem}
