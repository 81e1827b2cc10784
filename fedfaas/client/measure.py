"""What a party measures about itself for the JIT estimator (JIT paper 5.2 and 5.4).

JIT predicts when a party's update arrives from its epoch or minibatch time
and its bandwidth.  A party that does not know them measures them: training
time with :func:`measure_training`, bandwidth from its own model downloads
and update uploads (bytes over seconds, smoothed by an EWMA so one slow
transfer does not swing the prediction).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: Transfers smaller than this are dominated by latency, not bandwidth: not sampled.
MIN_SAMPLE_BYTES = 64 * 1024
DEFAULT_ALPHA = 0.3
#: The gateway's upper bound for reported bandwidth (fedfaas.spec.PartyProfile).
MAX_BPS = 1e12


class BandwidthMeter:
    """EWMA of observed throughput, in bits per second (the unit of ``bandwidth_*_bps``).

    Parameters
    ----------
    alpha
        Weight of the newest sample, in (0, 1].
    min_bytes
        Smaller transfers are ignored.
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA, min_bytes: int = MIN_SAMPLE_BYTES) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if min_bytes < 0:
            raise ValueError("min_bytes must be >= 0")
        self.alpha = alpha
        self.min_bytes = min_bytes
        self.bps: float | None = None
        self.samples = 0

    def observe(self, nbytes: int, seconds: float) -> float | None:
        """Add one transfer; return the updated estimate (None while nothing was sampled)."""
        if nbytes < max(self.min_bytes, 1) or seconds <= 0:
            return self.bps
        sample = min(8.0 * nbytes / seconds, MAX_BPS)
        self.bps = sample if self.bps is None else self.alpha * sample + (1 - self.alpha) * self.bps
        self.samples += 1
        return self.bps


@dataclass
class TrainingTimer:
    """Wall-clock time of one training loop and the per-epoch / per-minibatch times it implies."""

    epochs: float = 1.0
    minibatches: int | None = None
    elapsed_s: float | None = None

    @property
    def epoch_time_s(self) -> float | None:
        """Seconds per local epoch."""
        if self.elapsed_s is None or self.epochs <= 0:
            return None
        return self.elapsed_s / self.epochs

    @property
    def minibatch_time_s(self) -> float | None:
        """Seconds per minibatch, when the number of minibatches was given."""
        if self.elapsed_s is None or not self.minibatches:
            return None
        return self.elapsed_s / self.minibatches


@contextmanager
def measure_training(epochs: float = 1.0, minibatches: int | None = None
                     ) -> Iterator[TrainingTimer]:
    """Time the enclosed training loop.

    ``epochs`` and ``minibatches`` say how much work the loop does, so the
    timer can report per-epoch and per-minibatch times.  The time is recorded
    only when the block finishes without an exception.

    Examples
    --------
    >>> with measure_training(epochs=2, minibatches=40) as timer:
    ...     pass  # train
    >>> timer.elapsed_s is not None
    True
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    if minibatches is not None and minibatches <= 0:
        raise ValueError(f"minibatches must be > 0, got {minibatches}")
    timer = TrainingTimer(epochs=epochs, minibatches=minibatches)
    started = time.perf_counter()
    yield timer
    timer.elapsed_s = max(time.perf_counter() - started, 1e-9)
