"""The local stack on the ``datacenter`` topology: each component on its own host, links cut and healed.

Real Redis, S3, functions and gateway, each in its own network namespace
behind shaped links; the test process talks to them over the lab's bridge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import PROJECT_ROOT, LocalStack, StackOptions
from fedfaas.devstack.network import NetworkUnavailable, check_privileges
from fedfaas.store import ObjectStore, digest
from tests.reliability.faults import (
    Ledger,
    admin_token,
    call,
    decode_model,
    make_job,
    upload,
    wait_round,
)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def dc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack on the datacenter topology (skipped where namespaces cannot be made)."""
    try:
        check_privileges()
    except NetworkUnavailable as exc:
        pytest.skip(str(exc))
    stack = LocalStack(tmp_path_factory.mktemp("datacenter"))
    stack.up(StackOptions(topology="datacenter", extra_env={
        "FEDFAAS_DRIVER_DELTA_S": "0.2", "FEDFAAS_S3_TIMEOUT_S": "2"}))
    try:
        yield stack
    finally:
        stack.down()


def _netns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_each_component_runs_on_its_own_host_behind_the_topologys_links(dc_stack: LocalStack) -> None:
    # Execute
    status = dc_stack.status()
    # Assert: four hosts, four namespaces, none of them this process's; clients use lab addresses.
    hosts = {name: dc_stack.read_state()["hosts"][name] for name in ("redis", "s3", "router", "gateway")}
    assert len({h["address"] for h in hosts.values()}) == 4
    assert all(h["address"].startswith("10.213.") for h in hosts.values())
    namespaces = {_netns_of(int(status["components"][name]["pid"])) for name in hosts}
    assert len(namespaces) == 4 and _netns_of(os.getpid()) not in namespaces
    assert status["network"]["hosts"]["gateway"]["link"]["up"]
    assert hosts["gateway"]["address"] in dc_stack.env()["FEDFAAS_GATEWAY_URL"]
    assert call(requests.Session(), "GET", dc_stack.env()["FEDFAAS_GATEWAY_URL"] + "/readyz", "",
                timeout_s=10).status_code == 200


def test_s3_cut_off_from_the_functions_holds_the_round_until_healed_and_the_model_is_right(
        dc_stack: LocalStack) -> None:
    # Prepare: a lazy round of two parties; S3 is cut off from the functions' host before
    # the last update, so the aggregation it triggers cannot read anything.
    session = requests.Session()
    base, admin = dc_stack.env()["FEDFAAS_GATEWAY_URL"], admin_token(dc_stack)
    jid, tokens = make_job(session, base, admin, 2, {"name": "lazy"})
    bodies = {f"p{i}": codec.encode({"w": np.full(16, float(i + 1), np.float32)}, {"num_examples": 1 + i})
              for i in range(2)}
    ledger = Ledger()
    url = f"/v1/jobs/{jid}/rounds/1/updates"
    upload(session, base, url, tokens[0], bodies["p0"], "p0", ledger)
    dc_stack.partition("router", "s3")
    try:
        # Execute
        upload(session, base, url, tokens[1], bodies["p1"], "p1", ledger)
        time.sleep(6)
        during = call(session, "GET", f"{base}/v1/jobs/{jid}/rounds/1", admin).json()
    finally:
        dc_stack.heal("router", "s3")
    status = wait_round(session, base, jid, 1, admin, timeout_s=120)
    # Assert: acknowledged while cut off (the gateway reaches S3), held, then the right model.
    assert sorted(ledger.acked) == ["p0", "p1"]
    assert during["state"] in ("open", "aggregating"), during
    assert status["state"] == "closed" and status["parties_included"] == ["p0", "p1"], status
    model = decode_model(call(session, "GET", f"{base}/v1/jobs/{jid}/model", tokens[0]).content)
    np.testing.assert_allclose(model["w"], np.full(16, (1 * 1.0 + 2 * 2.0) / 3, np.float32), rtol=1e-6)


def _party_upload(stack: LocalStack, party: str, jid: str, token: str, body: Path,
                  timeout_s: float) -> subprocess.Popen[str]:
    """An upload from ``party``'s own address on its edge host (its shaped link), in the background."""
    argv = [sys.executable, "-m", "bench.tcomm_party", "--upload-only", "--timeout", str(timeout_s),
            "--source", stack.network.address(party), "--base", stack.env()["FEDFAAS_GATEWAY_URL"],
            "--job", jid, "--token", token, "--body", str(body)]
    return subprocess.Popen(stack.network.exec_argv(party, argv), cwd=PROJECT_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_partys_link_cut_mid_upload_leaves_no_object_and_the_retry_succeeds(
        dc_stack: LocalStack, tmp_path: Path) -> None:
    # Prepare: one party on the edge host, its link slowed so a 3 MB upload takes ~3 s.
    session = requests.Session()
    base, admin = dc_stack.env()["FEDFAAS_GATEWAY_URL"], admin_token(dc_stack)
    jid, tokens = make_job(session, base, admin, 1, {"name": "lazy"})
    body = tmp_path / "update.ffu"
    body.write_bytes(codec.encode({"w": np.ones(3 * 2**18, np.float32)}, {"num_examples": 1}))
    party = dc_stack.network.topology.parties()[0].name
    store = ObjectStore(dc_stack.settings())
    prefix = keys.s3_party_updates("default", jid, 1, "p0")
    dc_stack.set_link_rate(party, "gateway", 8_000_000)
    try:
        # Execute: cut the link a second into the upload, then heal and send again.
        cut = _party_upload(dc_stack, party, jid, tokens[0], body, timeout_s=4)
        time.sleep(1.0)
        dc_stack.partition(party, "gateway")
        cut_out, _ = cut.communicate(timeout=60)
        stored_after_cut = list(store.list(prefix))
        arrived_after_cut = call(session, "GET", f"{base}/v1/jobs/{jid}/rounds/1", admin).json()["arrived"]
        dc_stack.heal(party, "gateway")
        retry = _party_upload(dc_stack, party, jid, tokens[0], body, timeout_s=60)
        _, retry_err = retry.communicate(timeout=120)
    finally:
        dc_stack.heal(party, "gateway")
        dc_stack.set_link_rate(party, "gateway", None)
    # Assert: the cut upload failed and left nothing; the retry stored exactly the body.
    assert cut.returncode != 0, cut_out
    assert stored_after_cut == [] and arrived_after_cut == 0
    assert retry.returncode == 0, retry_err[-500:]
    assert list(store.list(prefix)) == [keys.s3_update("default", jid, 1, "p0", digest(body.read_bytes()))]


def test_down_removes_every_namespace_link_and_qdisc(dc_stack: LocalStack) -> None:
    # Prepare: the lab's name prefix, which every namespace and interface it made carries.
    prefix = dc_stack.status()["network"]["lab"]
    # Execute
    dc_stack.down()
    # Assert: no namespace or interface of the lab is left (qdiscs live on them).
    listed = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, timeout=10)
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, timeout=10)
    namespaces = {item["name"] for item in json.loads(listed.stdout or "[]")}
    interfaces = {item["ifname"] for item in json.loads(links.stdout or "[]")}
    assert prefix
    assert not [n for n in namespaces if n.startswith(prefix)]
    assert not [n for n in interfaces if n.startswith(prefix)]
    assert dc_stack.status() == {"running": False, "data_dir": str(dc_stack.data_dir)}
