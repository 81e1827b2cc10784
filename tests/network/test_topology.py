"""The topology model: shipped files load, bad files fail naming the field, addresses are planned.

Pure Python: no namespaces, no privileges.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from fedfaas.devstack.network import (
    AddressPlan,
    NetworkLab,
    TopologyError,
    format_rate,
    load_topology,
    parse_rate,
    shipped_topologies,
)
from fedfaas.devstack.network.addresses import free_slot
from fedfaas.devstack.network.topology import topology_from_dict


def _minimal(**extra: Any) -> dict[str, Any]:
    link = {"up": "20mbit", "down": "40mbit", "source": "doc"}
    data: dict[str, Any] = {
        "name": "tiny",
        "hosts": {name: {"runs": [name], "link": dict(link)}
                  for name in ("gateway", "functions", "redis", "s3")},
        "sources": [{"id": "doc", "title": "A document", "figure": "20 and 40 Mbit/s"}],
    }
    data.update(extra)
    return data


def test_shipped_topologies_load_and_cite_every_figure() -> None:
    # Prepare / Execute
    names = shipped_topologies()
    topologies = {name: load_topology(name) for name in names}

    # Assert
    assert {"loopback", "datacenter", "cloud"} <= set(names)
    assert topologies["loopback"].is_loopback
    cloud = topologies["cloud"]
    assert cloud.host_for("s3") == "s3" and cloud.host_for("cache") == "cache"
    assert cloud.hosts["s3"].link.up_bps == 680_000_000
    ups = {p.link.up_bps for p in cloud.parties()}
    assert min(ups) == 5_000_000 and max(ups) == 100_000_000
    for topo in topologies.values():
        for host in topo.hosts.values():
            assert host.link.sources and set(host.link.sources) <= set(topo.sources)


def test_rates_parse_in_bits_per_second() -> None:
    assert parse_rate("20mbit", "f") == 20_000_000
    assert parse_rate("10 Gbit/s", "f") == 10_000_000_000
    assert parse_rate(64_000, "f") == 64_000
    assert format_rate(680_000_000) == "680mbit"
    with pytest.raises(TopologyError, match=r"hosts\.s3\.link\.up: expected a rate"):
        parse_rate("20MB/s", "hosts.s3.link.up")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["hosts"]["s3"]["link"].update(up="fast"), r"hosts\.s3\.link\.up: expected a rate"),
        (lambda d: d["hosts"]["redis"]["link"].pop("down"), r"hosts\.redis\.link\.down: required"),
        (lambda d: d["hosts"]["s3"]["link"].update(source="nowhere"), r"hosts\.s3\.link\.source: 'nowhere'"),
        (lambda d: d["hosts"]["s3"].update(runs=["gateway"]), r"hosts\.s3\.runs: 'gateway' already runs"),
        (lambda d: d["hosts"]["s3"].update(runs=[]), r"hosts: no host runs 's3'"),
        (lambda d: d["hosts"]["s3"].update(colour="red"), r"hosts\.s3\.colour: unknown field"),
        (lambda d: d.update(party_groups={"p": {"host": "mars", "parties": 2, "profiles": []}}),
         r"party_groups\.p\.host: 'mars'"),
        (lambda d: d.update(party_groups={"p": {"host": "s3", "parties": -1, "profiles": []}}),
         r"party_groups\.p\.parties: expected an integer"),
        (lambda d: d["sources"].append({"id": "idle", "title": "t", "figure": "f"}),
         r"sources: 'idle' backs no"),
    ],
)
def test_bad_topology_names_the_field(mutate: Any, message: str) -> None:
    # Prepare
    data = _minimal()
    mutate(data)

    # Execute / Assert
    with pytest.raises(TopologyError, match=message):
        topology_from_dict(data, origin="tiny.yaml")


def test_bad_yaml_file_is_one_clear_error(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nhosts: [unclosed\n")

    # Execute / Assert
    with pytest.raises(TopologyError, match=r"broken\.yaml: not valid YAML"):
        load_topology(path)
    with pytest.raises(TopologyError, match=r"no topology named 'moon'; shipped: .*cloud"):
        load_topology("moon")


def test_party_groups_get_profiles_by_weight_and_aligned_address_blocks() -> None:
    # Prepare
    data = _minimal(party_groups={"p": {"host": "functions", "parties": 4, "profiles": [
        {"name": "slow", "up": "5mbit", "down": "25mbit", "weight": 3, "source": "doc"},
        {"name": "fast", "up": "100mbit", "down": "300mbit", "source": "doc"},
    ]}})
    topo = topology_from_dict(data).with_parties(1000)

    # Execute
    plan = AddressPlan.plan(topo, IPv4Network("10.213.16.0/20"))

    # Assert
    profiles = [p.profile for p in topo.parties()[:4]]
    assert profiles == ["slow", "slow", "slow", "fast"]
    assert plan.bridge == IPv4Address("10.213.16.1")
    assert plan.hosts["gateway"] == IPv4Address("10.213.16.10")
    assert plan.blocks["p"] == IPv4Network("10.213.20.0/22")
    assert plan.parties["p-999"] == IPv4Address("10.213.20.0") + 999
    assert plan.host_networks(topo, "functions")[1] == plan.blocks["p"]


def test_slots_skip_running_labs() -> None:
    assert free_slot([IPv4Address("10.213.0.1"), IPv4Address("10.213.16.1")]) == IPv4Network("10.213.32.0/20")


def test_loopback_lab_needs_no_privileges(tmp_path: Path) -> None:
    # Prepare
    lab = NetworkLab(tmp_path)

    # Execute
    hosts = lab.create(load_topology("loopback"))

    # Assert
    assert hosts == {}
    assert lab.address("gateway") == "127.0.0.1"
    assert lab.exec_argv("gateway", ["redis-server"]) == ["redis-server"]
    assert lab.status()["topology"] == "loopback"
    assert lab.teardown() == []
    assert lab.status() == {"active": False, "state_dir": str(tmp_path)}
