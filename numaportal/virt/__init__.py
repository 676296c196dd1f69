"""The only package of NUMA Portal that imports libvirt or reads /sys and /proc.

It knows nothing of Django: it takes URIs, XML and ints and returns dataclasses, so that
every piece can be tested on its own and reused by workers that run on a hypervisor.

Connecting: ``uri`` (validating the hostile URI), ``connection`` (opening it with a timeout
and keepalive, a bounded number at once), ``connection_check`` (a registration's connection
test, in a child process killed on timeout), ``hostfacts`` (what a host says about itself),
``errors``.
Reading: ``topology`` and ``domain`` (capabilities and domain XML), ``inventory`` (one host's
sync), ``hostprobe`` (numastat and numa_balancing from /sys and /proc), ``cpuset``.
Changing a domain found with ``domains``: ``pinning``, ``numatune``, ``vcpus``, each in a
``scope``, and ``snapshot`` for the state before and after.
"""
