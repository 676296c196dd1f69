"""Hypervisor hosts and their NUMA topology (models arrive with the inventory issue)."""
