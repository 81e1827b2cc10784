"""Tunables of the local OpenFaaS-compatible router, shared by its CLI and its launcher.

Defaults follow OpenFaaS where OpenFaaS has one (of-watchdog's 10 s
``exec_timeout``, Community Edition's 5 replicas per function); the local
scale-to-zero idle time stands in for OpenFaaS Pro's
``com.openfaas.scale.zero-duration``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

DEFAULT_NAMESPACE = "openfaas-fn"


@dataclass(frozen=True)
class RouterOptions:
    """Global settings of the router; per-function labels override the scaling ones.

    Attributes
    ----------
    scale_zero
        Whether functions without a ``com.openfaas.scale.zero`` label may scale to zero.
    idle_s
        Idle time before scale-to-zero, and the window the autoscaler looks back over.
    instance_concurrency
        In-flight calls per replica when the function sets no ``max_inflight``.
    exec_timeout_s
        Call timeout when the function sets no ``exec_timeout``/``write_timeout``.
    upstream_timeout_s
        Gateway cap on every call (OpenFaaS ``upstream_timeout``).
    replica_cap
        Most replicas any function may have (OpenFaaS CE allows 5).
    start_timeout_s
        How long a replica may take to answer ``/_/health`` after it is spawned.
    queue_timeout_s
        How long a call may wait for a free replica (including a cold start).
    max_waiting
        Calls that may wait for a replica per function before the router answers 429.
    grace_s
        Time between SIGTERM and SIGKILL when stopping a replica.
    async_workers, async_queue_size
        Concurrency and bound of the ``/async-function`` queue.
    callback_timeout_s, callback_retries
        Timeout of one ``X-Callback-Url`` POST and how often a failed one is retried.
    max_body_bytes
        Largest request body the router accepts.
    namespace
        Namespace reported by ``/system/functions`` and used in metric labels.
    """

    scale_zero: bool = True
    idle_s: float = 300.0
    instance_concurrency: int = 4
    exec_timeout_s: float = 10.0
    upstream_timeout_s: float = 300.0
    replica_cap: int = 5
    start_timeout_s: float = 60.0
    queue_timeout_s: float = 60.0
    max_waiting: int = 1000
    grace_s: float = 5.0
    async_workers: int = 8
    async_queue_size: int = 1000
    callback_timeout_s: float = 10.0
    callback_retries: int = 3
    max_body_bytes: int = 1024**3
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        positive = (
            "idle_s",
            "instance_concurrency",
            "exec_timeout_s",
            "upstream_timeout_s",
            "replica_cap",
            "start_timeout_s",
            "queue_timeout_s",
            "max_waiting",
            "grace_s",
            "async_workers",
            "async_queue_size",
            "callback_timeout_s",
            "max_body_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"router option {name} must be positive")
        if self.callback_retries < 0:
            raise ValueError("router option callback_retries must not be negative")

    def to_args(self) -> list[str]:
        """Command-line flags that rebuild these options in the router process."""
        args: list[str] = []
        for item in fields(self):
            value = getattr(self, item.name)
            flag = "--" + item.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Declare one flag per option on ``parser``."""
        defaults = cls()
        for item in fields(cls):
            value = getattr(defaults, item.name)
            flag = "--" + item.name.replace("_", "-")
            if isinstance(value, bool):
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
            else:
                parser.add_argument(flag, type=type(value), default=value)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> RouterOptions:
        """Options from parsed flags (see :meth:`add_arguments`)."""
        return cls(**{item.name: getattr(ns, item.name) for item in fields(cls)})
