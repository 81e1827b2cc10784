"""What the FaaS platform does with the ``aggregate`` function, for JIT's ``"eager"`` latency target.

JIT promises to publish no later than eager serverless aggregation would
(:meth:`fedfaas.jit.estimator.DeadlineEstimator.done_by`).  That latency
depends on the platform, not on the paper's formulas alone:

- *keep-alive*: how long an idle instance lives, read from the function's
  OpenFaaS labels (``com.openfaas.scale.zero`` and ``-zero-duration``, via
  ``GET /system/function/aggregate``; an instance is never stopped without them)
  unless ``FEDFAAS_AGG_KEEP_ALIVE_S`` says otherwise (``never`` on Community
  Edition, which ignores those labels: the deploy manifests set it);
- *cold start*: ``FEDFAAS_AGG_COLD_START_S`` (the platform exposes no figure);
- *a warm eager step*: measured, as the lower quartile of the latest steps the
  gateway ran on ``aggregate`` for a model of that size, whatever the job's
  strategy (the formula ``2 M / B_dc + t_pair / C_agg`` ignores the storage round
  trips that bound a real step); the formula until a few were seen.  A step that
  folded ``n > 1`` updates counts as the one-update step it contains: its
  duration less ``(n - 1) / n`` of the time the function spent reading and fusing
  updates (:func:`eager_step_of_fold`), so a JIT job measures eager's step from
  its first rounds.

Steps live in Redis, so every gateway replica sees the same figures; the
labels are cached per process for ``LABELS_TTL_S``.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from fedfaas import keys
from fedfaas.config import Settings, load_settings
from fedfaas.errors import FedfaasError
from fedfaas.openfaas.stackfile import (
    LABEL_SCALE_MIN,
    LABEL_SCALE_ZERO,
    LABEL_SCALE_ZERO_DURATION,
    StackFileError,
    parse_duration,
)

log = logging.getLogger("fedfaas.platform")

LABELS_TTL_S = 60.0
"""Seconds a process reuses the function's labels before asking the platform again."""
STEPS_KEPT = 32
"""Latest single-update step durations kept per model size."""
STEPS_NEEDED = 3
"""Steps measured before they replace the formula."""
STEPS_TTL_S = 7 * 24 * 3600
DEFAULT_COLD_START_S = float(Settings.agg_cold_start_s)


@dataclass(frozen=True)
class AggregatorPlatform:
    """The platform's figures for ``aggregate`` (see the module docstring).

    Parameters
    ----------
    cold_start_s
        Seconds to start an instance.
    keep_alive_s
        Idle seconds before the platform stops an instance (None: never).
    eager_step_s
        Warm single-update step (lower quartile of the measured ones), seconds (None:
        not measured yet).
    """

    cold_start_s: float
    keep_alive_s: float | None
    eager_step_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {"cold_start_s": self.cold_start_s, "keep_alive_s": self.keep_alive_s,
                "eager_step_s": self.eager_step_s}


def eager_step_of_fold(wall_s: float, result: dict[str, Any]) -> float | None:
    """The one-update (eager serverless) step contained in a fold that took ``wall_s``.

    ``result`` is :meth:`gateway.rounds.RoundCoordinator.fold`'s answer.  A fold of
    one update is that step; one of ``n`` updates, whose function spent ``fold_s``
    reading and fusing them, is that less ``(n - 1) / n`` of ``fold_s`` (the
    invocation, partial load and write are paid once either way).  None for a
    fold that did no work (nothing folded, a reused partial) or gave no timing.
    """
    n = len(result.get("folded") or [])
    if n == 0 or result.get("reused") or not math.isfinite(wall_s) or wall_s < 0:
        return None
    if n == 1:
        return wall_s
    fold_s = result.get("fold_s")
    if isinstance(fold_s, bool) or not isinstance(fold_s, int | float) or not math.isfinite(fold_s):
        return None
    return max(0.0, wall_s - min(float(fold_s), wall_s) * (n - 1) / n)


