"""Local OpenFaaS-compatible runtime: every function of ``stack.yml`` as processes behind a router.

The same ``handler.py`` files run here and on OpenFaaS (``python3-http``
template, of-watchdog http mode).  Entry points for the rest of fedfaas:

- :func:`load_stack` parses a stack file into :class:`FunctionSpec` objects;
- :func:`start_router` / :func:`stop_router` run the router process
  (``python -m fedfaas.devstack.faas.router``), :func:`kill_leftovers` cleans up after
  one that died;
- :class:`FaasClient` calls functions and the gateway's ``/system`` API.

Where the local runtime knowingly differs from OpenFaaS:

- the scale-to-zero labels (``com.openfaas.scale.zero``, ``-duration``) are
  honoured, as OpenFaaS Pro does; Community Edition ignores them;
- calls beyond a replica's ``max_inflight`` wait in the router for a slot or
  a new replica, where of-watchdog would answer 429;
- a ``bytes`` body returned by a handler is sent as-is (the stock template
  sends ``str(body)``);
- async calls are queued in memory (like CE's in-memory NATS);
- a function's ``requirements.txt`` is not installed: replicas run on the
  router's interpreter and virtualenv.
"""

from fedfaas.devstack.faas.control import (
    RouterProcess,
    kill_leftovers,
    read_router_info,
    start_router,
    stop_router,
)
from fedfaas.devstack.faas.options import RouterOptions
from fedfaas.openfaas.client import FaasClient
from fedfaas.openfaas.stackfile import FunctionSpec, StackFile, StackFileError, load_stack

__all__ = [
    "FaasClient",
    "FunctionSpec",
    "RouterOptions",
    "RouterProcess",
    "StackFile",
    "StackFileError",
    "kill_leftovers",
    "load_stack",
    "read_router_info",
    "start_router",
    "stop_router",
]
