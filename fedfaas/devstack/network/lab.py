"""A network lab: the hosts of a topology as Linux network namespaces on one bridge.

Layout (see ``docs/network.md``): one bridge ``<prefix>br`` in the root namespace
holds the lab's first address, so the root namespace (tests, the CLI, the
launcher) reaches every host; each host is a namespace ``<prefix>-<host>`` whose
``eth0`` is one end of a veth pair, the other end ``<prefix>h<N>`` a bridge port.
``<prefix>`` is ``ff`` plus a random lab id, so concurrent labs never collide and
interface names stay within Linux's 15 characters.

Shaping (``shaping.py``): a host's ``up`` rate is an htb tree on its ``eth0``, its
``down`` rate one on its bridge port.  Partitions send the pair's packets to a
``blackhole`` class on both hosts' ``eth0``; degraded pairs get their own class.

The state file ``network-lab.json`` in ``state_dir`` is written before anything is
created and names everything the lab creates, so ``teardown`` works after a
crash, from any process.  Every command has a timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from fedfaas.devstack.network import shaping
from fedfaas.devstack.network.addresses import PROJECT_RANGE, AddressPlan, free_slot
from fedfaas.devstack.network.topology import (
    MAX_RATE_BPS,
    Topology,
    format_rate,
    topology_from_dict,
)
from fedfaas.errors import FedfaasError

STATE_FILE = "network-lab.json"
HOST_DEV = "eth0"
LIMITS_APPLY = ("up: egress of the host's eth0 (host -> network); "
                "down: egress of the bridge port toward the host (network -> host)")
COMMAND_TIMEOUT_S = 20.0
LOOPBACK_ADDRESS = "127.0.0.1"


class NetworkUnavailable(FedfaasError):
    """This machine or user cannot create namespaces, veths, bridges or htb qdiscs."""

    status = 503
    code = "network_unavailable"


class NetworkLabError(FedfaasError):
    """A lab operation failed or was asked of something the lab does not have."""

    status = 400
    code = "network_lab_error"


def _run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise NetworkLabError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        raise NetworkLabError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _batch(tool: str, ns: str | None, lines: list[str]) -> None:
    """One ``ip``/``tc`` process for many commands (1,000 parties -> 4,000 lines)."""
    if lines:
        argv = [tool, *(["-n", ns] if ns else []), "-batch", "-"]
        _run(argv, stdin="\n".join(lines) + "\n", timeout=COMMAND_TIMEOUT_S + 0.02 * len(lines))


def check_privileges() -> None:
    """Raise :class:`NetworkUnavailable` (one line) unless namespaces, veths, a bridge, htb, u32
    and the blackhole qdisc can all be created; probes in a throwaway namespace (~50 ms)."""
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise NetworkUnavailable(f"--topology needs iproute2 ({' and '.join(missing)} not found; "
                                 "Debian: apt-get install iproute2); --topology loopback needs nothing")
    probe = f"ffprobe{os.getpid()}{secrets.token_hex(2)}"
    steps = [
        ("network namespaces", ["ip", "netns", "add", probe]),
        ("veth pairs", ["ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]),
        ("bridges", ["ip", "-n", probe, "link", "add", "p2", "type", "bridge"]),
        ("the htb qdisc", ["tc", "-n", probe, "qdisc", "add", "dev", "p0", "root", "handle", "1:", "htb"]),
        ("htb classes", ["tc", "-n", probe, "class", "add", "dev", "p0", "parent", "1:", "classid", "1:2",
                         "htb", "rate", "8kbit"]),
        ("the blackhole qdisc", ["tc", "-n", probe, "qdisc", "add", "dev", "p0", "parent", "1:2",
                                 "blackhole"]),
        ("u32 filters", ["tc", "-n", probe, "filter", "add", "dev", "p0", "parent", "1:", "protocol", "ip",
                         "u32", "match", "ip", "dst", "10.213.0.1/32", "flowid", "1:2"]),
    ]
    try:
        for what, argv in steps:
            done = _run(argv, check=False, timeout=10)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["failed"])[0]
                hint = ("run as root (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)" if os.geteuid() != 0
                        else "the kernel lacks it")
                raise NetworkUnavailable(f"--topology cannot create {what} ({reason}): {hint}; "
                                         "--topology loopback works without it")
    finally:
        _run(["ip", "netns", "del", probe], check=False, timeout=10)


@dataclass(frozen=True)
class _Endpoint:
    """A host, or one party on its group's edge host."""

    name: str
    host: str
    nets: list[IPv4Network]
    src: IPv4Network | None
    up_bps: int | None


