"""The gateway's /system API, basic auth, metrics and accounting."""

from __future__ import annotations

import pytest
import requests

from fedfaas.devstack.faas import FaasClient
from fedfaas.errors import BadRequest, Unauthorized


def test_system_paths_need_basic_auth_but_functions_do_not(faas: FaasClient) -> None:
    # Prepare
    url = faas.base_url
    # Execute
    anonymous = requests.get(f"{url}/system/functions", timeout=5)
    wrong = requests.get(f"{url}/system/functions", auth=("admin", "nope"), timeout=5)
    call = requests.get(f"{url}/function/echo", timeout=5)
    health = requests.get(f"{url}/healthz", timeout=5)
    # Assert
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert call.status_code == 200
    assert health.status_code == 200


def test_client_without_credentials_gets_unauthorized(faas: FaasClient) -> None:
    # Prepare
    anonymous = FaasClient(faas.base_url, timeout=5)
    # Execute / Assert
    with pytest.raises(Unauthorized):
        anonymous.list_functions()


def test_list_functions_has_the_openfaas_shape(faas: FaasClient) -> None:
    # Execute
    functions = {f["name"]: f for f in faas.list_functions()}
    # Assert
    assert set(functions) == {"echo", "counter", "victim", "sleeper", "napper", "single", "scaler"}
    counter = functions["counter"]
    assert counter["image"] == "counter:latest"
    assert counter["labels"]["com.openfaas.scale.min"] == "1"
    assert counter["replicas"] >= 1
    assert counter["availableReplicas"] >= 1
    assert functions["echo"]["image"] == "ttl.sh/echo:latest"
    assert functions["echo"]["envVars"]["GREETING"] == "hello"
    assert functions["echo"]["secrets"] == ["api-key"]


def test_invocation_count_grows_with_calls(faas: FaasClient) -> None:
    # Prepare
    before = faas.function("counter")["invocationCount"]
    # Execute
    faas.invoke("counter")
    faas.invoke("counter")
    # Assert
    assert faas.function("counter")["invocationCount"] == before + 2


def test_metrics_use_the_gateway_names(faas: FaasClient) -> None:
    # Prepare
    faas.invoke("counter")
    # Execute
    text = faas.metrics()
    # Assert
    assert 'gateway_function_invocation_total{code="200",function_name="counter.openfaas-fn"}' in text
    assert 'gateway_functions_seconds_bucket{function_name="counter.openfaas-fn"' in text
    assert 'gateway_service_count{function_name="counter.openfaas-fn"} 1.0' in text
    assert 'fedfaas_function_container_seconds{function_name="counter.openfaas-fn"}' in text


def test_scale_function_sets_the_replica_count(faas: FaasClient) -> None:
    # Execute
    faas.scale("scaler", 3)
    up = faas.wait_replicas("scaler", 3)
    faas.scale("scaler", 1)
    down = faas.wait_replicas("scaler", 1)
    # Assert
    assert up["replicas"] == 3
    assert down["replicas"] == 1


def test_scale_function_refuses_more_than_the_maximum(faas: FaasClient) -> None:
    # Execute / Assert
    with pytest.raises(BadRequest, match="between 0 and 3"):
        faas.scale("scaler", 4)


def test_scale_function_refuses_a_mismatched_service_name(faas: FaasClient) -> None:
    # Execute
    resp = requests.post(
        f"{faas.base_url}/system/scale-function/scaler",
        json={"serviceName": "echo", "replicas": 1},
        auth=("admin", "s3cret-pass"),
        timeout=5,
    )
    # Assert
    assert resp.status_code == 400
    assert "serviceName" in resp.json()["message"]


def test_accounting_reset_starts_a_new_period(faas: FaasClient) -> None:
    # Prepare
    faas.invoke("counter")
    # Execute
    faas.reset_accounting()
    after_reset = faas.accounting()["functions"]["counter"]
    faas.invoke("counter")
    after_call = faas.accounting()["functions"]["counter"]
    # Assert
    assert after_reset["invocations"] == 0
    assert after_reset["cold_starts"] == 0
    assert after_reset["live_instances"] == 1
    assert after_call["invocations"] == 1
    assert after_call["container_seconds"] > after_reset["container_seconds"]
