"""Topology model of the test network: hosts, their access links, party groups, and sources.

A topology is a star: every host has one access link to a switch (a Linux bridge).
A link has two rates, and each says which side's egress is shaped:

- ``up``: host -> network, shaped on the egress of the host's own interface;
- ``down``: network -> host, shaped on the egress of the switch port toward the host.

Traffic from host A to host B is therefore bounded by ``min(A.up, B.down)``.
A party group puts many parties behind one edge host; each party has its own
address on that host and its own ``up``/``down`` rates (a profile), shaped in the
same two places by per-party classes.  ``loopback`` is the topology with no hosts:
everything runs in the root namespace on 127.0.0.1, as before this model existed.

Every figure cites a source by id; the ``sources`` list says where the figure comes
from.  One-way delay and loss are not modelled (the kernel has no ``netem``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fedfaas.errors import FedfaasError

TOPOLOGY_DIR = Path(__file__).with_name("topologies")
COMPONENTS = ("gateway", "functions", "redis", "s3", "cache")
"""What a host can run; ``cache`` is the managed cache (ElastiCache-like Redis) of a baseline."""
REQUIRED_COMPONENTS = ("gateway", "functions", "redis", "s3")
MAX_RATE_BPS = 100_000_000_000
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)bit(?:/s)?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


class TopologyError(FedfaasError):
    """A topology file is missing, malformed, or inconsistent; the message names the field."""

    status = 400
    code = "bad_topology"


def parse_rate(value: object, field: str) -> int:
    """Bits per second from ``20mbit``, ``10 Gbit/s``, ``500kbit`` or an integer (bit/s)."""
    if isinstance(value, bool):
        raise TopologyError(f"{field}: expected a rate like '20mbit', got {value!r}")
    if isinstance(value, int):
        bps = value
    elif isinstance(value, str) and (match := _RATE.match(value)):
        bps = int(float(match.group(1)) * _UNIT[match.group(2).lower()])
    else:
        raise TopologyError(
            f"{field}: expected a rate like '20mbit' or '10gbit' (bits per second; SI units), got {value!r}"
        )
    if not 8_000 <= bps <= MAX_RATE_BPS:
        raise TopologyError(f"{field}: rate {value!r} is outside 8kbit..100gbit")
    return bps


def format_rate(bps: int) -> str:
    """``20mbit`` for 20_000_000; the unit ``tc`` and the YAML files use."""
    for unit, size in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps % size == 0:
            return f"{bps // size}{unit}"
    return f"{bps}bit"


@dataclass(frozen=True)
class Source:
    """A public document a figure comes from."""

    id: str
    title: str
    where: str
    figure: str


@dataclass(frozen=True)
class Link:
    """Access-link rates; ``up`` is the host's egress, ``down`` the switch port's egress toward it."""

    up_bps: int
    down_bps: int
    sources: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"up": format_rate(self.up_bps), "down": format_rate(self.down_bps),
                "sources": list(self.sources)}


@dataclass(frozen=True)
class Host:
    """A network namespace with one access link, running zero or more components."""

    name: str
    runs: tuple[str, ...]
    link: Link


@dataclass(frozen=True)
class Profile:
    """Per-party rates of a share of a party group (e.g. home cable, 4G mobile)."""

    name: str
    link: Link
    weight: int


@dataclass(frozen=True)
class Party:
    """One party: its own address on its group's edge host and its own rates."""

    name: str
    group: str
    host: str
    index: int
    profile: str
    link: Link


@dataclass(frozen=True)
class PartyGroup:
    """``parties`` parties behind one edge host, assigned to profiles by weight, round-robin."""

    name: str
    host: str
    parties: int
    profiles: tuple[Profile, ...]

    def profile_of(self, index: int) -> Profile:
        """Deterministic: with weights 3 and 1, parties 0-2 get the first profile, 3 the second."""
        slot = index % sum(p.weight for p in self.profiles)
        for profile in self.profiles:
            if slot < profile.weight:
                return profile
            slot -= profile.weight
        raise AssertionError("unreachable")

    def members(self) -> list[Party]:
        out = []
        for i in range(self.parties):
            profile = self.profile_of(i)
            out.append(Party(f"{self.name}-{i}", self.name, self.host, i, profile.name, profile.link))
        return out


