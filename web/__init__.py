"""The top layer: pages (views, URLs, templates' helpers), the status page, /metrics, the
heartbeat task and the management commands that compose several apps.

Everything here is thin: it parses the request, calls the service and selector functions of
the apps below (``balancing`` → ``changes`` → ``vms`` → ``hosts`` → ``numaportal`` core →
``numaportal.virt``) and renders. Nothing below imports this package (import-linter checks).
"""
