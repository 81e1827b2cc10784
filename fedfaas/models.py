"""Models that FL jobs train and the non-training workloads evaluate (FLStore §5.1).

FLStore evaluates its workloads on ResNet-18 among other vision models; here
ResNet-18 is written in plain torch (torchvision has no CPU build on our
machines) with torchvision's ``state_dict`` names, so weights trained with
torchvision load unchanged.  The demo and the tests use two small models for
scikit-learn's bundled *digits* set (8x8 grey images, 10 classes), which loads
offline, plus helpers to train locally and to split the set non-IID across
clients (Dirichlet label skew, Hsu et al. 2019).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from fedfaas.codec import DTYPES, from_state_dict
from fedfaas.errors import BadRequest

DIGITS_CLASSES = 10
DIGITS_SHAPE = (1, 8, 8)


class DigitsMLP(nn.Module):
    """Multi-layer perceptron for 8x8 digits: 64 -> hidden... -> 10 with ReLU."""

    def __init__(self, hidden: Sequence[int] = (64, 32), num_classes: int = DIGITS_CLASSES) -> None:
        super().__init__()
        self.input_shape: tuple[int, ...] = (64,)
        self.num_classes = num_classes
        widths = [64, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.out = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, one 2x2 max-pool and two linear layers for 8x8 digits."""

    def __init__(self, channels: Sequence[int] = (16, 32), hidden: int = 64,
                 num_classes: int = DIGITS_CLASSES) -> None:
        super().__init__()
        if len(channels) != 2:
            raise BadRequest("digits-cnn 'channels' must list exactly two widths")
        self.input_shape: tuple[int, ...] = DIGITS_SHAPE
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, channels[0], 3, padding=1)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, padding=1)
        self.fc1 = nn.Linear(channels[1] * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *DIGITS_SHAPE)
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convolutions and a shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's layout and parameter names (11.7M parameters at 1000 classes).

    Parameters
    ----------
    num_classes
        Width of the final ``fc`` layer.
    in_channels
        Input image channels.
    image_size
        Side of the square input images (only used to validate inference batches).
    small_input
        Use a 3x3 stride-1 stem without max-pool (the usual CIFAR variant); the
        parameter names stay the same, only ``conv1.weight``'s shape changes.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 small_input: bool = False) -> None:
        super().__init__()
        self.input_shape: tuple[int, ...] = (in_channels, image_size, image_size)
        self.num_classes = num_classes
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, 64, 1)
        self.layer2 = self._make_layer(64, 128, 2)
        self.layer3 = self._make_layer(128, 256, 2)
        self.layer4 = self._make_layer(256, 512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _make_layer(inplanes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model registry."""

    name: str
    factory: Callable[..., nn.Module]
    summary: str


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("digits-mlp", DigitsMLP, "MLP for 8x8 digits (64-64-32-10)"),
        ModelInfo("digits-cnn", DigitsCNN, "small CNN for 8x8 digits"),
        ModelInfo("resnet18", ResNet18, "ResNet-18, torchvision layout"),
    )
}


def build_model(name: str, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate a registered model in eval mode; ``seed`` makes its initial weights reproducible.

    Raises :class:`BadRequest` for an unknown name or arguments the model does not take.
    """
    info = MODELS.get(name)
    if info is None:
        raise BadRequest(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    # fork_rng keeps a seeded build from disturbing the caller's global torch RNG.
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = info.factory(**kwargs)
        except TypeError as exc:
            raise BadRequest(f"bad arguments for model {name!r}: {exc}") from None
    return model.eval()


def load_state(model: nn.Module, tensors: Mapping[str, np.ndarray]) -> nn.Module:
    """Load decoded arrays into ``model`` after checking every name and shape.

    Dtypes are cast to the model's (bfloat16 and float16 updates load into a
    float32 model).  Raises :class:`BadRequest` naming what does not fit.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise BadRequest(
            f"model weights do not fit {type(model).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise BadRequest(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                             f"the model expects {tuple(ref.shape)}")
    # Each array is copied straight into the model's tensor (a large model would
    # otherwise be copied twice). The arrays are often read-only views of a
    # decoded body; torch only reads them here, so its warning does not apply.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, ref in expected.items():
            arr = np.asarray(tensors[name])
            src = (torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
                   if arr.dtype == DTYPES["bfloat16"] else torch.from_numpy(arr))
            ref.copy_(src)
    return model


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict`` as writable numpy copies, in order."""
    return {k: np.array(v) for k, v in from_state_dict(model.state_dict()).items()}


def train_local(model: nn.Module, X: np.ndarray, y: np.ndarray, epochs: int = 1,
                lr: float = 0.05, seed: int = 0, *, batch_size: int = 32,
                momentum: float = 0.9) -> dict[str, float]:
    """Train ``model`` in place with mini-batch SGD; returns the last epoch's mean loss.

    Batch order comes from a generator seeded with ``seed``, so a run is
    reproducible without touching torch's global RNG.
    """
    if len(X) != len(y) or len(X) == 0:
        raise BadRequest(f"training data needs as many labels as inputs (got {len(X)}, {len(y)})")
    xs = torch.as_tensor(np.asarray(X, dtype=np.float32))
    ys = torch.as_tensor(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    last = math.nan
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(xs), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        last = total / count
    model.eval()
    return {"loss": last, "num_examples": float(len(xs)), "epochs": float(epochs)}


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities of ``model`` for inputs ``X`` (float64, rows sum to 1)."""
    model.eval()
    xs = torch.as_tensor(np.asarray(X, dtype=np.float32))
    out = [F.softmax(model(xs[i:i + batch_size]).double(), dim=1)
           for i in range(0, len(xs), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean cross-entropy loss of ``model`` on ``(X, y)``."""
    proba = predict_proba(model, X)
    labels = np.asarray(y, dtype=np.int64)
    acc = float(np.mean(proba.argmax(axis=1) == labels))
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, None))))
    return acc, loss


# --- digits data and client splits ---------------------------------------------------


@dataclass(frozen=True)
class Digits:
    """Digits split into train and test; inputs are float32 in [0, 1], shape (N, 64)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_dataset(test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's digits (1,797 images), shuffled with ``seed`` and split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Digits(X[train], y[train], X[test], y[test])


def iid_split(num_items: int, num_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffle ``range(num_items)`` and cut it into ``num_clients`` near-equal index arrays."""
    if not 1 <= num_clients <= num_items:
        raise BadRequest(f"cannot split {num_items} items across {num_clients} clients")
    order = np.random.default_rng(seed).permutation(num_items)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet_split(labels: np.ndarray, num_clients: int, alpha: float, seed: int = 0,
                    min_size: int = 1, max_tries: int = 100) -> list[np.ndarray]:
    """Label-skewed split: each class is shared across clients by Dir(alpha) proportions.

    Small ``alpha`` gives each client few classes; large ``alpha`` tends to IID.
    Draws again (up to ``max_tries``) until every client holds ``min_size`` items.
    """
    labels = np.asarray(labels)
    if alpha <= 0 or num_clients < 1 or num_clients * min_size > len(labels):
        raise BadRequest("dirichlet_split needs alpha > 0 and enough items for every client")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(idx))
            for client, chunk in enumerate(np.split(idx, cuts.astype(int))):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise BadRequest(f"no Dirichlet split with >= {min_size} items per client after "
                     f"{max_tries} draws; raise alpha or lower min_size")
