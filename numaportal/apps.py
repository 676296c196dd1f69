from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NumaPortalConfig(AppConfig):
    name = "numaportal"
    verbose_name = "NUMA Portal"

    def ready(self) -> None:
        from numaportal.roles import ensure_viewer_group
        from numaportal.schedules import ensure_default_schedules

        # Runs after each app's permissions were created (auth connects its handler first).
        post_migrate.connect(ensure_viewer_group, dispatch_uid="numaportal.ensure_viewer_group")
        post_migrate.connect(
            ensure_default_schedules, dispatch_uid="numaportal.ensure_default_schedules"
        )
