"""Training-time regression from linearity (JIT paper 4.2 and 5.2).

Epoch time grows linearly with the dataset size, minibatch time with the batch
size, and both shrink with the training hardware.  When a party gives no times,
its time is predicted by least squares over the *other* parties of the job and
past observations: ``t_epoch ~ a + b * dataset_size / compute`` and
``t_mb ~ a + b * batch_size / compute`` (``compute`` in cores, a GPU weighing
:data:`~fedfaas.jit.spec.GPU_CORES`).  With a single usable sample the line goes
through the origin (pure proportionality); with none, there is no prediction
and the caller falls back (see :mod:`fedfaas.jit.estimator`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedfaas.jit.spec import PartyTiming


@dataclass(frozen=True)
class TrainingSample:
    """One known training time and its features (reported by a party or observed)."""

    dataset_size: int | None
    batch_size: int | None
    compute: float | None
    t_epoch: float | None = None
    t_mb: float | None = None

    @classmethod
    def of(cls, party: PartyTiming, *, t_epoch: float | None = None,
           t_mb: float | None = None) -> TrainingSample:
        """A sample with ``party``'s features and the given (or reported) times."""
        return cls(party.dataset_size, party.batch_size, party.compute,
                   t_epoch if t_epoch is not None else party.t_epoch,
                   t_mb if t_mb is not None else party.t_mb)


@dataclass(frozen=True)
class LinearFit:
    """``y = intercept + slope * x`` fitted on ``n`` samples."""

    intercept: float
    slope: float
    n: int

    def predict(self, x: float) -> float:
        """The fitted value, never below 1% of the slope-only prediction (times are > 0)."""
        y = self.intercept + self.slope * x
        return float(max(y, 0.01 * abs(self.slope) * x, 1e-9))


def fit_line(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LinearFit | None:
    """Least-squares line through ``(x, y)``; through the origin if ``x`` has one distinct value.

    Returns ``None`` when there is no usable sample.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya) & (xa > 0) & (ya > 0)
    xa, ya = xa[ok], ya[ok]
    if xa.size == 0:
        return None
    if np.unique(xa).size < 2:
        # One design point: linearity (paper 4.2) says time is proportional to work.
        return LinearFit(0.0, float(ya.sum() / xa.sum()), int(xa.size))
    design = np.column_stack([np.ones_like(xa), xa])
    (a, b), *_ = np.linalg.lstsq(design, ya, rcond=None)
    if b <= 0:
        # Noise can tilt a line over few points; time must grow with work.
        return LinearFit(0.0, float(ya.sum() / xa.sum()), int(xa.size))
    return LinearFit(float(a), float(b), int(xa.size))


class TimeRegression:
    """Fits built once from the samples, reused for every party that needs a prediction.

    The feature is ``size / compute`` when the target party and at least one
    sample know their hardware, else ``size`` alone.
    """

    def __init__(self, samples: Sequence[TrainingSample]) -> None:
        self._samples = list(samples)
        self._fits: dict[tuple[str, bool], LinearFit | None] = {}

    def _fit(self, kind: str, use_compute: bool) -> LinearFit | None:
        key = (kind, use_compute)
        if key not in self._fits:
            xs: list[float] = []
            ys: list[float] = []
            for s in self._samples:
                size = s.dataset_size if kind == "epoch" else s.batch_size
                t = s.t_epoch if kind == "epoch" else s.t_mb
                if size is None or t is None or (use_compute and s.compute is None):
                    continue
                xs.append(size / s.compute if use_compute else float(size))  # type: ignore[operator]
                ys.append(t)
            self._fits[key] = fit_line(xs, ys)
        return self._fits[key]

    def _predict(self, kind: str, size: int | None, compute: float | None) -> float | None:
        if size is None:
            return None
        if compute is not None:
            fit = self._fit(kind, True)
            if fit is not None:
                return fit.predict(size / compute)
        fit = self._fit(kind, False)
        return None if fit is None else fit.predict(float(size))

    def epoch_time(self, party: PartyTiming) -> float | None:
        """Epoch time of ``party`` from its dataset size (and hardware), or ``None``."""
        return self._predict("epoch", party.dataset_size, party.compute)

    def minibatch_time(self, party: PartyTiming) -> float | None:
        """Minibatch time of ``party`` from its batch size (and hardware), or ``None``."""
        return self._predict("mb", party.batch_size, party.compute)
