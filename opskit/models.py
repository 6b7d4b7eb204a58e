"""Django looks for the app's models here; they live in opskit.web.models."""

from opskit.web.models import Backups

__all__ = ["Backups"]
