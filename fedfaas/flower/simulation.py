"""Run a Flower app on Flower's Simulation Engine without ray: ClientApps in threads.

Flower 1.28's Simulation Engine (in-memory SuperLink state, ``InMemoryGrid``,
virtual SuperNodes with ``partition-id`` / ``num-partitions`` node configs)
takes its ClientApp runner from a pluggable ``Backend``; the only backend it
ships needs ray.  :class:`InProcessBackend` runs each ClientApp call in one of
the engine's worker threads, which is enough for small models and keeps tests
and examples free of ray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException, LoadClientAppError
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig
from flwr.server.superlink.fleet.vce.backend import supported_backends as _backends
from flwr.serverapp import ServerApp

from fedfaas.errors import BadRequest

log = logging.getLogger("fedfaas.flower")

BACKEND_NAME = "fedfaas-inprocess"
DEFAULT_WORKERS = 2


class InProcessBackend(Backend):
    """Simulation Engine backend that calls the ClientApp in the engine's worker threads.

    ``backend_config["inprocess"]["num_workers"]`` sets how many ClientApp calls
    run at once (default 2).
    """

    def __init__(self, backend_config: BackendConfig) -> None:
        super().__init__(backend_config)
        workers = (backend_config.get("inprocess") or {}).get("num_workers", DEFAULT_WORKERS)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise BadRequest(f"inprocess num_workers must be a positive integer, got {workers!r}")
        self._workers = workers
        self._app: ClientApp | None = None

    def build(self, app_fn: Callable[[], ClientApp]) -> None:
        """Load the ClientApp once; every worker shares it (its calls share no state)."""
        self._app = app_fn()

    @property
    def num_workers(self) -> int:
        """ClientApp calls that may run concurrently."""
        return self._workers

    def is_worker_idle(self) -> bool:
        """Workers are the engine's own threads, which take work only when idle."""
        return True

    def terminate(self) -> None:
        """Nothing to release: no processes were started."""
        self._app = None

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        """Run the ClientApp on ``message``; its exceptions become ``ClientAppException``."""
        if self._app is None:
            raise ValueError("call build() before processing messages")
        try:
            out = self._app(message=message, context=context)
        except LoadClientAppError:
            raise
        except Exception as exc:
            raise ClientAppException(str(exc)) from exc
        return out, context


def register_backend() -> str:
    """Make :class:`InProcessBackend` available to the Simulation Engine; returns its name."""
    _backends.setdefault(BACKEND_NAME, InProcessBackend)
    return BACKEND_NAME


def run_inprocess(server_app: ServerApp, client_app: ClientApp, num_supernodes: int,
                  num_workers: int = DEFAULT_WORKERS, verbose: bool = False) -> None:
    """Run ``server_app`` against ``num_supernodes`` virtual SuperNodes running ``client_app``.

    Raises ``RuntimeError`` (from Flower) when the ServerApp raised.
    """
    if num_supernodes < 1:
        raise BadRequest("num_supernodes must be >= 1")
    from flwr.simulation import run_simulation

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_supernodes,
                   backend_name=register_backend(),
                   backend_config={"inprocess": {"num_workers": num_workers}},
                   verbose_logging=verbose)
