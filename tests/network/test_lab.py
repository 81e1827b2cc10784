"""The network lab on real namespaces: addresses, measured rates, per-party shaping, partitions,
and a teardown that leaves nothing behind, also after a crash.

Needs root and iproute2 (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedfaas.devstack.network import (
    NetworkLab,
    NetworkUnavailable,
    check_privileges,
    load_topology,
)
from fedfaas.devstack.network.topology import topology_from_dict


def _why_unavailable() -> str | None:
    try:
        check_privileges()
    except NetworkUnavailable as exc:
        return exc.message
    return None


_UNAVAILABLE = _why_unavailable()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"network lab unavailable: {_UNAVAILABLE}")

MBIT = 1_000_000
PORT = 5201

# A tiny socket tool run inside the namespaces with `ip netns exec`.
PROBE = textwrap.dedent('''
    import json, socket, sys, threading, time
    cmd, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if cmd == "sink":  # receive N TCP streams; one JSON line per stream
        srv = socket.create_server((addr, port))
        srv.settimeout(20)
        print("ready", flush=True)
        def drain(conn, peer):
            total, first = 0, None
            while chunk := conn.recv(1 << 16):
                first = first or time.monotonic()
                total += len(chunk)
            bps = total * 8 / (time.monotonic() - first)
            print(json.dumps({"peer": peer[0], "bytes": total, "bps": bps}), flush=True)
        threads = [threading.Thread(target=drain, args=srv.accept()) for _ in range(int(sys.argv[4]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif cmd == "send":  # send BYTES, optionally from a SOURCE address
        source = (sys.argv[5], 0) if len(sys.argv) > 5 else None
        conn = socket.create_connection((addr, port), timeout=10, source_address=source)
        left, block = int(sys.argv[4]), b"x" * 65536
        while left > 0:
            conn.sendall(block[:left])
            left -= len(block)
        conn.close()
    elif cmd == "listen":  # accept and close, forever
        srv = socket.create_server((addr, port))
        print("ready", flush=True)
        while True:
            srv.accept()[0].close()
    elif cmd == "connect":  # print ok, or the error's name
        try:
            socket.create_connection((addr, port), timeout=float(sys.argv[4])).close()
            print("ok")
        except OSError as exc:
            print(type(exc).__name__)
    elif cmd == "udp-recv":  # count datagrams for SECONDS
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((addr, port))
        print("ready", flush=True)
        sock.settimeout(0.1)
        count, end = 0, time.monotonic() + float(sys.argv[4])
        while time.monotonic() < end:
            try:
                sock.recv(100)
                count += 1
            except TimeoutError:
                pass
        print(count, flush=True)
    elif cmd == "udp-send":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(int(sys.argv[4])):
            sock.sendto(b"x", (addr, port))
            time.sleep(0.01)
''')

# Low rates so that a few MB measure them in ~2 s.  gateway's up and s3's down bind.
SHAPED = {
    "name": "shaped",
    "hosts": {
        "gateway": {"runs": ["gateway"], "link": {"up": "20mbit", "down": "1gbit", "source": "test"}},
        "functions": {"runs": ["functions"], "link": {"up": "1gbit", "down": "1gbit", "source": "test"}},
        "redis": {"runs": ["redis"], "link": {"up": "1gbit", "down": "1gbit", "source": "test"}},
        "s3": {"runs": ["s3"], "link": {"up": "1gbit", "down": "12mbit", "source": "test"}},
        "edge": {"link": {"up": "1gbit", "down": "1gbit", "source": "test"}},
    },
    "party_groups": {"party": {"host": "edge", "parties": 2, "profiles": [
        {"name": "slow", "up": "8mbit", "down": "1gbit", "source": "test"},
        {"name": "fast", "up": "16mbit", "down": "1gbit", "source": "test"},
    ]}},
    "sources": [{"id": "test", "title": "test rates", "figure": "low rates that measure quickly"}],
}


def _lab_names(prefix: str) -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10).stdout
    names = [line.split()[0] for line in netns.splitlines() if line.strip()]
    names += [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    return [n for n in names if n.startswith(prefix)]


def _qdiscs_of(prefix: str) -> list[str]:
    out = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if f"dev {prefix}" in line]


class Probe:
    """Runs the socket tool on hosts of one lab."""

    def __init__(self, lab: NetworkLab, script: Path) -> None:
        self.lab, self.script = lab, script
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, host: str, *args: object) -> list[str]:
        return self.lab.exec_argv(host, [sys.executable, str(self.script), *map(str, args)])

    def start(self, host: str, *args: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.argv(host, *args), stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline().strip() == "ready"
        return proc

    def run(self, host: str, *args: object, timeout: float = 20) -> str:
        return subprocess.run(self.argv(host, *args), capture_output=True, text=True, timeout=timeout,
                              check=True).stdout.strip()

    def measure(self, sink: str, senders: list[tuple[str, int, str | None]]) -> dict[str, float]:
        """Bits per second per sender address, all senders at once: (host, bytes, source address)."""
        proc = self.start(sink, "sink", self.lab.address(sink), PORT, len(senders))
        clients = [subprocess.Popen(self.argv(host, "send", self.lab.address(sink), PORT, size,
                                              *([source] if source else [])))
                   for host, size, source in senders]
        for client in clients:
            assert client.wait(timeout=30) == 0
        out, _ = proc.communicate(timeout=30)
        return {row["peer"]: row["bps"] for row in map(json.loads, out.splitlines())}

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetworkLab, Probe]]:
    tmp = tmp_path_factory.mktemp("shaped")
    script = tmp / "probe.py"
    script.write_text(PROBE)
    lab = NetworkLab(tmp / "state")
    lab.create(topology_from_dict(SHAPED))
    probe = Probe(lab, script)
    try:
        yield lab, probe
    finally:
        probe.stop()
        lab.teardown()


def _near(measured: float, expected: float) -> bool:
    return 0.75 * expected <= measured <= 1.25 * expected


def test_datacenter_gives_each_host_a_namespace_and_address(tmp_path: Path) -> None:
    # Prepare
    lab = NetworkLab(tmp_path)
    other = NetworkLab(tmp_path / "other")
    try:
        # Execute
        hosts = lab.create(load_topology("datacenter"))
        other.create(load_topology("datacenter").with_parties(0))
        status = lab.status()

        # Assert
        assert set(hosts) == {"gateway", "functions", "redis", "s3", "parties"}
        for name, info in status["hosts"].items():
            shown = subprocess.run(["ip", "-n", info["namespace"], "-j", "addr", "show", "eth0"],
                                   capture_output=True, text=True, timeout=10, check=True).stdout
            assert hosts[name][0] in {a["local"] for a in json.loads(shown)[0]["addr_info"]}
            assert info["alive"] and info["link"]["up"] == ("10gbit")
        assert status["party_groups"]["party"]["profiles"]["datacenter"]["up"] == "5gbit"
        assert len(hosts["parties"]) == 1 + 4
        assert other.status()["subnet"] != status["subnet"] and other.status()["lab"] != status["lab"]
    finally:
        lab.teardown()
        other.teardown()


def test_link_rate_is_respected_in_the_direction_the_model_says(shaped: tuple[NetworkLab, Probe]) -> None:
    lab, probe = shaped
    # Execute: gateway's up link (20 Mbit/s) and s3's down link (12 Mbit/s) bind.
    from_gateway = probe.measure("redis", [("gateway", 5_000_000, None)])
    into_s3 = probe.measure("s3", [("functions", 3_000_000, None)])

    # Assert
    assert _near(from_gateway[lab.address("gateway")], 20 * MBIT), from_gateway
    assert _near(into_s3[lab.address("functions")], 12 * MBIT), into_s3


def test_parties_behind_one_host_get_their_own_rates(shaped: tuple[NetworkLab, Probe]) -> None:
    lab, probe = shaped
    slow, fast = lab.address("party-0"), lab.address("party-1")

    # Execute: both at once, from their own addresses on the edge host
    rates = probe.measure("functions", [("party-0", 2_000_000, slow), ("party-1", 4_000_000, fast)])

    # Assert
    assert _near(rates[slow], 8 * MBIT) and _near(rates[fast], 16 * MBIT), rates
    assert lab.host_addresses()["edge"][1:] == [slow, fast]


def test_degraded_pair_gets_its_rate_and_recovers(shaped: tuple[NetworkLab, Probe]) -> None:
    lab, probe = shaped
    # Execute
    lab.set_rate("functions", "redis", 10 * MBIT)
    degraded = probe.measure("redis", [("functions", 2_500_000, None)])
    status = lab.status()
    lab.set_rate("functions", "redis", None)
    restored = probe.measure("redis", [("functions", 5_000_000, None)])

    # Assert
    assert _near(degraded[lab.address("functions")], 10 * MBIT), degraded
    assert status["degraded"] == [{"pair": ["functions", "redis"], "rate": "10mbit", "rate_bps": 10 * MBIT}]
    assert restored[lab.address("functions")] > 30 * MBIT, restored
    assert lab.status()["degraded"] == []


def test_partition_drops_both_ways_and_heal_restores(shaped: tuple[NetworkLab, Probe]) -> None:
    lab, probe = shaped
    redis_addr, gateway_addr = lab.address("redis"), lab.address("gateway")
    probe.start("redis", "listen", redis_addr, PORT + 1)
    assert probe.run("gateway", "connect", redis_addr, PORT + 1, 2) == "ok"

    # Execute
    lab.partition("gateway", "redis")
    started = time.monotonic()
    during = probe.run("gateway", "connect", redis_addr, PORT + 1, 0.5)
    elapsed = time.monotonic() - started
    bystander = probe.run("functions", "connect", redis_addr, PORT + 1, 2)
    udp: dict[str, str] = {}
    for receiver, sender, addr in (("redis", "gateway", redis_addr), ("gateway", "redis", gateway_addr)):
        proc = probe.start(receiver, "udp-recv", addr, PORT + 2, 0.6)
        probe.run(sender, "udp-send", addr, PORT + 2, 20)
        udp[f"{sender}->{receiver}"] = proc.communicate(timeout=10)[0].strip()
    status = lab.status()
    assert lab.heal("gateway", "redis")
    after = probe.run("gateway", "connect", redis_addr, PORT + 1, 2)

    # Assert
    assert during == "TimeoutError" and elapsed < 3
    assert bystander == "ok"
    assert udp == {"gateway->redis": "0", "redis->gateway": "0"}
    assert status["partitions"] == [["gateway", "redis"]]
    assert after == "ok" and lab.status()["partitions"] == []
    assert not lab.heal("gateway", "redis")


def test_partition_of_one_party_spares_its_neighbour(shaped: tuple[NetworkLab, Probe]) -> None:
    lab, probe = shaped
    gateway_addr = lab.address("gateway")
    probe.start("gateway", "listen", gateway_addr, PORT + 3)
    connect = f"import socket,sys; s=socket.socket(); s.settimeout(0.5); s.bind((sys.argv[1], 0)); " \
              f"s.connect(('{gateway_addr}', {PORT + 3})); print('ok')"

    def from_party(party: str) -> int:
        argv = lab.exec_argv(party, [sys.executable, "-c", connect, lab.address(party)])
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).returncode

    # Execute
    lab.partition("party-0", "gateway")
    try:
        cut, spared = from_party("party-0"), from_party("party-1")
    finally:
        lab.heal("party-0", "gateway")

    # Assert
    assert cut != 0 and spared == 0
    assert from_party("party-0") == 0


def test_teardown_leaves_nothing_even_after_a_crash(tmp_path: Path) -> None:
    # Prepare: a process creates a lab and dies without tearing down
    crash = textwrap.dedent(f'''
        import os
        from fedfaas.devstack.network import NetworkLab, load_topology
        lab = NetworkLab({str(tmp_path)!r})
        lab.create(load_topology("cloud"))
        lab.partition("gateway", "s3")
        os._exit(3)
    ''')
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    prefix = json.loads((tmp_path / "network-lab.json").read_text())["prefix"]
    assert len(_lab_names(prefix)) == 1 + 2 * len(load_topology("cloud").hosts) and _qdiscs_of(prefix)

    # Execute
    lab = NetworkLab(tmp_path)
    removed = lab.teardown()

    # Assert
    assert removed and _lab_names(prefix) == [] and _qdiscs_of(prefix) == []
    assert lab.status()["active"] is False
    assert lab.teardown() == []


def test_create_refuses_a_second_lab_in_the_same_state_dir(tmp_path: Path) -> None:
    lab = NetworkLab(tmp_path)
    topo = load_topology("datacenter").with_parties(0)
    lab.create(topo)
    try:
        with pytest.raises(Exception, match="still up"):
            NetworkLab(tmp_path).create(topo)
    finally:
        lab.teardown()


def test_without_privileges_one_clear_line() -> None:
    # Execute: the same check as user nobody
    code = "from fedfaas.devstack.network import check_privileges; check_privileges()"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parents[2])
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""

    # Assert
    assert done.returncode != 0
    assert last.startswith("fedfaas.devstack.network.lab.NetworkUnavailable: --topology cannot create "
                           "network namespaces"), done.stderr
    assert "run as root" in last

