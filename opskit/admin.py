"""Django's admin autodiscovery imports this; the backups page lives in opskit.web.admin."""

import opskit.web.admin  # noqa: F401  (registers the page)
