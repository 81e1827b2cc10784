"""Flower integration: record (and optionally aggregate) Flower runs in fedfaas.

- :class:`FedfaasStrategy` wraps any Flower Message-API strategy;
- :data:`fedfaas_upload_mod` is a client mod that uploads updates straight to fedfaas;
- :func:`run_inprocess` runs a Flower app on the Simulation Engine without ray.

Needs ``flwr`` (the ``bench`` extra pins 1.28.0).
"""

from fedfaas.flower.mod import fedfaas_upload_mod, make_upload_mod
from fedfaas.flower.records import (
    CONFIG_KEY,
    REF_KEY,
    arrayrecord_to_tensors,
    from_tensor_name,
    tensors_to_arrayrecord,
    to_tensor_name,
)
from fedfaas.flower.simulation import InProcessBackend, run_inprocess
from fedfaas.flower.strategy import FedfaasStrategy, fedfaas_algorithm

__all__ = [
    "CONFIG_KEY",
    "REF_KEY",
    "FedfaasStrategy",
    "InProcessBackend",
    "arrayrecord_to_tensors",
    "fedfaas_algorithm",
    "fedfaas_upload_mod",
    "from_tensor_name",
    "make_upload_mod",
    "run_inprocess",
    "tensors_to_arrayrecord",
    "to_tensor_name",
]
