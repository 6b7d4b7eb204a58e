"""The backups page's unmanaged model: no table, only its content type and permissions."""

from typing import Any, ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="Backups",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
            ],
            options={
                "verbose_name": "backups",
                "verbose_name_plural": "backups",
                "db_table": "opskit_backups_unused",
                "managed": False,
                "default_permissions": ("view",),
                "permissions": (("run_checks", "Can verify archives and run opskit check"),),
            },
        ),
    ]
