"""The gateway's HTTP front: nginx, a buffering reverse proxy before gunicorn.

Why it exists: gunicorn's gthread worker gives each connection a thread for the
whole request and reads the body inside the handler with no read timeout, so a
few hundred idle sockets, or uploads that stall after a few bytes, hold every
thread and ``/healthz`` goes unanswered.  nginx reads every request whole first
(``proxy_request_buffering on``): headers and body within bounded times, at most
``max_conns_per_addr`` requests in progress per client address and
``max_connections`` connections in all, a 413 from the declared length before
any body byte is read, and a 400 for malformed framing.  gunicorn only sees
complete, well-formed requests, so none of its threads waits on a client.

Every error nginx raises itself (malformed request, 413, 414, 431, 429, and
502/503/504 while gunicorn is down or restarting) is answered with the
gateway's own JSON error shape, ``{"error": code, "message": ...}``; the
gateway's answers pass through unchanged.  A request that times out is closed
without an answer (nginx never writes a 408 to a client that stopped sending).

The same :func:`render` writes the local stack's config and the one deployed
on Kubernetes and faasd (``python -m fedfaas.devstack.localstack.frontend --help``;
docs/gateway-frontend.md explains every limit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

NGINX_PACKAGE = "nginx-light"
"""The Debian package that provides ``nginx`` (``make setup`` installs it)."""
SBIN_PATH = "/usr/sbin:/usr/local/sbin"
"""Where nginx also is looked for (Debian installs it there, often off a user's PATH)."""
SOCKET_NAME = "gateway.sock"
# A unix socket path is limited to 108 bytes (sun_path); beyond this, use loopback TCP.
MAX_SOCKET_PATH = 100
# Each proxied request holds two nginx connections: the client's and gunicorn's.
CONNECTIONS_PER_REQUEST = 2
RETRY_AFTER_S = 2
ERROR_PREFIX = "/_fedfaas_frontend_error/"


class FrontendMissing(RuntimeError):
    """nginx is not installed."""


@dataclass(frozen=True)
class FrontendLimits:
    """Limits nginx enforces before gunicorn sees a request (defaults are for production).

    Times are in whole seconds, sizes in bytes.  ``max_body_bytes`` of None means
    the gateway's own limit (``FEDFAAS_MAX_BODY_BYTES``), which the gateway also
    keeps checking.
    """

    client_header_timeout_s: int = 10
    """Whole request line and headers, counted from the connection's first byte."""
    client_body_timeout_s: int = 30
    """Between two reads of the body (nginx has no whole-body deadline)."""
    send_timeout_s: int = 60
    """Between two writes of the response to the client."""
    keepalive_timeout_s: int = 30
    """An idle keep-alive connection between two requests."""
    max_conns_per_addr: int = 64
    """Requests in progress per client address (``limit_conn``); beyond it, 429."""
    max_connections: int = 2048
    """Client connections in all (``worker_connections`` of the single worker)."""
    header_buffer_bytes: int = 8192
    """Longest request line (414 beyond) and longest header line (431 beyond)."""
    header_buffers: int = 4
    """Request line and headers together stay within ``header_buffers * header_buffer_bytes``."""
    body_buffer_bytes: int = 1024 * 1024
    """A body up to this size stays in memory; a larger one goes to a temp file."""
    upstream_read_timeout_s: int = 310
    """Longest gunicorn may take to answer (its worker timeout is 300 s)."""
    max_body_bytes: int | None = None


@dataclass(frozen=True)
class FrontendSite:
    """Where nginx listens, where gunicorn is, and where nginx keeps its files."""

    listen: str
    """``host:port`` (or a port) for clients."""
    upstream: str
    """gunicorn's address as nginx names it: ``unix:/path`` or ``host:port``."""
    run_dir: Path
    """Pid file and temp folders (request bodies waiting for gunicorn, large responses)."""
    error_log: str = "stderr"
    user: str | None = None
    """``user`` directive (only meaningful when nginx starts as root)."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of load balancers whose ``X-Forwarded-For`` names the real client address."""


# Status -> (code, message) of the JSON body; codes are the gateway's own where it has one.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "malformed HTTP request (request line, headers, Content-Length or chunked framing)"),
    408: ("request_timeout", "the request was not received in time"),
    411: ("length_required", "a request body needs Content-Length or chunked framing"),
    413: ("payload_too_large", "request body exceeds the gateway's limit of {max_body} bytes"),
    414: ("request_uri_too_long", "request line longer than {header_buffer} bytes"),
    429: ("rate_limited", "too many requests in progress from this address; retry later"),
    431: ("request_header_fields_too_large", "request headers exceed {header_buffer} bytes per line "
          "or {header_total} bytes in all"),
    500: ("internal_error", "unexpected error in the gateway's HTTP front"),
    503: ("unavailable", "the gateway is starting or restarting; retry later"),
    504: ("gateway_timeout", "the gateway did not answer in time; retry later"),
    505: ("http_version_not_supported", "HTTP version not supported"),
}
# nginx status -> status the client gets (501: unknown Transfer-Encoding is bad input;
# 494: nginx's own "header too large"; 502: gunicorn refused the connection, i.e. down).
_REMAP = {501: 400, 494: 431, 502: 503}
_RETRY_AFTER = {429: 1, 503: RETRY_AFTER_S, 504: RETRY_AFTER_S}


