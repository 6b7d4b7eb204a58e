"""``opskit.middleware.MaintenanceMiddleware``, the name to put in MIDDLEWARE (see opskit.web)."""

from opskit.web.middleware import MaintenanceMiddleware

__all__ = ["MaintenanceMiddleware"]
