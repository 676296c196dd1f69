"""Create the first admin account once, so that a new user can log in straight away."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser NUMAPORTAL_ADMIN_USER (default 'admin') when no superuser exists. "
        "The password comes from NUMAPORTAL_ADMIN_PASSWORD or is generated and printed once."
    )

    def handle(self, *args: object, **options: object) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already; not creating one.")
            return
        username = os.environ.get("NUMAPORTAL_ADMIN_USER", "admin")
        password = os.environ.get("NUMAPORTAL_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        if generated:
            # Printed once and never stored in clear: the only place a newcomer sees it.
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin account '{username}' with password: {password}\n"
                    "  (shown only now; change it in the admin, or set "
                    "NUMAPORTAL_ADMIN_PASSWORD before the first run)"
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created admin account '{username}' with NUMAPORTAL_ADMIN_PASSWORD."
                )
            )
