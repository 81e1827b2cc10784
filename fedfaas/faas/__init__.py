"""Local OpenFaaS-compatible runtime: every function of ``stack.yml`` as processes behind a router.

The same ``handler.py`` files run here and on OpenFaaS (``python3-http``
template).  Entry points for the rest of fedfaas:

- :func:`load_stack` parses a stack file into :class:`FunctionSpec` objects;
- :func:`start_router` / :func:`stop_router` run the router process;
- :class:`FaasClient` calls functions and the gateway's ``/system`` API.
"""

from fedfaas.faas.client import FaasClient
from fedfaas.faas.control import (
    RouterProcess,
    kill_leftovers,
    read_router_info,
    start_router,
    stop_router,
)
from fedfaas.faas.options import RouterOptions
from fedfaas.faas.stackfile import FunctionSpec, StackFile, StackFileError, load_stack

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
