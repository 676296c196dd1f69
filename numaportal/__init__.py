"""NUMA Portal: NUMA and CPU placement of KVM virtual machines, from a browser.

Deliberately empty: ``numaportal.virt`` lives in this package and must import without Django
or Celery (a test checks it in a subprocess). The Celery app is loaded by
``NumaPortalConfig.ready()`` in every Django process and by ``celery -A numaportal``.
"""
