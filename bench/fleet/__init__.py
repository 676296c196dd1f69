"""The fleet simulator: hosts of libvirt's test driver, for the fleet benchmarks and tests.

:mod:`bench.fleet.generate` writes the host files (no Django); :mod:`bench.fleet.register`
registers them with the portal (``python -m bench.fleet register --hosts 500 --vms 40``).
How a simulated host gets its NUMA cells: :mod:`numaportal.virt.simulated`.
"""
