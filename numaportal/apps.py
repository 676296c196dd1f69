from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NumaPortalConfig(AppConfig):
    name = "numaportal"
    verbose_name = "NUMA Portal"

    def ready(self) -> None:
        # Load the Celery app in every Django process (web, manage.py, tests), not only in
        # `celery -A numaportal`: @shared_task binds to the current app, and without this it
        # would be Celery's default app, with none of the CELERY_* settings. Here rather than
        # in numaportal/__init__.py so that importing numaportal.virt pulls in no Celery.
        from numaportal.celery import app  # noqa: F401
        from numaportal.roles import ensure_viewer_group
        from numaportal.schedules import ensure_default_schedules

        # Runs after each app's permissions were created (auth connects its handler first).
        post_migrate.connect(ensure_viewer_group, dispatch_uid="numaportal.ensure_viewer_group")
        post_migrate.connect(
            ensure_default_schedules, dispatch_uid="numaportal.ensure_default_schedules"
        )
