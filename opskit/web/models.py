"""An unmanaged model with no table: it gives the backups page its place in the admin index
and its permissions (view it; run the safe actions). Django-facing."""

from __future__ import annotations

from django.db import models


class Backups(models.Model):
    class Meta:
        app_label = "opskit"
        managed = False  # no table: the page reads the backup folders and the log
        db_table = "opskit_backups_unused"
        verbose_name = "backups"
        verbose_name_plural = "backups"
        default_permissions = ("view",)
        permissions = (("run_checks", "Can verify archives and run opskit check"),)
