"""The demo's federation: who takes part, with which data, how fast (JIT paper 6.1, FLStore 5.1).

Parties train the digits MLP on a Dirichlet label-skew split of scikit-learn's
digits set.  As in the JIT paper's evaluation there are *active* parties on
heterogeneous hardware (emulated by a per-party slowdown of a reference
device) and *intermittent* parties that come online at a random time within
``t_wait`` and sometimes skip a round; one *malicious* party sends a
sign-flipped, scaled update, which FLStore's malicious-filter workload has to
find.  Everything here is derived from one seed, so the JIT run and its
eager-serverless re-run see the same parties, data and participation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.models import dirichlet_split

ACTIVE = "active"
INTERMITTENT = "intermittent"
MALICIOUS = "malicious"
ROLES = (ACTIVE, INTERMITTENT, MALICIOUS)
MIN_PARTIES = 3
#: Time an intermittent party keeps free before ``t_wait`` for fetching, pushing and jitter.
ARRIVAL_MARGIN_S = 1.5


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the demo; the defaults are what ``make demo`` runs."""

    parties: int = 22
    rounds: int = 10
    #: Rounds of the eager-serverless re-run (None: as many as the JIT run, 0: no re-run).
    compare_rounds: int | None = None
    seed: int = 0
    model: str = "digits-mlp"
    dirichlet_alpha: float = 0.5
    min_examples: int = 20
    intermittent_fraction: float = 0.3
    skip_probability: float = 0.25
    local_epochs: int = 2
    batch_size: int = 8
    lr: float = 0.05
    #: Training speed of the fastest emulated device, in examples per second.
    examples_per_s: float = 150.0
    max_slowdown: float = 2.5
    #: Link speed a party declares when it registers (measured values replace it after a push).
    nominal_link_bps: float = 50e6
    attack_scale: float = 10.0
    test_fraction: float = 0.3
    validation_size: int = 180
    quorum_fraction: float = 0.5
    #: Scale-to-zero idle time of the functions, so that idle serverless capacity is visible.
    idle_s: float = 2.0
    t_wait_min_s: float = 6.0

    def __post_init__(self) -> None:
        problems = []
        if self.parties < MIN_PARTIES:
            problems.append(f"parties must be >= {MIN_PARTIES} (one malicious, two honest), "
                            f"got {self.parties}")
        if self.rounds < 1:
            problems.append(f"rounds must be >= 1, got {self.rounds}")
        if self.compare_rounds is not None and self.compare_rounds < 0:
            problems.append(f"compare_rounds must be >= 0, got {self.compare_rounds}")
        if not 0 <= self.intermittent_fraction < 1 or not 0 <= self.skip_probability < 1:
            problems.append("intermittent_fraction and skip_probability must lie in [0, 1)")
        if self.local_epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            problems.append("local_epochs, batch_size and lr must be positive")
        if (self.examples_per_s <= 0 or self.max_slowdown < 1 or self.idle_s <= 0
                or self.nominal_link_bps <= 0):
            problems.append("examples_per_s, nominal_link_bps and idle_s must be > 0, "
                            "max_slowdown >= 1")
        if not 0 < self.quorum_fraction <= 1:
            problems.append("quorum_fraction must lie in (0, 1]")
        if problems:
            raise BadRequest("invalid demo configuration: " + "; ".join(problems))

    @property
    def eager_rounds(self) -> int:
        """Rounds of the eager-serverless re-run."""
        return self.rounds if self.compare_rounds is None else self.compare_rounds


@dataclass(frozen=True)
class PartyPlan:
    """One party: its role, its share of the training set and its emulated device."""

    party_id: str
    role: str
    indices: tuple[int, ...]
    slowdown: float
    seed: int
    skip_probability: float = 0.0

    @property
    def num_examples(self) -> int:
        """Size of the party's local dataset."""
        return len(self.indices)

    def train_time_s(self, epochs: int, examples_per_s: float) -> float:
        """Emulated wall-clock time of ``epochs`` local epochs on this party's device."""
        return epochs * self.num_examples * self.slowdown / examples_per_s

    def to_json(self) -> str:
        """The plan as JSON (it crosses the process boundary as text)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PartyPlan:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["indices"] = tuple(int(i) for i in data["indices"])
        return cls(**data)


@dataclass(frozen=True)
class Federation:
    """The planned federation and the job parameters sized for it."""

    config: DemoConfig
    parties: tuple[PartyPlan, ...]
    t_wait_s: float
    quorum: int

    def with_role(self, role: str) -> list[PartyPlan]:
        """Parties of one role."""
        return [p for p in self.parties if p.role == role]

    @property
    def malicious_id(self) -> str:
        """Id of the malicious party."""
        return self.with_role(MALICIOUS)[0].party_id


def arrival_window_s(t_wait_s: float, train_s: float) -> float:
    """Latest offline delay of an intermittent party that still lets it arrive by ``t_wait``."""
    return max(0.0, t_wait_s - ARRIVAL_MARGIN_S - train_s)


def plan_federation(config: DemoConfig, labels: np.ndarray) -> Federation:
    """Split ``labels``' items across parties, draw roles and devices, size ``t_wait`` and quorum.

    The malicious party gets the smallest share (an attacker joins with little
    data; FedAvg weighs it by its example count).  ``t_wait`` leaves the
    slowest always-on party 30 % headroom plus two seconds for transfers.
    """
    n = config.parties
    if len(labels) < n * config.min_examples:
        raise BadRequest(f"{len(labels)} training items cannot give {n} parties "
                         f"{config.min_examples} examples each")
    splits = dirichlet_split(labels, n, config.dirichlet_alpha, seed=config.seed,
                             min_size=config.min_examples)
    rng = np.random.default_rng(config.seed)
    malicious = int(np.argmin([len(s) for s in splits]))
    others = [i for i in range(n) if i != malicious]
    n_intermittent = min(round(config.intermittent_fraction * n), len(others) - 1)
    intermittent = set(rng.choice(others, size=n_intermittent, replace=False).tolist())
    plans = []
    for i, split in enumerate(splits):
        role = MALICIOUS if i == malicious else INTERMITTENT if i in intermittent else ACTIVE
        slowdown = 1.0 if role == MALICIOUS else float(rng.uniform(1.0, config.max_slowdown))
        plans.append(PartyPlan(
            party_id=f"party-{i:02d}", role=role, indices=tuple(int(j) for j in split),
            slowdown=round(slowdown, 3), seed=config.seed * 1000 + i,
            skip_probability=config.skip_probability if role == INTERMITTENT else 0.0))
    always_on = [p for p in plans if p.role != INTERMITTENT]
    slowest = max(p.train_time_s(config.local_epochs, config.examples_per_s) for p in always_on)
    t_wait = max(config.t_wait_min_s, math.ceil(1.3 * slowest + 2.0))
    quorum = max(2, math.ceil(config.quorum_fraction * n))
    return Federation(config=config, parties=tuple(plans), t_wait_s=float(t_wait), quorum=quorum)
