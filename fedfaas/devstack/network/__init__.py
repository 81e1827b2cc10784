"""A real network on one machine: topologies of hosts as Linux network namespaces, shaped links,
partitions.  See ``docs/network.md``.

``load_topology(name_or_path)`` reads a model; ``NetworkLab(state_dir)`` creates it
(``create``), places processes on hosts (``exec_argv``, ``address``), injects faults
(``partition``, ``heal``, ``set_rate``), reports (``status``) and removes it (``teardown``).
"""

from fedfaas.devstack.network.addresses import PROJECT_RANGE, AddressPlan
from fedfaas.devstack.network.lab import NetworkLab, NetworkLabError, NetworkUnavailable, check_privileges
from fedfaas.devstack.network.topology import (
    Topology,
    TopologyError,
    format_rate,
    load_topology,
    parse_rate,
    shipped_topologies,
)

__all__ = [
    "PROJECT_RANGE",
    "AddressPlan",
    "NetworkLab",
    "NetworkLabError",
    "NetworkUnavailable",
    "Topology",
    "TopologyError",
    "check_privileges",
    "format_rate",
    "load_topology",
    "parse_rate",
    "shipped_topologies",
]
