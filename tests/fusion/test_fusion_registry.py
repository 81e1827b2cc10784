"""get_algorithm: names, validated parameters, round trips of params()."""

from __future__ import annotations

import pytest

from fedfaas.errors import BadRequest
from fedfaas.fusion import ALGORITHMS, algorithm_params, get_algorithm

NAMES = ["fedavg", "fedprox", "fedsgd", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "median",
         "trimmed-mean", "krum", "multi-krum", "bulyan"]


def test_every_documented_name_is_registered() -> None:
    # Execute / Assert
    assert sorted(ALGORITHMS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip_through_the_registry(name: str) -> None:
    # Prepare
    algorithm = get_algorithm(name)
    # Execute
    again = get_algorithm(name, **algorithm.params())
    # Assert
    assert type(again) is type(algorithm) and again.params() == algorithm.params()
    assert set(algorithm.params()) == set(algorithm_params(name))


def test_streaming_and_global_model_flags() -> None:
    # Execute
    streaming = {n for n in NAMES if get_algorithm(n).streaming}
    needs_global = {n for n in NAMES if get_algorithm(n).needs_global_model}
    # Assert
    assert streaming == {"fedavg", "fedprox", "fedsgd", "fedavgm", "fedadam", "fedyogi",
                         "fedadagrad"}
    assert needs_global == {"fedsgd", "fedavgm", "fedadam", "fedyogi", "fedadagrad"}


def test_unknown_strategy_is_a_bad_request_listing_the_choices() -> None:
    # Execute / Assert
    with pytest.raises(BadRequest, match=r"unknown fusion algorithm 'fedmagic'.*bulyan"):
        get_algorithm("fedmagic")


def test_unknown_parameter_is_a_bad_request_listing_the_accepted_ones() -> None:
    # Execute / Assert
    with pytest.raises(BadRequest, match="no parameter 'lr' \\(accepted: mu\\)"):
        get_algorithm("fedprox", lr=0.1)
    with pytest.raises(BadRequest, match="no parameter 'mu' \\(accepted: none\\)"):
        get_algorithm("fedavg", mu=0.1)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("fedprox", {"mu": -0.1}, "'mu' must be >= 0"),
    ("fedprox", {"mu": "0.1"}, "'mu' must be a number"),
    ("fedsgd", {"server_lr": 0}, "'server_lr' must be > 0"),
    ("fedavgm", {"momentum": 1.0}, "'momentum' must be < 1"),
    ("fedadam", {"beta2": float("nan")}, "'beta2' must be finite"),
    ("fedyogi", {"tau": 0.0}, "'tau' must be > 0"),
    ("trimmed-mean", {"beta": 0.5}, "'beta' must be < 0.5"),
    ("krum", {"num_malicious": -1}, "'num_malicious' must be >= 0"),
    ("krum", {"num_malicious": 1.5}, "'num_malicious' must be an integer"),
    ("multi-krum", {"num_selected": 0}, "'num_selected' must be >= 1"),
    ("bulyan", {"num_malicious": True}, "'num_malicious' must be an integer"),
])
def test_bad_parameter_values_are_bad_requests(name: str, params: dict[str, object],
                                               message: str) -> None:
    # Execute / Assert
    with pytest.raises(BadRequest, match=message):
        get_algorithm(name, **params)
