"""WSGI entry point (gunicorn numaportal.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "numaportal.settings")
application = get_wsgi_application()

# What start-up loaded (modules, settings, URL patterns, the apps: some hundred thousand objects)
# lives as long as the process. Frozen, Python's cyclic garbage collector stops scanning it at
# each full collection, which a host page with hundreds of VMs (thousands of objects alive
# during the request) triggers every few requests: ~60 ms each on a 2-CPU machine, ~10 ms with
# the start-up objects frozen (bench/host_page.py). Garbage is collected first, not frozen.
gc.collect()
gc.freeze()
