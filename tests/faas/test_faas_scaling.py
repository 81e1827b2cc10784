"""Serverless behaviour: scale to zero, cold starts, container-seconds, autoscaling by max_inflight."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fedfaas.devstack.faas import FaasClient


def _functions(faas: FaasClient) -> dict[str, Any]:
    return faas.accounting()["functions"]


def _wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_idle_function_scales_to_zero_and_cold_starts_on_the_next_call(faas: FaasClient) -> None:
    # Prepare
    warm_pids = [i["pid"] for i in faas.instances()["counter"]]  # same idle time, but min 1
    cold_before = _functions(faas)["napper"]["cold_starts"]
    assert faas.invoke("napper").status_code == 200
    # Execute
    faas.wait_replicas("napper", 0)
    after_idle = faas.function("napper")
    resp = faas.invoke("napper")
    # Assert
    assert after_idle["replicas"] == 0
    assert resp.status_code == 200
    assert resp.text == "1"  # a fresh replica: module state starts again
    assert _functions(faas)["napper"]["cold_starts"] == cold_before + 2
    assert len(warm_pids) == 1
    assert [i["pid"] for i in faas.instances()["counter"]] == warm_pids


def test_container_seconds_grow_while_alive_and_stop_at_zero(faas: FaasClient) -> None:
    # Prepare
    faas.invoke("napper")
    first = _functions(faas)["napper"]["container_seconds"]
    # Execute
    _wait_until(lambda: _functions(faas)["napper"]["container_seconds"] > first)
    faas.wait_replicas("napper", 0)
    _wait_until(lambda: faas.instances()["napper"] == [])  # stopping replicas still cost
    at_zero = _functions(faas)["napper"]
    time.sleep(0.3)
    later = _functions(faas)["napper"]
    # Assert
    assert at_zero["container_seconds"] > first
    assert later["container_seconds"] == at_zero["container_seconds"]
    assert at_zero["instances_stopped"] >= 1


def test_max_inflight_one_scales_out_to_a_second_replica(faas: FaasClient, tmp_path: Path) -> None:
    # Prepare
    flag = tmp_path / "release"
    params = {"flag": str(flag)}
    started_before = _functions(faas)["single"]["instances_started"]
    # Execute
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(faas.invoke, "single", path="/wait", params=params, method="GET")
        _wait_until(lambda: _functions(faas)["single"]["in_flight"] == 1)
        second = pool.submit(faas.invoke, "single", path="/wait", params=params, method="GET")
        _wait_until(lambda: _functions(faas)["single"]["in_flight"] == 2)
        busy = _functions(faas)["single"]
        flag.touch()
        results = [first.result(timeout=30), second.result(timeout=30)]
    # Assert
    assert busy["instances_started"] == started_before + 2
    assert busy["ready_instances"] == 2
    assert [r.status_code for r in results] == [200, 200]
    assert results[0].json()["pid"] != results[1].json()["pid"]