def _existing_netns() -> set[str]:
    out = _run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return {item["name"] for item in json.loads(out)} if out else set()


def _existing_links() -> set[str]:
    out = _run(["ip", "-j", "link", "show"]).stdout.strip()
    return {item["ifname"] for item in json.loads(out)} if out else set()


@contextlib.contextmanager
def _flock(path: Path, timeout: float = 30.0) -> Iterator[None]:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetworkLabError(f"{path} stayed locked for {timeout:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _range_lock() -> contextlib.AbstractContextManager[None]:
    """Machine-wide lock taken while a lab picks its /20 slot and claims it on its bridge."""
    lock_dir = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
    return _flock(lock_dir / "fedfaas-netlab.lock")


class NetworkLab:
    """The hosts of one topology as namespaces; state in ``state_dir/network-lab.json``."""

    check_privileges = staticmethod(check_privileges)

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_path = self.state_dir / STATE_FILE
        self._model: tuple[Topology, AddressPlan | None] | None = None

    # -- state ---------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
            return state
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NetworkLabError(f"{self.state_path} is unreadable ({exc}); remove it after checking "
                                  "`ip netns list` for namespaces named ff*") from exc

    def _save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def _state(self) -> dict[str, Any]:
        state = self._load()
        if state is None:
            raise NetworkLabError(f"no network lab in {self.state_dir} (start one with a --topology)")
        return state

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return _flock(self.state_dir / (STATE_FILE + ".lock"))

    def _topology_and_plan(self) -> tuple[Topology, AddressPlan | None]:
        if self._model is None:
            state = self._state()
            topo = topology_from_dict(state["topology"], origin=STATE_FILE)
            topo = topo.with_parties(state["party_counts"])
            plan = AddressPlan.plan(topo, IPv4Network(state["subnet"])) if state.get("subnet") else None
            self._model = (topo, plan)
        return self._model

    @property
    def topology(self) -> Topology:
        """The topology this lab was created from."""
        return self._topology_and_plan()[0]

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self, topology: Topology) -> dict[str, list[str]]:
        """Create every host of ``topology``; returns host -> addresses (its own first, then its parties').

        ``loopback`` creates nothing and needs no privileges.  Raises
        :class:`NetworkUnavailable` when namespaces cannot be created, and
        :class:`NetworkLabError` when a lab of this ``state_dir`` is still up.
        """
        with self._locked():
            self._refuse_if_running()
            self._model = None
            counts = {name: g.parties for name, g in topology.party_groups.items()}
            state: dict[str, Any] = {
                "version": 1, "topology": dict(topology.raw), "party_counts": counts, "phase": "creating",
                "rules": [], "next_prio": shaping.PARTITION_PRIO_BASE,
                "next_rate_prio": shaping.RATE_PRIO_BASE, "next_minor": shaping.PAIR_MINOR_BASE}
            if topology.is_loopback:
                state["phase"] = "up"
                self._save(state)
                return {}
            check_privileges()
            try:
                with _range_lock():
                    links = json.loads(_run(["ip", "-j", "-4", "addr"]).stdout)
                    used = [IPv4Address(a["local"]) for link in links for a in link.get("addr_info", [])]
                    subnet = free_slot(used, PROJECT_RANGE)
                    plan = AddressPlan.plan(topology, subnet)
                    self._name_lab(state, topology, plan)
                    self._save(state)  # before anything exists: teardown can always find it
                    bridge = state["bridge"]["name"]
                    _run(["ip", "link", "add", bridge, "type", "bridge"])
                    _run(["ip", "addr", "add", f"{plan.bridge}/{subnet.prefixlen}", "dev", bridge])
                    _run(["ip", "link", "set", bridge, "up"])
                for name in topology.hosts:
                    self._create_host(topology, plan, state, name)
            except BaseException:
                self._teardown_unlocked()
                raise
            state["phase"] = "up"
            self._save(state)
            self._model = (topology, plan)
        return self.host_addresses()

    def _refuse_if_running(self) -> None:
        state = self._load()
        if state is None:
            return
        if state.get("prefix") and self._leftovers(state):
            raise NetworkLabError(f"a network lab is still up in {self.state_dir}; tear it down first "
                                  "(fedfaas down)")
        self.state_path.unlink()  # stale: nothing of it exists any more (e.g. after a reboot)

    def _name_lab(self, state: dict[str, Any], topology: Topology, plan: AddressPlan) -> None:
        netns, links = _existing_netns(), _existing_links()
        while True:
            prefix = "ff" + secrets.token_hex(3)
            if not any(n.startswith(prefix) for n in netns | links):
                break
        state.update(prefix=prefix, subnet=str(plan.subnet),
                     bridge={"name": f"{prefix}br", "address": str(plan.bridge)},
                     hosts={name: {"namespace": f"{prefix}-{name}", "veth": f"{prefix}h{i}",
                                   "address": str(plan.hosts[name])}
                            for i, name in enumerate(topology.hosts)})

    def _create_host(self, topology: Topology, plan: AddressPlan, state: dict[str, Any], name: str) -> None:
        host = topology.hosts[name]
        ns, veth = state["hosts"][name]["namespace"], state["hosts"][name]["veth"]
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", HOST_DEV, "netns", ns])
        _run(["ip", "link", "set", veth, "master", state["bridge"]["name"], "up"])
        parties = [p for p in topology.parties() if p.host == name]
        _batch("ip", ns, [
            "link set lo up",
            f"addr add {plan.hosts[name]}/{plan.subnet.prefixlen} dev {HOST_DEV}",
            *(f"addr add {plan.parties[p.name]}/32 dev {HOST_DEV}" for p in parties),
            f"link set {HOST_DEV} up",
        ])
        up = shaping.link_tree(HOST_DEV, host.link.up_bps)
        down = shaping.link_tree(veth, host.link.down_bps)
        for i, party in enumerate(parties):
            minor, addr = shaping.PARTY_MINOR_BASE + i, plan.parties[party.name]
            up += [shaping.party_class(HOST_DEV, minor, party.link.up_bps),
                   shaping.filter_line(HOST_DEV, shaping.PARTY_PRIO, shaping.selector("src", addr), minor)]
            down += [shaping.party_class(veth, minor, party.link.down_bps),
                     shaping.filter_line(veth, shaping.PARTY_PRIO, shaping.selector("dst", addr), minor)]
        _batch("tc", ns, up)
        _batch("tc", None, down)

    def _leftovers(self, state: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(namespaces, root-namespace links) of this lab that still exist."""
        prefix = state.get("prefix")
        if not prefix:
            return [], []
        hosts = state.get("hosts", {}).values()
        named_ns = {h["namespace"] for h in hosts}
        named_links = {h["veth"] for h in hosts} | {state["bridge"]["name"]}
        netns = [n for n in _existing_netns() if n in named_ns or n.startswith(prefix + "-")]
        links = [n for n in _existing_links() if n in named_links or n.startswith(prefix)]
        return sorted(netns), sorted(links, key=lambda n: n == state["bridge"]["name"])  # bridge last

    def teardown(self) -> list[str]:
        """Remove every namespace, veth, bridge and qdisc of this lab, also after a crash; returns
        what was removed.  Idempotent; without a state file it does nothing."""
        with self._locked():
            return self._teardown_unlocked()

    def _teardown_unlocked(self) -> list[str]:
        state = self._load()
        if state is None:
            return []
        netns, links = self._leftovers(state)
        removed = []
        # Deleting a veth's root end removes its peer at once (a namespace's devices go asynchronously).
        for link in links:
            _run(["ip", "link", "del", link], check=False)
            removed.append(link)
        for ns in netns:
            _run(["ip", "netns", "del", ns])
            removed.append(ns)
        left = self._leftovers(state)
        if left[0] or left[1]:
            raise NetworkLabError(f"teardown left {', '.join(left[0] + left[1])}")
        self.state_path.unlink(missing_ok=True)
        self._model = None
        return removed

    # -- placing processes ---------------------------------------------------------------------

    def _resolve(self, name: str) -> _Endpoint:
        topo, plan = self._topology_and_plan()
        if plan is None:
            raise NetworkLabError(f"topology {topo.name!r} has no hosts (all runs on {LOOPBACK_ADDRESS})")
        if name in topo.hosts:
            return _Endpoint(name, name, plan.host_networks(topo, name), None, None)
        if name in plan.parties:
            party = next(p for p in topo.parties() if p.name == name)
            net = IPv4Network(plan.parties[name])
            return _Endpoint(name, party.host, [net], net, party.link.up_bps)
        raise NetworkLabError(f"no host or party {name!r} in topology {topo.name!r}; hosts: "
                              f"{', '.join(topo.hosts)}; parties are named <group>-<index>")

    def address(self, name: str) -> str:
        """Address of a host or party (``127.0.0.1`` for every name under ``loopback``)."""
        plan = self._topology_and_plan()[1]
        if plan is None:
            return LOOPBACK_ADDRESS
        self._resolve(name)
        return str(plan.hosts.get(name) or plan.parties[name])

    def host_addresses(self) -> dict[str, list[str]]:
        """Host -> its addresses: its own first, then those of the parties behind it."""
        topo, plan = self._topology_and_plan()
        if plan is None:
            return {}
        out = {name: [str(addr)] for name, addr in plan.hosts.items()}
        for party in topo.parties():
            out[party.host].append(str(plan.parties[party.name]))
        return out

    @property
    def client_address(self) -> str:
        """The root namespace's address in the lab (the bridge), from which tests and the CLI connect."""
        state = self._state()
        return str(state["bridge"]["address"]) if state.get("bridge") else LOOPBACK_ADDRESS

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run on host ``name`` (or a party's edge host): prefixed by ``ip netns exec <ns>``."""
        if self._topology_and_plan()[1] is None:
            return list(argv)
        host = self._resolve(name).host
        return ["ip", "netns", "exec", self._state()["hosts"][host]["namespace"], *argv]

    # -- faults --------------------------------------------------------------------------------

    def _pair(self, a: str, b: str) -> tuple[_Endpoint, _Endpoint]:
        x, y = self._resolve(a), self._resolve(b)
        if x.host == y.host:
            raise NetworkLabError(f"{a!r} and {b!r} are on the same host {x.host!r}: no link between them")
        return x, y

    @staticmethod
    def _rule(state: dict[str, Any], kind: str, a: str, b: str) -> dict[str, Any] | None:
        pair = sorted((a, b))
        return next((r for r in state["rules"] if r["kind"] == kind and r["pair"] == pair), None)

    @staticmethod
    def _rule_filters(x: _Endpoint, y: _Endpoint, prio: int, minor: int) -> list[str]:
        """Filters on ``x``'s eth0 that catch its packets to ``y``."""
        src = f" {shaping.selector('src', x.src)}" if x.src else ""
        return [shaping.filter_line(HOST_DEV, prio, shaping.selector("dst", net) + src, minor)
                for net in y.nets]

    def _ns(self, state: dict[str, Any], host: str) -> str:
        return str(state["hosts"][host]["namespace"])

    def partition(self, a: str, b: str) -> None:
        """Drop every IP packet between ``a`` and ``b`` (hosts or parties), both ways.  Idempotent."""
        with self._locked():
            state = self._state()
            x, y = self._pair(a, b)
            if self._rule(state, "partition", a, b):
                return
            prio = state["next_prio"]
            if prio >= shaping.RATE_PRIO_BASE:
                raise NetworkLabError("too many partitions in one lab")
            for one, other in ((x, y), (y, x)):
                _batch("tc", self._ns(state, one.host),
                       self._rule_filters(one, other, prio, shaping.DROP_MINOR))
            state["rules"].append({"kind": "partition", "pair": sorted((a, b)), "prio": prio,
                                   "hosts": [x.host, y.host]})
            state["next_prio"] = prio + 1
            self._save(state)

    def heal(self, a: str, b: str) -> bool:
        """Undo ``partition(a, b)``; False when they were not partitioned."""
        with self._locked():
            state = self._state()
            rule = self._rule(state, "partition", a, b)
            if rule is None:
                return False
            for host in rule["hosts"]:
                _batch("tc", self._ns(state, host), [shaping.delete_filters(HOST_DEV, rule["prio"])])
            state["rules"].remove(rule)
            self._save(state)
            return True

    def set_rate(self, a: str, b: str, rate_bps: int | None) -> None:
        """Limit traffic between ``a`` and ``b`` to ``rate_bps`` each way (on top of their links);
        ``None`` restores the topology's rates.  A party's own ``up`` rate still caps its side."""
        if rate_bps is not None and (isinstance(rate_bps, bool) or not 8_000 <= rate_bps <= MAX_RATE_BPS):
            raise NetworkLabError(f"rate_bps: expected 8,000..{MAX_RATE_BPS:,} bit/s, got {rate_bps!r}")
        with self._locked():
            state = self._state()
            x, y = self._pair(a, b)
            rule = self._rule(state, "rate", a, b)
            if rule is not None:
                for end in (x, y):
                    ns = self._ns(state, end.host)
                    if rate_bps is None:
                        _batch("tc", ns, [shaping.delete_filters(HOST_DEV, rule["prio"]),
                                          shaping.delete_class(HOST_DEV, rule["minor"])])
                    else:
                        rate = min(rate_bps, end.up_bps or rate_bps)
                        _batch("tc", ns, [shaping.pair_class(HOST_DEV, rule["minor"], rate, change=True)])
                if rate_bps is None:
                    state["rules"].remove(rule)
                else:
                    rule["rate_bps"] = rate_bps
            elif rate_bps is not None:
                prio, minor = state["next_rate_prio"], state["next_minor"]
                if minor > shaping.PAIR_MINOR_MAX or prio >= shaping.PARTY_PRIO:
                    raise NetworkLabError("too many degraded links in one lab")
                for one, other in ((x, y), (y, x)):
                    rate = min(rate_bps, one.up_bps or rate_bps)
                    _batch("tc", self._ns(state, one.host),
                           [shaping.pair_class(HOST_DEV, minor, rate),
                            *self._rule_filters(one, other, prio, minor)])
                state["rules"].append({"kind": "rate", "pair": sorted((a, b)), "prio": prio, "minor": minor,
                                       "rate_bps": rate_bps, "hosts": [x.host, y.host]})
                state["next_rate_prio"], state["next_minor"] = prio + 1, minor + 1
            self._save(state)

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Hosts, addresses, links and their limits, party groups, partitions and degraded pairs."""
        state = self._load()
        if state is None:
            return {"active": False, "state_dir": str(self.state_dir)}
        topo, plan = self._topology_and_plan()
        alive = _existing_netns() if plan is not None else set()
        hosts = {}
        for name, host in topo.hosts.items():
            info = state["hosts"][name]
            hosts[name] = {"namespace": info["namespace"], "address": info["address"],
                           "runs": list(host.runs), "bridge_port": info["veth"],
                           "alive": info["namespace"] in alive,
                           "link": {**host.link.describe(), "up_bps": host.link.up_bps,
                                    "down_bps": host.link.down_bps}}
        groups = {}
        for name, group in topo.party_groups.items():
            members = group.members()
            groups[name] = {
                "host": group.host, "parties": group.parties,
                "addresses": str(plan.blocks[name]) if plan else None,
                "profiles": {p.name: {**p.link.describe(),
                                      "parties": sum(m.profile == p.name for m in members)}
                             for p in group.profiles}}
        return {
            "active": state["phase"] == "up", "phase": state["phase"], "topology": topo.name,
            "state_dir": str(self.state_dir), "lab": state.get("prefix"), "subnet": state.get("subnet"),
            "bridge": state.get("bridge"), "limits_apply": LIMITS_APPLY,
            "not_modelled": "one-way delay and loss (no netem in this kernel)",
            "hosts": hosts, "party_groups": groups,
            "partitions": [r["pair"] for r in state["rules"] if r["kind"] == "partition"],
            "degraded": [{"pair": r["pair"], "rate": format_rate(r["rate_bps"]), "rate_bps": r["rate_bps"]}
                         for r in state["rules"] if r["kind"] == "rate"],
        }
