"""The REST API under ``/api/v1/``: a second face of the services the pages use (hosts, VMs,
numastat, changes, balancing), with their validation, their roles and their words."""
