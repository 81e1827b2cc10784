"""Fault injection and clean shutdown: killed replicas, dying routers, no process left behind."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from fedfaas.devstack.faas import FaasClient, RouterOptions, start_router, stop_router

STACK = """
version: 1.0
provider:
  name: openfaas
functions:
  warm:
    lang: python3-http
    handler: ./warm
    image: warm:latest
    labels:
      com.openfaas.scale.min: "2"
"""

HANDLER = """
def handle(event, context):
    return {"statusCode": 200, "body": "ok"}
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not _gone(p)]
    return alive


def _small_stack(root: Path) -> Path:
    (root / "warm").mkdir(parents=True)
    (root / "warm" / "handler.py").write_text(HANDLER)
    stack = root / "stack.yml"
    stack.write_text(STACK)
    return stack


def _instance_pids(state: Path) -> list[int]:
    return [int(p.read_text()) for p in (state / "instances").glob("*.pid")]


def test_killed_replica_is_replaced_by_a_fresh_one(faas: FaasClient) -> None:
    # Prepare
    faas.invoke("victim")
    assert int(faas.invoke("victim").text) >= 2
    killed_before = faas.accounting()["functions"]["victim"]["instances_killed"]
    # Execute
    killed = faas.kill("victim")
    resp = faas.invoke("victim")
    # Assert
    assert _gone(killed["pid"])
    assert resp.status_code == 200
    assert resp.text == "1"  # the new replica starts empty
    assert faas.accounting()["functions"]["victim"]["instances_killed"] == killed_before + 1


def test_call_in_flight_on_a_killed_replica_gets_a_json_502(faas: FaasClient) -> None:
    # Prepare
    faas.wait_replicas("victim", 1)
    # Execute
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(faas.invoke, "victim", path="/sleep", params={"s": "10"}, method="GET")
        deadline = time.monotonic() + 20
        while faas.accounting()["functions"]["victim"]["in_flight"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        faas.kill("victim")
        resp = pending.result(timeout=30)
    # Assert
    assert resp.status_code == 502
    assert resp.json()["error"] == "function_unreachable"
    assert faas.invoke("victim").status_code == 200


def test_kill_of_an_unknown_replica_is_a_404(faas: FaasClient) -> None:
    # Execute
    resp = faas._request("POST", "/system/kill/victim", json={"instance": 10_000}, check=False)
    # Assert
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


def test_sigterm_stops_the_router_and_every_replica(tmp_path: Path) -> None:
    # Prepare
    state = tmp_path / "state"
    router = start_router(_small_stack(tmp_path), 0, state, options=RouterOptions(grace_s=2.0))
    with router.client() as client:
        client.wait_replicas("warm", 2)
    pids = [router.pid, *_instance_pids(state)]
    # Execute
    code = router.stop()
    # Assert
    assert len(pids) == 3
    assert code == 0
    assert _wait_gone(pids) == []
    assert list((state / "instances").glob("*.pid")) == []
    assert not (state / "router.pid").exists()
    assert list((state / "apps").iterdir()) == []


def test_replicas_die_with_a_killed_router_and_down_cleans_up(tmp_path: Path) -> None:
    # Prepare
    state = tmp_path / "state"
    router = start_router(_small_stack(tmp_path), 0, state)
    with router.client() as client:
        client.wait_replicas("warm", 2)
    replicas = _instance_pids(state)
    # Execute
    os.kill(router.pid, signal.SIGKILL)
    router.popen.wait(10)
    left = _wait_gone(replicas)
    was_running = stop_router(state)
    # Assert
    assert len(replicas) == 2
    assert left == []
    assert was_running is False
    assert list((state / "instances").glob("*.pid")) == []
    assert not (state / "apps").exists()
