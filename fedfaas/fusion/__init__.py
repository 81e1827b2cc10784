"""Fusion algorithms for federated learning (JIT paper, Sections 2.1 and 5.4).

Pure functions over ordered ``dict[str, np.ndarray]`` updates (as
:func:`fedfaas.codec.decode` yields them), algorithm classes that orchestrate
them, streaming :class:`PartialAggregate` s that checkpoint and merge, and
coordinate-wise model sharding.  Start with :func:`get_algorithm`.
"""

from fedfaas.fusion.algorithm import Algorithm, FusionResult, LinearAlgorithm, ServerState
from fedfaas.fusion.bulyan import Bulyan, bulyan, bulyan_combine, bulyan_select
from fedfaas.fusion.checks import ModelSpec, TensorInfo, model_spec
from fedfaas.fusion.fedadagrad import FedAdagrad
from fedfaas.fusion.fedadam import FedAdam
from fedfaas.fusion.fedavg import FedAvg, fedavg
from fedfaas.fusion.fedavgm import FedAvgM
from fedfaas.fusion.fedopt import FedOpt
from fedfaas.fusion.fedprox import FedProx
from fedfaas.fusion.fedsgd import FedSGD, apply_gradient
from fedfaas.fusion.fedyogi import FedYogi
from fedfaas.fusion.krum import Krum, MultiKrum, krum, krum_select, multi_krum, squared_distances
from fedfaas.fusion.median import Median, median
from fedfaas.fusion.partial import PartialAggregate, merge_tree
from fedfaas.fusion.registry import ALGORITHMS, algorithm_params, get_algorithm
from fedfaas.fusion.shards import Piece, Shard, assemble_shards, shard_ranges, spec_of, take_shard
from fedfaas.fusion.timing import measure_t_pair
from fedfaas.fusion.trimmed_mean import TrimmedMean, trimmed_mean

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Bulyan",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedOpt",
    "FedProx",
    "FedSGD",
    "FedYogi",
    "FusionResult",
    "Krum",
    "LinearAlgorithm",
    "Median",
    "ModelSpec",
    "MultiKrum",
    "PartialAggregate",
    "Piece",
    "ServerState",
    "Shard",
    "TensorInfo",
    "TrimmedMean",
    "algorithm_params",
    "apply_gradient",
    "assemble_shards",
    "bulyan",
    "bulyan_combine",
    "bulyan_select",
    "fedavg",
    "get_algorithm",
    "krum",
    "krum_select",
    "measure_t_pair",
    "median",
    "merge_tree",
    "model_spec",
    "multi_krum",
    "shard_ranges",
    "spec_of",
    "squared_distances",
    "take_shard",
    "trimmed_mean",
]
