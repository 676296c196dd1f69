"""``python -m bench.fleet register …`` (see :mod:`bench.fleet.register`)."""

import sys

from bench.fleet import register

if len(sys.argv) < 2 or sys.argv[1] != "register":
    sys.exit("usage: python -m bench.fleet register [--hosts N] [--vms M] [--check]")
sys.exit(register.main(sys.argv[2:]))
