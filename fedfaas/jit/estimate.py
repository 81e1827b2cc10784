"""One round's estimate of a job: when updates arrive and when to aggregate (JIT paper 5.3-5.5).

:class:`JobEstimate` is what :class:`~fedfaas.jit.estimator.DeadlineEstimator`
produces and the scheduler, the strategies, the warm hold and the learner read.
:meth:`JobEstimate.to_dict` and :meth:`JobEstimate.from_dict` are its one JSON
form, wherever it is stored (the round's record in Redis) or shown (the API).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest

PARTY_FIELDS = ("t_train", "t_comm", "t_upd_base", "t_upd", "t_upd_early", "t_upd_late")
"""The per-party arrays of an estimate, in the order of its ``party_ids``."""


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class JobEstimate:
    """Every estimate for one round of a job; times are offsets from round start, seconds."""

    job_id: str
    party_ids: tuple[str, ...]
    modes: tuple[str, ...]
    sources: tuple[str, ...]
    t_train: np.ndarray
    t_comm: np.ndarray
    t_upd_base: np.ndarray
    """The paper's ``t_upd`` (Fig. 6, line 10), before the learner's corrections."""
    t_upd: np.ndarray
    t_rnd: float
    t_agg: float
    t_agg_paper: float
    t_rnd_early: float
    t_upd_early: np.ndarray
    t_upd_late: np.ndarray
    slack: float = 0.0
    n_agg: int | None = None
    """Aggregators JIT plans for this round (:func:`~fedfaas.jit.planning.choose_aggregators`);
    None: the job's."""
    done_by: float | None = None
    """Latest end of fusion the job's latency target allows (:func:`~fedfaas.jit.planning.done_by`)."""
    target_latency: float | None = None
    """The latency target in seconds from the last update to the published model (the
    expected last arrival to ``done_by``, plus the model write)."""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def deadline(self) -> float:
        """Latest start of aggregation, ``t_rnd - t_agg`` (paper 5.5); with a learner ``t_rnd``
        is a low quantile of the last arrival and ``slack`` covers aggregation-time error."""
        return max(0.0, self.t_rnd_early - self.t_agg - self.slack)

    def to_dict(self, *, parties: bool = True) -> dict[str, Any]:
        """JSON-ready estimate; with ``parties`` the per-party arrays too, which
        :meth:`from_dict` needs.  ``deadline`` and ``n_parties`` are derived, for readers."""
        out: dict[str, Any] = {"job_id": self.job_id, "t_rnd": self.t_rnd, "t_agg": self.t_agg,
                               "t_agg_paper": self.t_agg_paper, "t_rnd_early": self.t_rnd_early,
                               "slack": self.slack, "n_agg_planned": self.n_agg,
                               "done_by": self.done_by, "target_latency": self.target_latency,
                               "deadline": self.deadline, "n_parties": len(self.party_ids),
                               "meta": dict(self.meta)}
        if parties:
            out.update(party_ids=list(self.party_ids), modes=list(self.modes),
                       sources=list(self.sources),
                       **{name: getattr(self, name).tolist() for name in PARTY_FIELDS})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobEstimate:
        """Rebuild from :meth:`to_dict` (with parties) output; other keys are ignored."""
        try:
            ids = tuple(str(p) for p in data["party_ids"])
            arrays = {name: np.asarray(data[name], dtype=np.float64) for name in PARTY_FIELDS}
            if any(a.shape != (len(ids),) for a in arrays.values()):
                raise ValueError(f"{', '.join(PARTY_FIELDS)} must have one entry per party")
            n_agg = data.get("n_agg_planned")
            return cls(job_id=str(data["job_id"]), party_ids=ids,
                       modes=tuple(str(m) for m in data["modes"]),
                       sources=tuple(str(s) for s in data["sources"]),
                       t_rnd=float(data["t_rnd"]), t_agg=float(data["t_agg"]),
                       t_agg_paper=float(data["t_agg_paper"]),
                       t_rnd_early=float(data["t_rnd_early"]),
                       slack=float(data.get("slack", 0.0)),
                       n_agg=None if n_agg is None else int(n_agg),
                       done_by=_opt_float(data.get("done_by")),
                       target_latency=_opt_float(data.get("target_latency")),
                       meta=dict(data.get("meta") or {}), **arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"invalid estimate: {exc}") from None
