"""The only package of NUMA Portal that imports libvirt or reads /sys and /proc.

It knows nothing of Django: it takes URIs, XML and ints and returns dataclasses, so that
every piece can be tested on its own and reused by workers that run on a hypervisor.
"""
