from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NumaPortalConfig(AppConfig):
    name = "numaportal"
    verbose_name = "NUMA Portal"

    def ready(self) -> None:
        # Imported here, not at module level: AppConfig modules load before the app registry
        # is ready, and these touch models (Django's documented place for such imports).
        # The Celery app binds @shared_task to the project's configuration in every Django
        # process (web, tests), now that numaportal/__init__.py stays empty for virt's sake.
        from django.conf import settings

        from numaportal.celery import app  # noqa: F401
        from numaportal.roles import ensure_viewer_group
        from numaportal.schedules import ensure_default_schedules
        from numaportal.virt.connection import set_connect_slots

        # numaportal.virt has no Django: the bound on connection attempts is handed to it here.
        set_connect_slots(settings.NUMAPORTAL_LIBVIRT_CONNECT_SLOTS)

        # Runs after each app's permissions were created (auth connects its handler first).
        post_migrate.connect(ensure_viewer_group, dispatch_uid="numaportal.ensure_viewer_group")
        post_migrate.connect(
            ensure_default_schedules, dispatch_uid="numaportal.ensure_default_schedules"
        )