@dataclass(frozen=True)
class Topology:
    """Hosts, party groups and the sources of their figures; no hosts means ``loopback``."""

    name: str
    description: str
    hosts: Mapping[str, Host]
    party_groups: Mapping[str, PartyGroup]
    sources: Mapping[str, Source]
    raw: Mapping[str, Any]

    @property
    def is_loopback(self) -> bool:
        return not self.hosts

    def host_for(self, component: str) -> str | None:
        """The host that runs ``component``, or None (loopback, or not placed, e.g. ``cache``)."""
        if component not in COMPONENTS:
            raise TopologyError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
        return next((h.name for h in self.hosts.values() if component in h.runs), None)

    def parties(self) -> list[Party]:
        return [p for g in self.party_groups.values() for p in g.members()]

    def with_parties(self, counts: int | Mapping[str, int]) -> Topology:
        """A copy with other party counts: an int for every group, or a count per group name."""
        if isinstance(counts, int):
            counts = dict.fromkeys(self.party_groups, counts)
        groups = dict(self.party_groups)
        for name, count in counts.items():
            if name not in groups:
                raise TopologyError(f"party_groups.{name}: no such group in topology {self.name!r}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise TopologyError(f"party_groups.{name}.parties: expected an integer >= 0, got {count!r}")
            groups[name] = replace(groups[name], parties=count)
        return replace(self, party_groups=groups)


def shipped_topologies() -> list[str]:
    """Names of the topologies shipped with fedfaas."""
    return sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml"))


def load_topology(name_or_path: str | Path) -> Topology:
    """Load a shipped topology by name (``datacenter``) or a YAML file by path, and validate it."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and _NAME.match(str(name_or_path)):
        path = TOPOLOGY_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise TopologyError(
                f"no topology named {name_or_path!r}; shipped: {', '.join(shipped_topologies())}, "
                "or give the path of a YAML file"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read topology file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    return topology_from_dict(data, origin=str(path))


def topology_from_dict(data: object, origin: str = "<dict>") -> Topology:
    """Validate a parsed topology; every error names the offending field."""
    try:
        return _parse(data)
    except TopologyError as exc:
        raise TopologyError(f"{origin}: {exc.message}") from None


def _mapping(value: object, field: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(f"{field}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise TopologyError(f"{field}.{unknown[0]}: unknown field; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(value))
    if missing:
        raise TopologyError(f"{field}.{missing[0]}: required field is missing")
    return value


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise TopologyError(f"{field}: expected a name of 1-24 characters [a-z0-9-], got {value!r}")
    return value


def _link(value: object, field: str, sources: Mapping[str, Source]) -> Link:
    data = _mapping(value, field, {"up", "down", "source"}, {"up", "down", "source"})
    cited = data["source"] if isinstance(data["source"], list) else [data["source"]]
    for source in cited:
        if not isinstance(source, str) or source not in sources:
            raise TopologyError(f"{field}.source: {source!r} is not an id in the sources list")
    up, down = parse_rate(data["up"], f"{field}.up"), parse_rate(data["down"], f"{field}.down")
    return Link(up, down, tuple(cited))


def _parse(data: object) -> Topology:
    top = _mapping(data, "topology", {"name", "description", "hosts", "party_groups", "sources", "notes"},
                   {"name", "sources"})
    name = _name(top["name"], "name")
    sources: dict[str, Source] = {}
    if not isinstance(top["sources"], list):
        raise TopologyError("sources: expected a list of {id, title, where, figure}")
    for i, item in enumerate(top["sources"]):
        src = _mapping(item, f"sources[{i}]", {"id", "title", "where", "figure"}, {"id", "title", "figure"})
        for key in ("id", "title", "figure"):
            if not isinstance(src[key], str) or not src[key].strip():
                raise TopologyError(f"sources[{i}].{key}: expected a non-empty string")
        sources[src["id"]] = Source(src["id"], src["title"], str(src.get("where", "")), src["figure"])
    hosts: dict[str, Host] = {}
    placed: dict[str, str] = {}
    raw_hosts = top.get("hosts") or {}
    if not isinstance(raw_hosts, dict):
        raise TopologyError("hosts: expected a mapping of host name to {runs, link}")
    for host_name, spec in raw_hosts.items():
        field = f"hosts.{host_name}"
        _name(host_name, field)
        spec = _mapping(spec, field, {"runs", "link"}, {"link"})
        runs = spec.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise TopologyError(f"{field}.runs: expected a list of components")
        for comp in runs:
            if comp not in COMPONENTS:
                raise TopologyError(f"{field}.runs: unknown component {comp!r}; "
                                    f"known: {', '.join(COMPONENTS)}")
            if comp in placed:
                raise TopologyError(f"{field}.runs: {comp!r} already runs on host {placed[comp]!r}")
            placed[comp] = host_name
        hosts[host_name] = Host(host_name, tuple(runs), _link(spec["link"], f"{field}.link", sources))
    if hosts:
        missing = [c for c in REQUIRED_COMPONENTS if c not in placed]
        if missing:
            raise TopologyError(f"hosts: no host runs {missing[0]!r} (every non-loopback topology places "
                                f"{', '.join(REQUIRED_COMPONENTS)})")
    groups: dict[str, PartyGroup] = {}
    raw_groups = top.get("party_groups") or {}
    if not isinstance(raw_groups, dict):
        raise TopologyError("party_groups: expected a mapping of group name to {host, parties, profiles}")
    if raw_groups and not hosts:
        raise TopologyError("party_groups: a topology without hosts (loopback) cannot have party groups")
    for group_name, spec in raw_groups.items():
        field = f"party_groups.{group_name}"
        _name(group_name, field)
        spec = _mapping(spec, field, {"host", "parties", "profiles"}, {"host", "parties", "profiles"})
        if spec["host"] not in hosts:
            raise TopologyError(f"{field}.host: {spec['host']!r} is not a host of this topology")
        count = spec["parties"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise TopologyError(f"{field}.parties: expected an integer >= 0, got {count!r}")
        if not isinstance(spec["profiles"], list) or not spec["profiles"]:
            raise TopologyError(f"{field}.profiles: expected a non-empty list of {{name, up, down, weight}}")
        profiles = []
        for i, item in enumerate(spec["profiles"]):
            pfield = f"{field}.profiles[{i}]"
            prof = _mapping(item, pfield, {"name", "up", "down", "source", "weight"},
                            {"name", "up", "down", "source"})
            weight = prof.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise TopologyError(f"{pfield}.weight: expected an integer >= 1, got {weight!r}")
            link = _link({k: prof[k] for k in ("up", "down", "source")}, pfield, sources)
            profiles.append(Profile(_name(prof["name"], f"{pfield}.name"), link, weight))
        clash = next((h for h in hosts if re.fullmatch(rf"{re.escape(group_name)}-\d+", h)), None)
        if clash:
            raise TopologyError(f"{field}: party names {group_name}-N would clash with host {clash!r}")
        groups[group_name] = PartyGroup(group_name, spec["host"], count, tuple(profiles))
    used = {s for h in hosts.values() for s in h.link.sources} | {
        s for g in groups.values() for p in g.profiles for s in p.link.sources}
    unused = sorted(set(sources) - used)
    if unused and hosts:
        raise TopologyError(f"sources: {unused[0]!r} backs no figure; remove it or cite it")
    description = top.get("description", "")
    return Topology(name, str(description), hosts, groups, sources, dict(top))
