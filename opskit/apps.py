"""The Django app: with "opskit" in INSTALLED_APPS, the maintenance page's template and the
backups page in the admin (opskit.web) are found; Django-facing, so it imports django."""

from __future__ import annotations

from django.apps import AppConfig


class OpskitConfig(AppConfig):
    name = "opskit"
    verbose_name = "opskit"
    default_auto_field = "django.db.models.AutoField"
