"""WSGI entry point (gunicorn numaportal.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")
application = get_wsgi_application()
