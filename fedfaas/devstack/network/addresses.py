"""Address plan of a network lab, inside the range the project owns: ``10.213.0.0/16``.

``10.213.0.0/16`` is private (RFC 1918) address space that fedfaas claims for its
test networks; nothing else on the machine should use it.  The range is cut into
sixteen ``/20`` slots, one per running lab, so concurrent labs (several test
sessions) never share an address.  Inside slot ``s`` (base ``10.213.16*s.0``):

- ``base + 1``: the bridge, in the root namespace (the "client": tests, the CLI);
- ``base + 10 ...``: the hosts, in the order of the topology file (at most 240);
- ``base + 256 ...``: one aligned block per party group (a power of two that holds
  its parties), one ``/32`` per party.

So a lab holds at most 3,840 parties.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from fedfaas.devstack.network.topology import Topology, TopologyError

PROJECT_RANGE = IPv4Network("10.213.0.0/16")
SLOT_PREFIX = 20
_FIRST_HOST = 10
_MAX_HOSTS = 240
_FIRST_PARTY = 256


def free_slot(used: Iterable[IPv4Address], project_range: IPv4Network = PROJECT_RANGE) -> IPv4Network:
    """The first ``/20`` of the range that holds none of the ``used`` addresses."""
    taken = list(used)
    for slot in project_range.subnets(new_prefix=SLOT_PREFIX):
        if not any(addr in slot for addr in taken):
            return slot
    raise TopologyError(f"every /{SLOT_PREFIX} slot of {project_range} is used by a running lab; "
                        "tear one down (fedfaas down)")


@dataclass(frozen=True)
class AddressPlan:
    """Addresses of the bridge, each host, each party group's block and each party."""

    subnet: IPv4Network
    bridge: IPv4Address
    hosts: dict[str, IPv4Address] = field(default_factory=dict)
    blocks: dict[str, IPv4Network] = field(default_factory=dict)
    parties: dict[str, IPv4Address] = field(default_factory=dict)

    @classmethod
    def plan(cls, topology: Topology, subnet: IPv4Network) -> AddressPlan:
        if len(topology.hosts) > _MAX_HOSTS:
            raise TopologyError(f"hosts: {len(topology.hosts)} hosts; a lab holds at most {_MAX_HOSTS}")
        base = int(subnet.network_address)
        hosts = {name: IPv4Address(base + _FIRST_HOST + i) for i, name in enumerate(topology.hosts)}
        blocks: dict[str, IPv4Network] = {}
        parties: dict[str, IPv4Address] = {}
        offset = _FIRST_PARTY
        for group in topology.party_groups.values():
            size = 4
            while size < group.parties:
                size *= 2
            offset = -(-offset // size) * size  # align the block to its size
            if offset + size > subnet.num_addresses:
                raise TopologyError(f"party_groups.{group.name}.parties: {group.parties} parties do not fit "
                                    f"the lab's {subnet} (at most {subnet.num_addresses - _FIRST_PARTY})")
            block = IPv4Network(f"{IPv4Address(base + offset)}/{32 - size.bit_length() + 1}")
            blocks[group.name] = block
            for party in group.members():
                parties[party.name] = IPv4Address(base + offset + party.index)
            offset += size
        return cls(subnet, IPv4Address(base + 1), hosts, blocks, parties)

    def host_networks(self, topology: Topology, host: str) -> list[IPv4Network]:
        """Every address that lives on ``host``: its own and its party groups' blocks."""
        nets = [IPv4Network(f"{self.hosts[host]}/32")]
        nets += [self.blocks[g.name] for g in topology.party_groups.values() if g.host == host]
        return nets
