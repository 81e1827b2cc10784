"""The paper's simulated workloads: models, party populations, arrivals (JIT paper 6.3).

Three models (float32 updates): EfficientNet-B7 (~66M parameters), VGG16
(~138M), InceptionV4 (~43M).  Three scenarios:

- ``active-homogeneous``: every party has 2 vCPUs and the same data share,
  and reports its epoch time truthfully;
- ``active-heterogeneous``: 1 or 2 vCPUs and 0.5-1.5x the data share at
  random (paper 6.3), bandwidth 0.5-2x; parties' true speed differs from
  what they report by a persistent factor (lognormal), and a fraction report
  no times at all, so the estimator must regress them (paper 4.2, 5.2);
- ``intermittent-heterogeneous``: the same parties, each sending its update
  at a uniformly random time within ``t_wait`` (paper 6.3).

Active parties' epoch times vary per round by a small lognormal jitter
(periodicity, paper 4.1).  Defaults, and why, are in :class:`WorkloadParams`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.jit.spec import PartyTiming

MODEL_PARAMS = {"efficientnet-b7": 66_000_000, "vgg16": 138_000_000, "inceptionv4": 43_000_000}
SCENARIOS = ("active-homogeneous", "active-heterogeneous", "intermittent-heterogeneous")
PAPER_BATCH_SIZES = {10: 2, 100: 10, 1000: 100, 10000: 100}


def model_bytes(name: str) -> int:
    """Update size of a paper model in bytes (float32)."""
    try:
        return MODEL_PARAMS[name] * 4
    except KeyError:
        raise BadRequest(f"unknown model {name!r}; one of {', '.join(MODEL_PARAMS)}") from None


def batch_size_for(n_parties: int) -> int:
    """Batched-serverless ``k``: the paper's (2, 10, 100, 100) for (10, 100, 1000, 10000) parties."""
    return PAPER_BATCH_SIZES.get(n_parties, max(2, min(100, n_parties // 10)))


@dataclass(frozen=True)
class WorkloadParams:
    """Knobs of the simulated parties.

    Parameters
    ----------
    base_epoch_s
        Epoch time of a 2-vCPU party with the base data share: 60 s, the
        order of the round length implied by the paper's always-on
        container-seconds (35-60 s per round per aggregator, Fig. 9).
    base_dataset
        Data items of the base share.
    base_bandwidth
        Party bandwidth each way, bytes/s (25 MB/s = 200 Mbit/s).
    t_wait
        Intermittent round window: 600 s, as implied by the paper's
        intermittent always-on figures (~660 container-s per round).
    round_jitter
        Lognormal sigma of an active party's per-round epoch time.
    report_bias
        Lognormal sigma of the persistent true/reported speed of a heterogeneous party.
    no_report_fraction
        Heterogeneous parties that report no times (estimated by regression).
    """

    base_epoch_s: float = 60.0
    base_dataset: int = 500
    base_bandwidth: float = 25e6
    t_wait: float = 600.0
    round_jitter: float = 0.03
    report_bias: float = 0.05
    no_report_fraction: float = 0.2


@dataclass(frozen=True)
class Population:
    """Simulated parties: what they report, and their true speeds."""

    scenario: str
    profiles: list[PartyTiming]
    t_epoch_true: np.ndarray
    t_comm_true: np.ndarray
    t_wait: float | None


def make_population(scenario: str, n_parties: int, m_bytes: int, params: WorkloadParams,
                    rng: np.random.Generator) -> Population:
    """Parties of one scenario (see the module docstring)."""
    if scenario not in SCENARIOS:
        raise BadRequest(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    if n_parties < 1:
        raise BadRequest("n_parties must be >= 1")
    n = n_parties
    hetero = scenario != "active-homogeneous"
    if hetero:
        cores = rng.choice([1, 2], size=n)
        data = np.maximum(1, np.round(params.base_dataset * rng.uniform(0.5, 1.5, n))).astype(int)
        b_down = params.base_bandwidth * rng.uniform(0.5, 2.0, n)
        b_up = params.base_bandwidth * rng.uniform(0.5, 2.0, n)
        bias = rng.lognormal(0.0, params.report_bias, n)
        silent = rng.random(n) < params.no_report_fraction
        if silent.all():
            silent[0] = False  # the regression needs at least one reporting party
    else:
        cores = np.full(n, 2)
        data = np.full(n, params.base_dataset)
        b_down = b_up = np.full(n, params.base_bandwidth)
        bias = np.ones(n)
        silent = np.zeros(n, dtype=bool)
    reported = params.base_epoch_s * (2.0 / cores) * (data / params.base_dataset)
    mode = "intermittent" if scenario.startswith("intermittent") else "active"
    profiles = [
        PartyTiming(party_id=f"p{i}", mode=mode,  # type: ignore[arg-type]
                     t_epoch=None if silent[i] else float(reported[i]),
                     dataset_size=int(data[i]), batch_size=32, cores=float(cores[i]),
                     b_down=float(b_down[i]), b_up=float(b_up[i]))
        for i in range(n)
    ]
    return Population(scenario, profiles, reported * bias, m_bytes / b_down + m_bytes / b_up,
                      params.t_wait if mode == "intermittent" else None)


def round_offsets(pop: Population, params: WorkloadParams, rng: np.random.Generator) -> np.ndarray:
    """Each party's update arrival, seconds after round start, for one round."""
    n = len(pop.profiles)
    if pop.t_wait is not None:
        return rng.uniform(0.0, pop.t_wait, n)
    return pop.t_epoch_true * rng.lognormal(0.0, params.round_jitter, n) + pop.t_comm_true
