"""Deadline calculator: when updates arrive and how long aggregation takes (JIT paper 5.3, 5.4).

:class:`DeadlineEstimator` finds each party's ``t_train`` (Fig. 6, line 7) and
puts the paper's formulas (:mod:`fedfaas.jit.formulas`: ``t_comm``, ``t_upd``,
``t_rnd``, ``t_agg``) together into a :class:`~fedfaas.jit.estimate.JobEstimate`.

Missing times come from the linearity regression in :mod:`fedfaas.jit.regression`
(fitted on the job's other parties plus past observations); when nothing can
be fitted the documented fallback is the median ``t_train`` of the parties that
could be estimated, then ``t_wait``.  An update later than ``t_wait`` is
ignored, so ``t_upd`` is capped at ``t_wait`` when the job has one.

Beyond the paper, the :class:`~fedfaas.jit.learning.Corrections` of an
:class:`~fedfaas.jit.learning.ArrivalLearner` correct active parties' ``t_upd``
by their observed lateness, add the observed aggregation overhead to ``t_agg``
and supply the ``slack`` by which the JIT timer is armed early; the timer aims
at a low quantile of the round's last arrival (:mod:`fedfaas.jit.last_arrival`),
and the round gets as few aggregators as finish it in time
(:mod:`fedfaas.jit.planning`; see ``docs/jit.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.formulas import t_agg, t_comm, t_rnd, t_upd
from fedfaas.jit.last_arrival import last_arrival_quantile, latest_ready_time
from fedfaas.jit.learning import ArrivalLearner, Corrections
from fedfaas.jit.planning import START_MARGIN, choose_aggregators, done_by, merge_step, merge_time
from fedfaas.jit.regression import TimeRegression, TrainingSample
from fedfaas.jit.spec import EstimatorJob, PartyTiming

MEASURED_SOURCES = frozenset({"t_ep", "t_mb x steps", "N_mb x t_mb", "N_mb x t_ep / steps"})
"""``t_train`` sources that rest on times the party measured (the rest are regressed or
filled in); the learner gives them a tighter spread prior."""


class DeadlineEstimator:
    """Builds :class:`JobEstimate` for a job from its spec and party profiles (paper 5.3, 5.4).

    Parameters
    ----------
    job, parties
        The job spec and every party's profile.
    t_pair
        Seconds to fuse a pair of updates on one core
        (:func:`~fedfaas.jit.calibration.calibrate_t_pair`).
    history
        Past training-time observations, extra samples for the regression.
    """

    def __init__(self, job: EstimatorJob, parties: Sequence[PartyTiming], *, t_pair: float,
                 history: Sequence[TrainingSample] = ()) -> None:
        if not parties:
            raise BadRequest(f"job {job.job_id}: no parties to estimate")
        if not (isinstance(t_pair, int | float) and math.isfinite(t_pair) and t_pair >= 0):
            raise BadRequest(f"t_pair must be a finite number >= 0, got {t_pair!r}")
        ids = [p.party_id for p in parties]
        if len(set(ids)) != len(ids):
            raise BadRequest(f"job {job.job_id}: duplicate party ids")
        if any(p.mode == "intermittent" for p in parties) and job.t_wait is None:
            raise BadRequest(f"job {job.job_id}: intermittent parties need the job's t_wait")
        if job.quorum is not None and job.quorum > len(parties):
            raise BadRequest(f"job {job.job_id}: quorum {job.quorum} > {len(parties)} parties")
        self.job = job
        self.parties = list(parties)
        self.t_pair = float(t_pair)
        self._regression = TimeRegression(
            [TrainingSample.of(p) for p in parties if p.t_epoch is not None or p.t_mb is not None]
            + list(history))
        self._ids = tuple(p.party_id for p in self.parties)
        self._modes = tuple(p.mode for p in self.parties)
        self._active = np.array([m == "active" for m in self._modes])
        self._intermittent = np.array([m == "intermittent" for m in self._modes])
        self._base = self._compute_base()
        self._measured = np.array([src in MEASURED_SOURCES for src in self._base["sources"]])

    # -- per party (Fig. 6 lines 7-10) -------------------------------------------------

    def _steps(self, p: PartyTiming) -> int | None:
        if p.dataset_size is None or p.batch_size is None:
            return None
        return max(1, math.ceil(p.dataset_size / p.batch_size))

    def _t_train(self, p: PartyTiming) -> tuple[float | None, str]:
        job = self.job
        if p.mode == "intermittent":
            return float(job.t_wait), "t_wait"  # type: ignore[arg-type]
        steps = self._steps(p)
        if job.sync == "epoch":
            if p.t_epoch is not None:
                return p.t_epoch, "t_ep"
            if p.t_mb is not None and steps is not None:
                return p.t_mb * steps, "t_mb x steps"
            pred = self._regression.epoch_time(p)
            if pred is not None:
                return pred, "regression:t_ep~dataset_size"
            mb = self._regression.minibatch_time(p)
            if mb is not None and steps is not None:
                return mb * steps, "regression:t_mb~batch_size"
            return None, "fallback"
        if p.t_mb is not None:
            return job.n_mb * p.t_mb, "N_mb x t_mb"
        if p.t_epoch is not None and steps is not None:
            return job.n_mb * p.t_epoch / steps, "N_mb x t_ep / steps"
        mb = self._regression.minibatch_time(p)
        if mb is not None:
            return job.n_mb * mb, "regression:t_mb~batch_size"
        ep = self._regression.epoch_time(p)
        if ep is not None and steps is not None:
            return job.n_mb * ep / steps, "regression:t_ep~dataset_size"
        return None, "fallback"

    def _compute_base(self) -> dict[str, Any]:
        trains: list[float | None] = []
        sources: list[str] = []
        for p in self.parties:
            value, source = self._t_train(p)
            trains.append(value)
            sources.append(source)
        known = [t for t, p in zip(trains, self.parties, strict=True)
                 if t is not None and p.mode == "active"]
        if any(t is None for t in trains):
            if known:
                fill, how = float(np.median(known)), "fallback:median"
            elif self.job.t_wait is not None:
                fill, how = float(self.job.t_wait), "fallback:t_wait"
            else:
                missing = [p.party_id for p, t in zip(self.parties, trains, strict=True) if t is None]
                raise BadRequest(f"job {self.job.job_id}: no training time for {missing[:5]} and "
                                 "nothing to infer it from (give t_epoch/t_mb, dataset and "
                                 "hardware, or t_wait)")
            sources = [how if t is None else s for t, s in zip(trains, sources, strict=True)]
            trains = [fill if t is None else t for t in trains]
        bw_down = [p.b_down for p in self.parties if p.b_down is not None]
        bw_up = [p.b_up for p in self.parties if p.b_up is not None]
        if not bw_down or not bw_up:
            raise BadRequest(f"job {self.job.job_id}: no party reported its bandwidth "
                             "(b_down and b_up are needed for t_comm)")
        # A party that reports no bandwidth is assumed typical for the job (median).
        d_fill, u_fill = float(np.median(bw_down)), float(np.median(bw_up))
        m = float(self.job.model_bytes)
        comm = np.array([t_comm(m, p.b_down or d_fill, p.b_up or u_fill) for p in self.parties])
        train = np.asarray(trains, dtype=np.float64)
        return {"t_train": train, "t_comm": comm, "t_upd": t_upd(train, comm, self.job.t_wait),
                "sources": tuple(sources)}

    # -- per job -----------------------------------------------------------------------

    @property
    def t_agg_paper(self) -> float:
        """``t_agg`` by the paper's formula for all parties (Fig. 6 line 13)."""
        j = self.job
        return t_agg(len(self.parties), self.t_pair, j.c_agg, j.n_agg, j.model_bytes, j.b_dc)

    def done_by(self, arrivals: np.ndarray, spread: np.ndarray | None = None) -> float | None:
        """Latest end of fusion the job's latency target allows (:func:`~fedfaas.jit.planning.done_by`)."""
        return done_by(self.job, self.t_pair, arrivals, spread)

    @property
    def merge_step(self) -> float:
        """Merging one partial into another (:func:`~fedfaas.jit.planning.merge_step`)."""
        return merge_step(self.job, self.t_pair)

    def estimate(self, learner: ArrivalLearner | None = None) -> JobEstimate:
        """The estimate for the next round, corrected by ``learner`` when given."""
        if learner is None:
            return self._paper_estimate()
        return self._corrected_estimate(learner.corrections(
            self._ids, measured=self._measured, n_intermittent=int(self._intermittent.sum())))

    def _paper_estimate(self) -> JobEstimate:
        """The paper's estimate (Fig. 6, lines 7-13), capped at ``t_wait``."""
        upd = self._base["t_upd"]
        end = t_rnd(upd)
        if self.job.t_wait is not None:
            end = min(end, float(self.job.t_wait))
        return self._estimate(upd=upd, early=upd, late=upd, t_rnd=end, t_rnd_early=end,
                              t_agg=self.t_agg_paper)

    def _corrected_estimate(self, c: Corrections) -> JobEstimate:
        """The estimate with the learner's corrections, timer and aggregator plan."""
        j, active = self.job, self._active
        base = self._base["t_upd"]
        upd = np.where(active, base * c.ratio, base)
        early = np.where(active, upd * c.early, 0.0)  # an intermittent one: any time in t_wait
        late = np.where(active, upd * c.late, upd)
        if j.t_wait is not None:
            upd, early, late = (np.minimum(a, j.t_wait) for a in (upd, early, late))
        agg = max(self.t_agg_paper + c.agg_residual, 0.0)
        end = t_rnd(upd) + c.rnd_bias
        # A party observed less than twice counts at its early bound: its spread is a guess.
        known = active & (c.observations >= 2)
        spread = np.where(active, upd * c.sigma, 0.0)
        end_early = last_arrival_quantile(np.where(active & ~known, early, upd),
                                          np.where(known, spread, 0.0), c.round_quantile)
        if j.t_wait is not None:
            end, end_early = min(end, float(j.t_wait)), min(end_early, float(j.t_wait))
            if not c.likely_to_complete:
                # Some party is likely to skip the round, which then ends at t_wait: the
                # paper's rule for a party whose update may come any time until then.
                end = end_early = float(j.t_wait)
        expected = self._expected_arrivals(upd, c.intermittent_arrivals)
        by = self.done_by(expected, spread)
        target_latency = (None if by is None
                          else by - float(np.max(expected)) + j.model_bytes / j.b_dc)
        merge_s = self.merge_step
        k, t_k, fused = choose_aggregators(
            expected, end_early, t_pair=self.t_pair, c_agg=j.c_agg, n_agg=j.n_agg,
            model_bytes=j.model_bytes, b_dc=j.b_dc, overhead=c.agg_residual,
            # Until the parties were seen twice their spreads are priors: fewer
            # aggregators only on an allowance computed from learned ones.
            done_by=by if c.rounds_seen >= 2 else None, merge_s=merge_s,
            # A job whose latency stays well within its target (a large learned
            # share) needs less of the early start that guards the paper's plan.
            margin=START_MARGIN * (1.0 - c.timer_share) if by is not None else START_MARGIN)
        n_agg = None
        if j.n_agg > 1:
            n_agg, agg = k, t_k
        if by is not None:
            fused += merge_time(k, merge_s)  # down to one partial
        if by is not None and by > fused:
            # Headroom left by the plan: the timer may fire later, so that an
            # aggregator waits less for the last update, at an expected lateness
            # within a share of it. Parties not yet seen twice count at their
            # prior spread (tighter for measured times than for regressed ones).
            # A round whose last update comes before the timer launches at once,
            # and is late by the launch's own time, not by more.
            ready = latest_ready_time(upd, spread, c.timer_share * (by - fused),
                                      cap=agg + c.slack)
            end_early = max(end_early, ready)
            if j.t_wait is not None:
                end_early = min(end_early, float(j.t_wait))
        return self._estimate(upd=upd, early=early, late=late, t_rnd=end, t_rnd_early=end_early,
                              t_agg=agg, slack=c.slack, n_agg=n_agg, done_by=by,
                              target_latency=target_latency)

    def _expected_arrivals(self, upd: np.ndarray, intermittent: np.ndarray | None) -> np.ndarray:
        """Expected arrival offsets: active parties at ``t_upd``, intermittent ones spread
        over ``t_wait`` by the learned curve (at ``t_wait`` before any is learned)."""
        out = np.asarray(upd, dtype=np.float64).copy()
        if intermittent is not None and self.job.t_wait is not None:
            out[self._intermittent] = float(self.job.t_wait) * intermittent
        return out

    def _estimate(self, *, upd: np.ndarray, early: np.ndarray, late: np.ndarray, t_rnd: float,
                  t_rnd_early: float, t_agg: float, **planned: Any) -> JobEstimate:
        base = self._base
        return JobEstimate(
            job_id=self.job.job_id, party_ids=self._ids, modes=self._modes,
            sources=base["sources"], t_train=base["t_train"], t_comm=base["t_comm"],
            t_upd_base=base["t_upd"], t_upd=upd, t_rnd=max(t_rnd, 0.0), t_agg=t_agg,
            t_agg_paper=self.t_agg_paper, t_rnd_early=max(t_rnd_early, 0.0),
            t_upd_early=early, t_upd_late=late, **planned,
            meta={"t_pair": self.t_pair, "n_agg": self.job.n_agg, "c_agg": self.job.c_agg},
        )
