"""NUMA Portal: NUMA and CPU placement of KVM virtual machines, from a browser."""
