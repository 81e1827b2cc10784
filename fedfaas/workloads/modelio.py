"""Running the job's model inside a workload (FLStore §4.4: P1/P2 workloads that evaluate models).

Builds the model named by the job spec, loads decoded weights into it and
validates input batches against the model's input shape, each with a
BadRequest that says what does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from fedfaas.errors import BadRequest
from fedfaas.models import build_model, load_state
from fedfaas.workloads.base import model_spec

#: Largest batch a workload evaluates in one request.
MAX_ROWS = 100_000


def job_model(job: Mapping[str, Any], workload: str) -> nn.Module:
    """A fresh instance of the job's model in eval mode (weights to be loaded).

    Every state entry is overwritten by :func:`load_weights`, so the model is
    built on the meta device and given uninitialised memory: random
    initialisation of a ResNet-18 costs more than its forward pass on a batch.
    """
    name, kwargs = model_spec(job, workload)
    with torch.device("meta"):
        skeleton = build_model(name, **kwargs)
    state = skeleton.state_dict()
    if any(n not in state for n, _ in skeleton.named_buffers()):
        # A buffer outside the state (non-persistent) would stay uninitialised.
        return build_model(name, seed=0, **kwargs)
    return skeleton.to_empty(device="cpu").eval()


def load_weights(model: nn.Module, tensors: Mapping[str, np.ndarray], workload: str,
                 what: str) -> nn.Module:
    """Load ``tensors`` into ``model``; a mismatch names ``what`` (e.g. "client 'a'")."""
    try:
        return load_state(model, tensors)
    except BadRequest as exc:
        raise BadRequest(f"{workload}: weights of {what}: {exc.message}") from None


def input_shape(model: nn.Module) -> tuple[int, ...]:
    """Per-sample input shape the model declares."""
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple):
        raise BadRequest(f"model {type(model).__name__} declares no input_shape")
    return shape


def check_batch(workload: str, model: nn.Module, x: Any, name: str = "x",
                max_rows: int = MAX_ROWS) -> np.ndarray:
    """``x`` as float32 ``(N, *input_shape)``; flat rows of the right length are reshaped.

    Raises BadRequest for a wrong shape, too many rows or non-finite values.
    """
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadRequest(f"{workload}: {name!r} must be a numeric array") from None
    shape = input_shape(model)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise BadRequest(f"{workload}: {name!r} holds no inputs")
    if arr.shape[0] > max_rows:
        raise BadRequest(f"{workload}: {name!r} has {arr.shape[0]} rows, the limit is {max_rows}")
    if arr.shape[1:] != shape:
        if arr.ndim == 2 and arr.shape[1] == math.prod(shape):
            arr = arr.reshape(arr.shape[0], *shape)
        else:
            dims = ", ".join(map(str, shape))
            raise BadRequest(f"{workload}: {name!r} has shape {tuple(arr.shape)}; the model "
                             f"expects (N, {dims}) or (N, {math.prod(shape)})")
    if not np.isfinite(arr).all():
        raise BadRequest(f"{workload}: {name!r} holds NaN or infinite values")
    return arr


def check_labels(workload: str, model: nn.Module, y: Any, rows: int, name: str = "y_val"
                 ) -> np.ndarray:
    """``y`` as int64 labels in ``[0, num_classes)``, one per input row."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise BadRequest(f"{workload}: {name!r} must hold one label per input ({rows}), "
                         f"got shape {tuple(arr.shape)}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise BadRequest(f"{workload}: {name!r} must hold integer class labels")
    classes = int(getattr(model, "num_classes", 0)) or None
    if arr.min() < 0 or (classes is not None and arr.max() >= classes):
        raise BadRequest(f"{workload}: {name!r} labels must lie in [0, {classes})")
    return arr.astype(np.int64)


@torch.inference_mode()
def forward(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` for a validated batch, as float64."""
    model.eval()
    xs = torch.from_numpy(x)
    outs = [model(xs[i:i + batch_size]).double() for i in range(0, len(xs), batch_size)]
    return torch.cat(outs).numpy()