def nginx_binary() -> str:
    """Path of the ``nginx`` binary; :class:`FrontendMissing` names the package when absent."""
    found = shutil.which("nginx") or shutil.which("nginx", path=SBIN_PATH)
    if not found:
        raise FrontendMissing(f"nginx is not installed; the gateway's HTTP front needs it: install the "
                              f"Debian package {NGINX_PACKAGE} (apt-get install {NGINX_PACKAGE}, or "
                              f"`make setup` as root)")
    return found


def upstream_address(data_dir: Path, port: int) -> str:
    """gunicorn's address for nginx: a unix socket in ``data_dir``, else loopback ``port``."""
    sock = data_dir / "run" / SOCKET_NAME
    return f"unix:{sock}" if len(str(sock)) <= MAX_SOCKET_PATH else f"127.0.0.1:{port}"


def _json_location(status: int, limits: FrontendLimits) -> str:
    code, message = _ERRORS[status]
    header_total = limits.header_buffers * limits.header_buffer_bytes
    text = message.format(max_body=limits.max_body_bytes, header_buffer=limits.header_buffer_bytes,
                          header_total=header_total)
    body = json.dumps({"error": code, "message": text}, separators=(",", ":")).replace("'", "\\'")
    lines = [f"        location = {ERROR_PREFIX}{status} {{", "            internal;",
             "            default_type application/json;"]
    if status in _RETRY_AFTER:
        lines.append(f"            add_header Retry-After {_RETRY_AFTER[status]} always;")
    lines += [f"            return {status} '{body}\\n';", "        }"]
    return "\n".join(lines)


def _error_pages() -> str:
    # URIs, not named locations: nginx cannot redirect to a named location while the
    # request line itself is what failed (a 400 for garbage, a 414).
    own = [f"        error_page {s} ={s} {ERROR_PREFIX}{s};" for s in _ERRORS]
    remapped = [f"        error_page {s} ={to} {ERROR_PREFIX}{to};" for s, to in _REMAP.items()]
    return "\n".join(own + remapped)


