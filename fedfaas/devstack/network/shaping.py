"""``tc`` batch lines that shape one interface's egress: an ``htb`` tree with ``u32`` filters.

Every shaped interface gets the same tree (class minors are hexadecimal, as in ``tc``)::

    1:    htb root, unclassified traffic -> 1:10
    1:1   the access link (its rate is the link's rate in this direction)
    1:10  default class under 1:1
    1:2   drop class: its leaf is the ``blackhole`` qdisc, which drops every packet
    1:1NN pair classes under 1:1 (``set_rate`` between two hosts)
    1:1000+i  one class per party under 1:1 (party groups)

Filters are checked by ascending priority: partitions (which send packets to 1:2)
first, then pair rates, then parties.  This needs only ``htb``, ``u32`` and the
always-built ``blackhole`` qdisc, no ``netem``, ``gact`` or netfilter.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

LINK_MINOR = 0x1
DROP_MINOR = 0x2
DEFAULT_MINOR = 0x10
PAIR_MINOR_BASE = 0x100
PAIR_MINOR_MAX = 0xFFF
PARTY_MINOR_BASE = 0x1000
PARTITION_PRIO_BASE = 10
RATE_PRIO_BASE = 5_000
PARTY_PRIO = 20_000
_MTU = 1514


def _quantum(rate_bps: int) -> int:
    # htb warns when rate/r2q leaves 1,514..200,000 bytes; the quantum only splits spare rate.
    return max(_MTU, min(rate_bps // 8 // 10, 200_000))


def _class(dev: str, minor: int, rate_bps: int, parent: str = f"1:{LINK_MINOR:x}", verb: str = "add") -> str:
    return (f"class {verb} dev {dev} parent {parent} classid 1:{minor:x} htb "
            f"rate {rate_bps}bit ceil {rate_bps}bit quantum {_quantum(rate_bps)}")


def link_tree(dev: str, rate_bps: int) -> list[str]:
    """The htb root, the link class, the default class and the drop class."""
    return [
        f"qdisc add dev {dev} root handle 1: htb default {DEFAULT_MINOR:x}",
        _class(dev, LINK_MINOR, rate_bps, parent="1:"),
        _class(dev, DEFAULT_MINOR, rate_bps),
        _class(dev, DROP_MINOR, 8_000, parent="1:"),
        f"qdisc add dev {dev} parent 1:{DROP_MINOR:x} handle {DROP_MINOR:x}: blackhole",
    ]


def selector(field: str, addr: IPv4Network | IPv4Address) -> str:
    """A u32 selector on one address field, ``src`` or ``dst``."""
    return f"match ip {field} {IPv4Network(addr)}"


def filter_line(dev: str, prio: int, selectors: str, minor: int) -> str:
    return f"filter add dev {dev} parent 1: prio {prio} protocol ip u32 {selectors} flowid 1:{minor:x}"


def delete_filters(dev: str, prio: int) -> str:
    """Removes every filter of one priority (one rule) from the interface."""
    return f"filter del dev {dev} parent 1: prio {prio} protocol ip u32"


def party_class(dev: str, minor: int, rate_bps: int) -> str:
    return _class(dev, minor, rate_bps)


def pair_class(dev: str, minor: int, rate_bps: int, *, change: bool = False) -> str:
    return _class(dev, minor, rate_bps, verb="change" if change else "add")


def delete_class(dev: str, minor: int) -> str:
    return f"class del dev {dev} classid 1:{minor:x}"
