"""One replica of an OpenFaaS ``python3-http`` function, run as a local process.

Mirrors the template's ``index.py`` (Flask app served by waitress, of-watchdog
http mode): the handler folder is laid out as the package ``function`` next to
the app, ``function.handler`` is imported once, and every request on any path
calls ``handler.handle(event, context)``.  The process lives between calls, so
module-level state survives, as on OpenFaaS.

Differences from the stock template, all on the safe side:

- a ``bytes`` body is sent as-is (the template sends ``str(body)``);
- a handler exception answers 500 with a JSON error and logs the traceback;
- ``/_/health`` answers 200 once the handler is imported (of-watchdog's path).

Usage::

    python -m fedfaas.devstack.faas.instance --handler-dir functions/echo --port 5000
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from flask import Flask, Response, jsonify, request
from waitress import create_server

HEALTH_PATH = "/_/health"
TEMPLATE_METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE"]
_PR_SET_PDEATHSIG = 1


class Event:
    """The request as the handler sees it (same attributes as the template's ``Event``)."""

    def __init__(self) -> None:
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    """Call context; ``hostname`` names the replica like a pod name."""

    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME", "localhost")


def build_overlay(handler_dir: Path, copy_paths: Iterable[Path], app_dir: Path) -> Path:
    """Lay out ``app_dir/function`` as faas-cli does in the image, with symlinks.

    The handler folder's entries and every ``configuration.copy`` path become
    entries of ``function/``; an empty ``__init__.py`` is added when the handler
    has none (the template's Dockerfile touches one).  Returns ``app_dir``.
    """
    function_dir = app_dir / "function"
    if function_dir.exists():
        shutil.rmtree(function_dir)
    function_dir.mkdir(parents=True)
    for entry in handler_dir.iterdir():
        if entry.name != "__pycache__":
            (function_dir / entry.name).symlink_to(entry.resolve())
    for path in copy_paths:
        target = function_dir / path.name
        if not target.exists():
            target.symlink_to(path.resolve())
    init = function_dir / "__init__.py"
    if not init.exists():
        init.touch()
    return app_dir


def import_handler(app_dir: Path) -> ModuleType:
    """Import ``function.handler`` from ``app_dir`` the way the template's index.py does."""
    sys.path.insert(0, str(app_dir))
    module = importlib.import_module("function.handler")
    if not callable(getattr(module, "handle", None)):
        raise TypeError(f"{module.__file__} defines no handle(event, context) function")
    return module


def create_app(handler: ModuleType) -> Flask:
    """The Flask app that routes every method and path to ``handler.handle``."""
    app = Flask("fedfaas.devstack.faas.instance")

    @app.route(HEALTH_PATH, methods=["GET"])
    def health() -> tuple[str, int]:
        return "OK", 200

    @app.route("/", defaults={"path": ""}, methods=TEMPLATE_METHODS)
    @app.route("/<path:path>", methods=TEMPLATE_METHODS)
    def call_handler(path: str) -> Any:
        try:
            return format_response(handler.handle(Event(), Context()))
        except Exception as exc:  # the handler's bug must not take the replica down
            traceback.print_exc()
            body = {"error": "function_error", "message": f"{type(exc).__name__}: {exc}"}
            return jsonify(body), 500

    return app


def format_response(resp: Any) -> Any:
    """Turn a handler's return value into a Flask response, as the template does."""
    if resp is None:
        return "", 200
    if not isinstance(resp, dict):
        return resp
    return _format_body(resp), resp.get("statusCode", 200), _format_headers(resp)


def _format_body(resp: dict[str, Any]) -> Response | str | bytes:
    if "body" not in resp:
        return ""
    body = resp["body"]
    if isinstance(body, dict):
        return jsonify(body)
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return str(body)


def _format_headers(resp: dict[str, Any]) -> Any:
    headers = resp.get("headers")
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return headers


def die_with_parent(parent_pid: int) -> None:
    """Make sure this replica never outlives the router that started it.

    On Linux the kernel sends SIGKILL when the parent exits
    (``PR_SET_PDEATHSIG``); elsewhere a thread polls the parent pid.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The parent may have died before prctl took effect: then we were reparented already.
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler-dir", type=Path, required=True)
    parser.add_argument("--copy", type=Path, action="append", default=[])
    parser.add_argument("--app-dir", type=Path, help="where to lay out function/ (default: tmp)")
    parser.add_argument("--host", default="127.0.0.1")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="port to bind")
    where.add_argument("--fd", type=int, help="inherited bound TCP socket to listen on")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--parent-pid", type=int, help="exit when this process exits")
    parser.add_argument("--secrets-dir", type=Path, help="sets FEDFAAS_SECRETS_DIR")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fedfaas.devstack.faas.instance``."""
    args = _parse_args(argv)
    # Exit through SystemExit so the finally blocks run when the router stops us.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    if args.secrets_dir is not None:
        os.environ["FEDFAAS_SECRETS_DIR"] = str(args.secrets_dir)
    own_app_dir = args.app_dir is None
    app_dir = Path(tempfile.mkdtemp(prefix="fedfaas-fn-")) if own_app_dir else args.app_dir
    try:
        handler_dir = args.handler_dir.resolve()
        if not (handler_dir / "handler.py").is_file():
            print(f"no handler.py in {handler_dir}", file=sys.stderr)
            return 2
        build_overlay(handler_dir, args.copy, app_dir)
        os.chdir(app_dir)
        app = create_app(import_handler(app_dir))
        if args.fd is not None:
            sock = socket.socket(fileno=args.fd)
            server = create_server(app, sockets=[sock], threads=args.threads)
        else:
            server = create_server(app, host=args.host, port=args.port, threads=args.threads)
        print(json.dumps({"event": "listening", "pid": os.getpid()}), file=sys.stderr, flush=True)
        server.run()
        return 0
    finally:
        if own_app_dir:
            shutil.rmtree(app_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