def keep_alive_from_labels(labels: dict[str, str]) -> float | None:
    """Idle seconds before OpenFaaS scales the function to zero, from its labels (None: never).

    Scale to zero needs ``com.openfaas.scale.zero: "true"`` and no minimum above
    zero; without a ``zero-duration`` label the platform's own default applies,
    which the labels do not tell, so it is taken as never.
    """
    if str(labels.get(LABEL_SCALE_ZERO, "")).lower() != "true":
        return None
    if str(labels.get(LABEL_SCALE_MIN, "0")).strip() not in ("", "0"):
        return None
    text = labels.get(LABEL_SCALE_ZERO_DURATION)
    if text is None:
        return None
    try:
        return parse_duration(text, f"label {LABEL_SCALE_ZERO_DURATION}")
    except StackFileError as exc:
        log.warning("ignoring the aggregate function's keep-alive: %s", exc)
        return None


class PlatformFigures:
    """The current :class:`AggregatorPlatform` of one deployment.

    Parameters
    ----------
    client
        Redis (with a socket timeout), where measured steps are kept.
    labels
        Returns the ``aggregate`` function's labels; may raise
        :class:`~fedfaas.errors.FedfaasError` (the platform is unreachable), in
        which case the last known labels, or none, are used.
    namespace
        Key prefix of the deployment's JIT state.

    Raises
    ------
    ValueError
        ``FEDFAAS_AGG_KEEP_ALIVE_S`` or ``FEDFAAS_AGG_COLD_START_S`` is not a duration
        (``"never"`` is allowed for the keep-alive), so that a gateway with a typo
        stops at start instead of failing rounds.
    """

    def __init__(self, client: redis.Redis, labels: Callable[[], dict[str, str]], *,
                 namespace: str = keys.JIT_NAMESPACE) -> None:
        self.redis = client
        self._fetch_labels = labels
        self.ns = namespace
        self._labels: dict[str, str] = {}
        self._labels_at = -LABELS_TTL_S
        settings = load_settings()
        keep = (settings.agg_keep_alive_s or "").strip()
        self._keep_from_env = bool(keep)  # the environment wins over the labels
        self._keep_env = None if keep.lower() in ("", "never") else _duration(
            keep, "FEDFAAS_AGG_KEEP_ALIVE_S")
        self.cold_start_s = _duration(
            settings.agg_cold_start_s.strip() or Settings.agg_cold_start_s, "FEDFAAS_AGG_COLD_START_S")

    def labels(self) -> dict[str, str]:
        """The function's labels, at most ``LABELS_TTL_S`` old."""
        now = time.monotonic()
        if now - self._labels_at >= LABELS_TTL_S:
            self._labels_at = now
            try:
                self._labels = {str(k): str(v) for k, v in self._fetch_labels().items()}
            except FedfaasError as exc:
                log.warning("cannot read the aggregate function's labels: %s", exc.message)
        return self._labels

    def record_step(self, model_bytes: int, seconds: float) -> None:
        """One single-update step on ``aggregate`` took ``seconds``."""
        key = keys.jit_eager_steps(self.ns, model_bytes)
        with self.redis.pipeline() as pipe:
            pipe.lpush(key, repr(float(seconds)))
            pipe.ltrim(key, 0, STEPS_KEPT - 1)
            pipe.expire(key, STEPS_TTL_S)
            pipe.execute()

    def eager_step(self, model_bytes: int) -> float | None:
        """Lower quartile of the latest measured single-update steps (None: fewer than
        ``STEPS_NEEDED``): warm steps are the faster ones, and the model adds cold starts."""
        raw = self.redis.lrange(keys.jit_eager_steps(self.ns, model_bytes), 0, -1)
        steps = [float(x) for x in raw]
        if len(steps) < STEPS_NEEDED:
            return None
        return statistics.quantiles(steps, n=4, method="inclusive")[0]

    def current(self, model_bytes: int) -> AggregatorPlatform:
        """The figures for a job whose updates are ``model_bytes`` long."""
        keep = self._keep_env if self._keep_from_env else keep_alive_from_labels(self.labels())
        return AggregatorPlatform(cold_start_s=self.cold_start_s, keep_alive_s=keep,
                                  eager_step_s=self.eager_step(model_bytes))


def _duration(text: str, name: str) -> float:
    """Seconds from ``text`` (``"30"``, ``"30s"``, ``"1m30s"``); ValueError naming ``name``."""
    try:
        seconds = parse_duration(text, name)
    except StackFileError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name}: expected a finite duration >= 0, got {text!r}")
    return seconds
