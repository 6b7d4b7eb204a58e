"""While maintenance is on, answer HTTP 503 with Retry-After and a small page (or JSON).

Django-facing (imports Django). The state comes from opskit.maintenance's file, stat-ed on
every request: no database query, so it works while the database is being swapped. With
maintenance off, a request costs one stat(2) (see bench/maintenance.py).

Allowed through while on: client addresses in MAINTENANCE_ALLOW_IPS, paths under
MAINTENANCE_ALLOW_PATHS, and staff users if MAINTENANCE_ALLOW_STAFF (then put the middleware
after AuthenticationMiddleware; the user is only looked up while maintenance is on, and a
database that does not answer counts as "not staff").
"""

from __future__ import annotations

import html
import ipaddress
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from opskit import maintenance
from opskit.maintenance import Switch
from opskit.web import project

TEMPLATE = "opskit/maintenance.html"
_FALLBACK = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Maintenance</title>"
    "<h1>Back soon</h1><p>{message}</p></html>"
)


class MaintenanceMiddleware:
    """Django middleware: 503 for every request that maintenance covers and nothing allows."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        config = project.config()
        self.watcher = maintenance.Watcher(config.state_dir)
        self.allow_paths = config.maintenance_allow_paths
        self.networks = tuple(ipaddress.ip_network(n) for n in config.maintenance_allow_ips)
        self.allow_staff = config.maintenance_allow_staff
        self.ip_header = config.maintenance_ip_header or "REMOTE_ADDR"
        self.message = config.maintenance_message
        self.retry_after = config.maintenance_retry_after

    def __call__(self, request: HttpRequest) -> HttpResponse:
        state = self.watcher.state()
        if state.empty:
            return self.get_response(request)
        now = time.time()
        switch = state.applies(request.path_info, now)
        if switch is None or self.allowed(request):
            return self.get_response(request)
        return self.unavailable(request, switch, now)

    def allowed(self, request: HttpRequest) -> bool:
        path = request.path_info
        if any(path.startswith(prefix) for prefix in self.allow_paths):
            return True
        if self.networks and self._address_allowed(request):
            return True
        return self.allow_staff and _is_staff(request)

    def _address_allowed(self, request: HttpRequest) -> bool:
        # A proxy's header may list several addresses: the first is the client's.
        raw = str(request.META.get(self.ip_header) or "").split(",")[0].strip()
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def unavailable(self, request: HttpRequest, switch: Switch, now: float) -> HttpResponse:
        message = switch.message or self.message
        retry = switch.retry_after(now, self.retry_after)
        response: HttpResponse
        if _wants_json(request):
            response = JsonResponse(
                {"error": "maintenance", "message": message, "retry_after": retry}, status=503
            )
        else:
            response = HttpResponse(_page(message, retry, switch), status=503)
        response["Retry-After"] = str(retry)
        response["Cache-Control"] = "no-store"
        return response


def _wants_json(request: HttpRequest) -> bool:
    """An API client (Accept names JSON and not HTML), or a request that sent JSON."""
    accept = request.headers.get("Accept", "")
    if "json" in accept and "text/html" not in accept:
        return True
    return request.content_type == "application/json" and "text/html" not in accept


def _is_staff(request: HttpRequest) -> bool:
    from django.db import Error

    user = getattr(request, "user", None)
    try:
        return bool(user is not None and user.is_active and user.is_staff)
    except Error:
        return False  # the database is being swapped: nobody is staff for now


def _page(message: str, retry: int, switch: Switch) -> str:
    """The page from the (overridable) template, rendered without the request: no context
    processor runs, so nothing touches the database."""
    from django.template import TemplateDoesNotExist
    from django.template.loader import render_to_string

    context: dict[str, Any] = {
        "message": message,
        "retry_after": retry,
        "until": datetime.fromtimestamp(switch.until).astimezone() if switch.until else None,
    }
    try:
        return str(render_to_string(TEMPLATE, context))
    except TemplateDoesNotExist:  # "opskit" is not in INSTALLED_APPS
        return _FALLBACK.format(message=html.escape(message))
