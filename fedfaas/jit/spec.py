"""The JIT estimator's inputs, derived from the job spec and party profiles (JIT paper 5.1, 5.2).

The job spec and the party profiles are :class:`fedfaas.spec.JobSpec` and
:class:`fedfaas.spec.PartyProfile`, the API models the gateway stores.  The
estimator works on a derived value of each, in SI units (bytes, seconds,
bytes/s) and with the platform's figures added: :class:`EstimatorJob`, built by
:meth:`EstimatorJob.from_api`, and :class:`PartyTiming`, built by
:meth:`PartyTiming.from_api`.  Every check raises
:class:`~fedfaas.errors.BadRequest` naming the field, before any maths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fedfaas.errors import BadRequest

if TYPE_CHECKING:
    from fedfaas import spec as api

STRATEGIES = ("jit", "eager-always-on", "eager-serverless", "batched-serverless", "lazy")
LATENCY_TARGETS = ("eager", "fastest")
"""Named aggregation latency targets of a JIT job; a number means seconds (see :class:`EstimatorJob`)."""
DEFAULT_B_DC = 1.25e9
"""Intra-datacenter bandwidth, bytes/s (10 Gbit/s)."""

Sync = Literal["epoch", "minibatch"]
Mode = Literal["active", "intermittent"]


def _positive(value: float | None, name: str, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise BadRequest(f"{name} is required")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{name} must be a finite number > 0, got {value!r}")


def _non_negative(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name} must be a finite number >= 0, got {value!r}")


def _count(value: int | None, name: str, *, minimum: int = 1) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise BadRequest(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class EstimatorJob:
    """An FL job as the deadline calculator sees it (paper 5.1 and 5.4), derived from a job spec.

    Parameters
    ----------
    job_id
        The job's id.
    model_bytes
        ``M``, the size of one model update in bytes.
    sync, n_mb
        Fusion once per local epoch, or every ``n_mb`` minibatches.
    t_wait
        Seconds from round start after which an update is ignored; required
        when any party is intermittent.
    quorum
        Minimum number of updates for a round to succeed (``None``: all parties).
    rounds, strategy, batch_size
        Number of rounds; aggregation strategy; ``k`` for batched serverless.
    n_agg, c_agg, b_dc
        Aggregator instances, usable cores per instance, intra-datacenter
        bandwidth in bytes/s (paper 5.4).
    cold_start_s, keep_alive_s
        The platform's cold start and how long it keeps an idle instance
        (None: indefinitely), for the latency of eager serverless steps.
    eager_step_s
        Seconds of one warm eager serverless step as measured on the platform
        (None: the formula ``2 M / B_dc + t_pair / C_agg``).
    latency_target
        How late JIT may publish a round's model (JIT only): ``"eager"``, no
        later than eager serverless aggregation would (the paper's promise of
        no added latency; fewer aggregators in a burst); ``"fastest"``, the
        paper's plan with all ``n_agg`` aggregators; a number, at most that
        many seconds after the last update (never earlier than the paper's plan).
    """

    job_id: str
    model_bytes: int
    sync: Sync = "epoch"
    n_mb: int = 1
    t_wait: float | None = None
    quorum: int | None = None
    rounds: int = 1
    strategy: str = "jit"
    batch_size: int = 10
    n_agg: int = 1
    c_agg: int = 1
    b_dc: float = DEFAULT_B_DC
    cold_start_s: float = 0.0
    keep_alive_s: float | None = None
    eager_step_s: float | None = None
    latency_target: float | str = "eager"

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id:
            raise BadRequest("job_id must be a non-empty string")
        _count(self.model_bytes, "model_bytes")
        if self.sync not in ("epoch", "minibatch"):
            raise BadRequest(f"sync must be 'epoch' or 'minibatch', got {self.sync!r}")
        _count(self.n_mb, "n_mb")
        _positive(self.t_wait, "t_wait")
        _count(self.quorum, "quorum")
        _count(self.rounds, "rounds")
        if self.strategy not in STRATEGIES:
            raise BadRequest(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        _count(self.batch_size, "batch_size")
        _count(self.n_agg, "n_agg")
        _count(self.c_agg, "c_agg")
        _positive(self.b_dc, "b_dc", allow_none=False)
        _non_negative(self.cold_start_s, "cold_start_s")
        if self.keep_alive_s is not None:
            _non_negative(self.keep_alive_s, "keep_alive_s")
        if self.eager_step_s is not None:
            _non_negative(self.eager_step_s, "eager_step_s")
        if isinstance(self.latency_target, str):
            if self.latency_target not in LATENCY_TARGETS:
                raise BadRequest(f"latency_target must be one of {', '.join(LATENCY_TARGETS)} or "
                                 f"seconds > 0, got {self.latency_target!r}")
        else:
            _positive(self.latency_target, "latency_target")

    @classmethod
    def from_api(cls, spec: api.JobSpec, *, job_id: str | None = None,
                 c_agg: int = 1, b_dc: float = DEFAULT_B_DC, cold_start_s: float = 0.0,
                 keep_alive_s: float | None = None,
                 eager_step_s: float | None = None) -> EstimatorJob:
        """The estimator's view of a gateway :class:`fedfaas.spec.JobSpec` on a platform
        with the given cold start, keep-alive and measured eager step."""
        jid = job_id or spec.job_id
        if not jid:
            raise BadRequest("the job has no job_id yet")
        return cls(
            job_id=jid, model_bytes=spec.model.size_bytes,
            sync="epoch" if spec.sync.unit == "epoch" else "minibatch", n_mb=spec.sync.every,
            t_wait=spec.t_wait_s, quorum=spec.quorum, rounds=spec.rounds,
            strategy=spec.strategy.name, batch_size=spec.strategy.batch_size,
            n_agg=spec.strategy.n_agg, c_agg=c_agg, b_dc=b_dc, cold_start_s=cold_start_s,
            keep_alive_s=keep_alive_s, eager_step_s=eager_step_s,
            latency_target=spec.strategy.latency_target,
        )


@dataclass(frozen=True)
class PartyTiming:
    """A party's timing inputs (paper 5.2), derived from its profile; every time in seconds.

    Parameters
    ----------
    party_id, mode
        Party id; ``active`` (trains as soon as a round starts) or ``intermittent``.
    t_epoch, t_mb
        Measured local epoch and minibatch times, when the party gives them.
    dataset_size, batch_size
        Local data items and minibatch size (inputs to the linear regression).
    cores, gpus
        Training hardware (regression feature when no times are given).
    b_down, b_up
        Aggregator-to-party and party-to-aggregator bandwidth, bytes/s.
    """

    party_id: str
    mode: Mode = "active"
    t_epoch: float | None = None
    t_mb: float | None = None
    dataset_size: int | None = None
    batch_size: int | None = None
    cores: float | None = None
    gpus: int = 0
    b_down: float | None = None
    b_up: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.party_id, str) or not self.party_id:
            raise BadRequest("party_id must be a non-empty string")
        if self.mode not in ("active", "intermittent"):
            raise BadRequest(f"party {self.party_id}: mode must be 'active' or 'intermittent'")
        for name in ("t_epoch", "t_mb", "cores", "b_down", "b_up"):
            _positive(getattr(self, name), f"party {self.party_id}: {name}")
        _count(self.dataset_size, f"party {self.party_id}: dataset_size")
        _count(self.batch_size, f"party {self.party_id}: batch_size")
        _count(self.gpus, f"party {self.party_id}: gpus", minimum=0)

    @property
    def compute(self) -> float | None:
        """Training hardware as one number: cores, a GPU counting as ``GPU_CORES`` cores."""
        if self.cores is None and not self.gpus:
            return None
        return (self.cores or 0.0) + GPU_CORES * self.gpus

    @classmethod
    def from_api(cls, profile: api.PartyProfile | dict[str, Any], party_id: str | None = None,
                 *, bandwidth_in_bits: bool = True) -> PartyTiming:
        """The estimator's view of a gateway party profile (model or its JSON dict).

        ``bandwidth_*_bps`` are bits per second unless ``bandwidth_in_bits`` is False.
        """
        data = profile if isinstance(profile, dict) else profile.model_dump()
        pid = party_id or data.get("party_id")
        if not pid:
            raise BadRequest("the party has no party_id")
        hw = data.get("hardware") or {}
        scale = 1 / 8 if bandwidth_in_bits else 1.0
        down, up = data.get("bandwidth_down_bps"), data.get("bandwidth_up_bps")
        return cls(
            party_id=pid, mode=data.get("mode", "active"), t_epoch=data.get("epoch_time_s"),
            t_mb=data.get("minibatch_time_s"), dataset_size=data.get("dataset_size") or None,
            batch_size=data.get("batch_size"), cores=hw.get("cpus"), gpus=hw.get("gpus", 0),
            b_down=None if down is None else down * scale, b_up=None if up is None else up * scale,
        )


GPU_CORES = 16.0
"""A GPU's weight as a regression feature, in CPU cores (documented guess, docs/jit.md)."""