def render(site: FrontendSite, limits: FrontendLimits) -> str:
    """The whole ``nginx.conf`` (no ``daemon`` line: run it with ``-g 'daemon off;'``)."""
    if limits.max_body_bytes is None:
        raise ValueError("FrontendLimits.max_body_bytes must be the gateway's limit")
    run = site.run_dir
    worker_connections = limits.max_connections * CONNECTIONS_PER_REQUEST + 64
    realip = "".join(f"    set_real_ip_from {cidr};\n" for cidr in site.trusted_proxies)
    if realip:
        realip += "    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;\n"
    user = f"user {site.user};\n" if site.user else ""
    proxy = """            proxy_pass http://fedfaas_gateway;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Real-IP $remote_addr;"""
    return f"""# Written by fedfaas.devstack.localstack.frontend; see docs/gateway-frontend.md.
{user}worker_processes 1;
worker_rlimit_nofile {worker_connections * 2};
pid {run}/nginx.pid;
error_log {site.error_log} warn;

events {{
    worker_connections {worker_connections};
}}

http {{
    access_log off;
    server_tokens off;
    charset off;
    sendfile on;
    tcp_nodelay on;
    client_body_temp_path {run}/body 1 2;
    proxy_temp_path {run}/proxy 1 2;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;

    client_header_timeout {limits.client_header_timeout_s}s;
    client_body_timeout {limits.client_body_timeout_s}s;
    send_timeout {limits.send_timeout_s}s;
    keepalive_timeout {limits.keepalive_timeout_s}s;
    reset_timedout_connection on;
    lingering_time 10s;
    client_header_buffer_size 1k;
    large_client_header_buffers {limits.header_buffers} {limits.header_buffer_bytes};
    client_max_body_size {limits.max_body_bytes};
    client_body_buffer_size {limits.body_buffer_bytes};

    limit_conn_zone $binary_remote_addr zone=fedfaas_per_addr:10m;
    limit_conn_status 429;
    limit_conn_log_level warn;
{realip}
    upstream fedfaas_gateway {{
        server {site.upstream} max_fails=0;
    }}

    server {{
        listen {site.listen} backlog=1024;

        # The whole body is read (memory, then a temp file) before gunicorn is called.
        proxy_request_buffering on;
        # Responses too: a slow reader holds an nginx connection, not a gunicorn thread.
        proxy_buffering on;
        proxy_buffers 16 64k;
        proxy_connect_timeout 5s;
        proxy_send_timeout {limits.upstream_read_timeout_s}s;
        proxy_read_timeout {limits.upstream_read_timeout_s}s;
        # One gateway per front; a POST is never sent twice.
        proxy_next_upstream off;

        # Probes: not counted against the per-address limit.
        location = /healthz {{
{proxy}
        }}

        location = /readyz {{
{proxy}
        }}

        location / {{
            limit_conn fedfaas_per_addr {limits.max_conns_per_addr};
{proxy}
        }}

{_error_pages()}

{chr(10).join(_json_location(s, limits) for s in _ERRORS)}
    }}
}}
"""


def nginx_argv(conf: Path, run_dir: Path) -> list[str]:
    """Command line of a foreground nginx using ``conf``."""
    return [nginx_binary(), "-p", str(run_dir), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]


def root_user() -> str | None:
    """``user`` directive value keeping the workers as the current user when started as root."""
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def write_config(run_dir: Path, listen: str, upstream: str, limits: FrontendLimits) -> Path:
    """Write ``<run_dir>/nginx.conf`` for the local stack; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)  # nginx makes the temp folders inside
    site = FrontendSite(listen=listen, upstream=upstream, run_dir=run_dir, user=root_user())
    path = run_dir / "nginx.conf"
    path.write_text(render(site, limits))
    return path


def main(argv: list[str] | None = None) -> None:
    """Print the nginx.conf for a deployment (Kubernetes ConfigMap, faasd bind mount)."""
    parser = argparse.ArgumentParser(prog="python -m fedfaas.devstack.localstack.frontend",
                                     description=main.__doc__)
    parser.add_argument("--listen", default="8080")
    parser.add_argument("--upstream", default="127.0.0.1:8000", help="gunicorn's host:port")
    parser.add_argument("--run-dir", default="/tmp/nginx", help="pid file and temp folders")
    parser.add_argument("--max-body-bytes", type=int, default=None,
                        help="the gateway's FEDFAAS_MAX_BODY_BYTES (default: its default)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                        help="load balancer whose X-Forwarded-For is believed (repeatable)")
    args = parser.parse_args(argv)
    from fedfaas.config import Settings

    limits = replace(FrontendLimits(), max_body_bytes=args.max_body_bytes or Settings.max_body_bytes)
    site = FrontendSite(listen=args.listen, upstream=args.upstream, run_dir=Path(args.run_dir),
                        trusted_proxies=tuple(args.trusted_proxy))
    print(render(site, limits), end="")


if __name__ == "__main__":
    main()
