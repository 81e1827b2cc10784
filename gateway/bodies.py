"""Request bodies and the gateway's size limit (``FEDFAAS_MAX_BODY_BYTES``).

A body over the limit gets a 413 JSON answer, and two details make that answer
reliable:

- Werkzeug refuses a too-long ``Content-Length`` itself, but cuts a chunked
  body at the limit without a word; :func:`read_body` looks for more bytes on
  the wire so a cut body is a 413, never a "truncated update" 400.
- A server that answers before reading the whole body and then closes makes
  the client's TCP stack reset the connection, which can destroy the answer
  before the client reads it.  :func:`discard_rest` reads and drops the rest
  (bounded in bytes and time, never buffered) so the 413 arrives.
"""

from __future__ import annotations

import contextlib
import time

from flask import current_app, request

from fedfaas.errors import PayloadTooLarge

DISCARD_MAX_BYTES = 64 * 1024**2
DISCARD_MAX_S = 10.0
_CHUNK = 256 * 1024


def read_body() -> bytes:
    """The whole request body; :class:`PayloadTooLarge` when it exceeds the limit."""
    data = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and len(data) >= limit and request.content_length is None \
            and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(f"request body exceeds the gateway's limit of {limit} bytes")
    return data


def discard_rest(max_bytes: int = DISCARD_MAX_BYTES, max_s: float = DISCARD_MAX_S) -> int:
    """Read and drop what is left of the request body; returns the bytes dropped."""
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return 0
    dropped = 0
    deadline = time.monotonic() + max_s
    with contextlib.suppress(OSError, ValueError):
        while dropped < max_bytes and time.monotonic() < deadline:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            dropped += len(chunk)
    return dropped
