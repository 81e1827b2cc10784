"""Model payloads on the party side: what may be pushed, and a fetched global model.

A party hands the SDK a torch ``state_dict``, a mapping of names to numpy
arrays, or a list of numpy arrays (named ``"0"``, ``"1"``, ... as in
:func:`fedfaas.codec.from_arrays`); all become the wire format of
:mod:`fedfaas.codec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedfaas import codec
from fedfaas.errors import BadRequest, FedfaasError

if TYPE_CHECKING:
    import torch

Tensors = Mapping[str, Any] | Sequence[np.ndarray]


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def as_tensors(update: Tensors) -> dict[str, np.ndarray]:
    """Named numpy arrays from a ``state_dict``, a name->array mapping or a list of arrays."""
    if isinstance(update, Mapping):
        if not update:
            raise BadRequest("the update holds no tensors")
        values = list(update.values())
        if all(_is_torch_tensor(v) for v in values):
            return codec.from_state_dict(update)
        if all(isinstance(v, np.ndarray | np.generic) for v in values):
            return {str(k): np.asarray(v) for k, v in update.items()}
        raise BadRequest("an update mapping must hold only torch tensors or only numpy arrays")
    if isinstance(update, str | bytes) or not isinstance(update, Sequence):
        raise BadRequest(f"an update must be a state_dict, a mapping or a list of arrays, "
                         f"not {type(update).__name__}")
    if not update:
        raise BadRequest("the update holds no tensors")
    if not all(isinstance(v, np.ndarray) for v in update):
        raise BadRequest("a list update must hold numpy arrays only")
    return codec.from_arrays(update)


def encode_update(update: Tensors, meta: Mapping[str, Any]) -> bytes:
    """One wire-format body for ``update`` with ``meta``."""
    return codec.encode(as_tensors(update), meta)


@dataclass
class GlobalModel:
    """A global model as fetched from the gateway.

    ``tensors`` are read-only numpy views over the received body; use
    :meth:`state_dict` or :meth:`arrays` for writable copies.
    """

    round: int
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    nbytes: int = 0

    @classmethod
    def from_body(cls, body: bytes, rnd: int) -> GlobalModel:
        """Decode a model body served for round ``rnd``."""
        update = codec.decode(body)
        return cls(round=rnd, tensors=update.tensors, meta=update.meta, nbytes=len(body))

    def arrays(self) -> list[np.ndarray]:
        """Writable copies of the tensors, in stored order."""
        return [np.array(a) for a in codec.to_arrays(self.tensors)]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Writable torch tensors for ``module.load_state_dict``."""
        return codec.to_state_dict(self.tensors)


def round_header(value: str | None, fallback: int | None) -> int:
    """The round a model response says it belongs to (``X-Fedfaas-Round``)."""
    if value is not None:
        try:
            return int(value)
        except ValueError:
            pass
    if fallback is None:
        raise FedfaasError(f"the gateway sent a model without a valid X-Fedfaas-Round ({value!r})",
                           code="bad_response")
    return fallback
