"""The workload registry: Table 1 policies, generic dispatch, 4xx errors, plain-JSON results."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fedfaas.codec import decode, encode
from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import (
    TENSORS_KEY,
    WORKLOADS,
    ClientUpdate,
    WorkloadInputs,
    get_workload,
    run_workload,
)

TABLE_1 = {
    "malicious-filter": "P2", "cosine-similarity": "P2", "clustering": "P2",
    "scheduling": "P2", "contribution": "P2", "reputation": "P4", "debugging": "P2",
    "inference": "P1", "personalisation": "P2", "provenance": "P3",
}


def test_ten_workloads_with_their_caching_policies():
    assert {name: spec.policy for name, spec in WORKLOADS.items()} == TABLE_1
    listing = json.dumps([spec.describe() for spec in WORKLOADS.values()])
    assert "malicious-filter" in listing


def test_unknown_workload_is_not_found():
    with pytest.raises(NotFound, match=r"unknown workload 'gossip'.*malicious-filter"):
        run_workload("gossip", WorkloadInputs(), {})


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_unknown_parameter_is_named(name):
    with pytest.raises(BadRequest, match=f"{name}: unknown parameter.*bogus"):
        run_workload(name, WorkloadInputs(), {"bogus": 1})


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_missing_data_is_not_found(name):
    with pytest.raises(NotFound, match=name):
        run_workload(name, WorkloadInputs(round=4), {})


@pytest.mark.parametrize("params", [[], "x", {"seed": True}, {"seed": -1}, {"seed": 1.5}])
def test_malformed_parameters_are_bad_requests(params):
    with pytest.raises(BadRequest, match="clustering: "):
        get_workload("clustering").validate(params)


def test_data_needs_follow_the_mode():
    assert get_workload("debugging").data_needs({"mode": "diff"}) == {"global_model"}
    assert get_workload("provenance").data_needs({"mode": "hyperparameters"}) == {"metadata"}
    assert get_workload("contribution").data_needs() == {"round_updates", "validation_set"}
    assert get_workload("inference").data_needs({"source": "client"}) == {"client_across_rounds"}


def _plain(value: Any) -> bool:
    """True when ``value`` holds only JSON types (no numpy scalars or arrays)."""
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_every_result_is_plain_json(honest_round, group_round, base_state, digits):
    # Prepare: one realistic request per workload
    val = {"x_val": digits.x_test[:50], "y_val": digits.y_test[:50]}
    records = [{"round": 3, "hyperparameters": {"lr": 0.05},
                "clients": {u.client: {"train_time_s": 2.0, "on_time": True, "flagged": False,
                                       "contribution": 0.1} for u in honest_round}}]
    trace = [ClientUpdate("c0", honest_round[0].tensors, {}, 3)]
    job = {"model": "digits-mlp", "hyperparameters": {"lr": 0.1}}
    common = {"job": job, "round": 3, "base_model": base_state, "metadata": records,
              "global_models": {2: base_state, 3: honest_round[1].tensors}}
    requests: dict[str, tuple[WorkloadInputs, dict[str, Any]]] = {
        "malicious-filter": (WorkloadInputs(updates=honest_round, **common), {}),
        "cosine-similarity": (WorkloadInputs(updates=honest_round, **common), {}),
        "clustering": (WorkloadInputs(updates=group_round, **common), {}),
        "scheduling": (WorkloadInputs(updates=group_round, **common), {"mode": "clusters"}),
        "contribution": (WorkloadInputs(updates=honest_round[:3], arrays=val, **common),
                         {"max_permutations": 6}),
        "reputation": (WorkloadInputs(**common), {}),
        "debugging": (WorkloadInputs(updates=honest_round, **common), {"num_inputs": 4}),
        "inference": (WorkloadInputs(arrays={"x": digits.x_test[:4]}, **common), {}),
        "personalisation": (WorkloadInputs(updates=group_round, client="g2c1", **common), {}),
        "provenance": (WorkloadInputs(updates=trace, client="c0", **common), {}),
    }
    assert set(requests) == set(WORKLOADS)

    for name, (inputs, params) in requests.items():
        # Execute
        result = run_workload(name, inputs, params)

        # Assert
        tensors = result.pop(TENSORS_KEY, None)
        assert (tensors is not None) == WORKLOADS[name].returns_tensors, name
        assert _plain(result), name
        json.dumps(result, allow_nan=False)
        if tensors is not None:
            assert all(isinstance(t, np.ndarray) for t in tensors.values())


def test_client_update_from_a_decoded_body():
    # Prepare
    body = encode({"w": np.arange(3, dtype=np.float32)}, {"party": "ann", "round": 4,
                                                          "num_examples": 12})

    # Execute
    update = ClientUpdate.from_model_update(decode(body))

    # Assert
    assert (update.client, update.round, update.num_examples) == ("ann", 4, 12.0)
    with pytest.raises(BadRequest, match="no 'party'"):
        ClientUpdate.from_model_update(decode(encode({"w": np.zeros(1)}, {})))
    with pytest.raises(BadRequest, match="non-integer round"):
        ClientUpdate.from_model_update(decode(encode({"w": np.zeros(1)}, {"party": "a",
                                                                          "round": "4"})))


def test_updates_from_another_round_are_rejected(honest_round):
    with pytest.raises(BadRequest, match="is from round 3, the request is about round 4"):
        run_workload("cosine-similarity", WorkloadInputs(round=4, updates=honest_round), {})
