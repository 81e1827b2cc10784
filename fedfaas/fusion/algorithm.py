"""The interface every fusion algorithm implements (JIT paper, Section 2.1).

An algorithm turns one round's updates into the next global model.  Two kinds:

- *linear* algorithms (:class:`LinearAlgorithm`: FedAvg, FedProx, FedSGD and the
  server optimisers) only need a weighted sum, so they stream: the aggregator
  folds updates into a :class:`~fedfaas.fusion.partial.PartialAggregate` as
  they arrive, checkpoints it, and calls :meth:`LinearAlgorithm.finalize` at the
  deadline;
- *robust* algorithms (median, trimmed mean, Krum, Multi-Krum, Bulyan) need all
  updates at once and only offer :meth:`Algorithm.fuse` over the full list.

Algorithms hold only validated hyperparameters; per-job state that must
survive between rounds (server-optimiser moments) travels in
:class:`ServerState`, stored with the codec like any model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fedfaas.errors import FusionError
from fedfaas.fusion.checks import ModelSpec, check_matches, check_parties, check_updates
from fedfaas.fusion.partial import PartialAggregate

Tensors = Mapping[str, np.ndarray]
STATE_KIND = "fedfaas.server_state"


@dataclass
class ServerState:
    """Server-optimiser state between rounds (Reddi et al., "Adaptive Federated Optimization").

    ``tensors`` are named ``"<slot>:<model tensor>"`` (e.g. ``"m:fc.weight"``)
    and ``step`` counts the rounds applied so far.
    """

    algorithm: str
    step: int
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Named tensors and metadata for :func:`fedfaas.codec.encode`."""
        return dict(self.tensors), {"kind": STATE_KIND, "algorithm": self.algorithm,
                                    "step": self.step}

    @classmethod
    def from_tensors(cls, tensors: Tensors, meta: Mapping[str, Any]) -> ServerState:
        """Rebuild a state stored with :meth:`to_tensors` (arrays are copied, writable)."""
        if meta.get("kind") != STATE_KIND:
            raise FusionError(f"not a server state: meta 'kind' must be {STATE_KIND!r}")
        algorithm, step = meta.get("algorithm"), meta.get("step")
        if not isinstance(algorithm, str):
            raise FusionError("server state meta 'algorithm' must be a string")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise FusionError("server state meta 'step' must be an integer >= 0")
        return cls(algorithm, step, {k: np.array(v, order="C") for k, v in tensors.items()})


@dataclass
class FusionResult:
    """The fused global model and what produced it.

    ``parties`` are the parties whose updates shaped the model (for Krum-style
    rules, only the selected ones); ``state`` is the server-optimiser state to
    store for the next round, or ``None``; ``meta`` holds rule-specific facts
    such as Krum scores.
    """

    model: dict[str, np.ndarray]
    parties: list[str]
    state: ServerState | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Algorithm:
    """Base of every fusion algorithm; subclasses validate their parameters in ``__init__``."""

    name: ClassVar[str] = ""
    #: True when the algorithm folds updates into a PartialAggregate as they arrive.
    streaming: ClassVar[bool] = False
    #: True when fusing needs the current global model (server-side optimisers).
    needs_global_model: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """The hyperparameters, such that ``get_algorithm(name, **params())`` rebuilds it."""
        return {}

    def round_config(self) -> dict[str, Any]:
        """Values handed to the parties with the global model (e.g. FedProx's ``proximal_mu``)."""
        return {}

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """Fuse one round's updates (all at once); ``weights`` are numbers of examples."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class LinearAlgorithm(Algorithm):
    """An algorithm that needs only the weighted mean of the updates (streamable)."""

    streaming = True

    def new_partial(self, spec: ModelSpec | None = None, *, threads: int | None = None
                    ) -> PartialAggregate:
        """An empty accumulator for this round."""
        return PartialAggregate(spec, threads=threads)

    def finalize(self, partial: PartialAggregate, *, global_model: Tensors | None = None,
                 state: ServerState | None = None, consume: bool = False) -> FusionResult:
        """Turn the round's partial aggregate into the next global model."""
        raise NotImplementedError

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """One-shot fusion: a fresh partial, every update folded in, finalised."""
        names = check_parties(parties, len(updates))
        spec = check_updates(updates, names)
        if self.needs_global_model:
            self._require_global(global_model, spec)
        partial = self.new_partial(spec)
        partial.add_many(updates, weights, names)
        return self.finalize(partial, global_model=global_model, state=state, consume=True)

    @staticmethod
    def _spec(partial: PartialAggregate) -> ModelSpec:
        if partial.spec is None or partial.count == 0:
            raise FusionError("no updates have been added to this partial aggregate")
        return partial.spec

    def _require_global(self, global_model: Tensors | None, spec: ModelSpec | None) -> Tensors:
        if global_model is None:
            raise FusionError(f"algorithm {self.name!r} needs the current global model")
        if spec is not None:
            check_matches(spec, global_model, "global model")
        return global_model
