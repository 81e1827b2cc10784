"""The S3 object store and the Redis client against the real servers of the local stack."""

from __future__ import annotations

import pytest

from fedfaas.config import Settings
from fedfaas.errors import NotFound, Unavailable
from fedfaas.meta import connect
from fedfaas.store import ObjectStore, digest


def test_put_get_stat_list_delete(s3_settings: Settings) -> None:
    # Prepare
    store = ObjectStore(s3_settings)
    body = bytes(range(256)) * 1000
    # Execute
    stored = store.put("tests/store/a.bin", memoryview(body))
    # Assert
    assert stored.size == len(body)
    assert store.get("tests/store/a.bin") == body
    assert store.stat("tests/store/a.bin").size == len(body)  # type: ignore[union-attr]
    assert "tests/store/a.bin" in list(store.list("tests/store/"))
    store.delete("tests/store/a.bin")
    assert not store.exists("tests/store/a.bin")
    with pytest.raises(NotFound):
        store.get("tests/store/a.bin")


def test_wrong_credentials_are_refused(s3_settings: Settings) -> None:
    store = ObjectStore(_with(s3_settings, s3_secret_key="wrong"))
    with pytest.raises(Unavailable):
        store.get("tests/store/none")


def test_unreachable_s3_is_unavailable_quickly() -> None:
    store = ObjectStore(Settings(s3_endpoint="127.0.0.1:9", s3_timeout_s=1.0))
    assert not store.healthy()
    with pytest.raises(Unavailable):
        store.put("x", b"1")


def test_health_probe_answers_quickly_when_s3_hangs(s3_settings: Settings) -> None:
    # A server that accepts connections and never answers (a frozen S3): requests wait
    # out the 30 s S3 timeout and its retries, the readiness probe only HEALTH_TIMEOUT_S.
    import socket
    import time

    from fedfaas import store as store_module

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        port = hung.getsockname()[1]
        store = ObjectStore(_with(s3_settings, s3_endpoint=f"127.0.0.1:{port}", s3_timeout_s=30.0))
        started = time.monotonic()
        assert not store.healthy()
        assert time.monotonic() - started < store_module.HEALTH_TIMEOUT_S + 2.0
    assert ObjectStore(s3_settings).healthy()


def test_s3_answering_503_is_unhealthy_and_unavailable(s3_settings: Settings) -> None:
    # An S3 front answering 503 with no S3 error body (overloaded, or a proxy before it).
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Busy(BaseHTTPRequestHandler):
        def _busy(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = _busy  # noqa: N815 (http.server's method names)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = ObjectStore(_with(s3_settings, s3_endpoint=f"127.0.0.1:{server.server_port}",
                                    s3_timeout_s=2.0))
        assert not store.healthy()
        with pytest.raises(Unavailable):
            store.get("tests/store/x")
    finally:
        server.shutdown()
        server.server_close()


def test_redis_client_round_trip(s3_settings: Settings) -> None:
    client = connect(s3_settings)
    client.set("tests:key", b"v")
    assert client.get("tests:key") == b"v"


def test_digest_is_stable() -> None:
    assert digest(b"abc") == digest(memoryview(b"abc"))


def test_signed_put_is_verified_by_s3(s3_settings: Settings) -> None:
    # Prepare
    store = ObjectStore(s3_settings)
    body = b"payload" * 1000
    # Execute
    store.put("tests/store/signed.bin", body, sha256=digest(body), metadata={"digest": digest(body)})
    # Assert
    assert store.get("tests/store/signed.bin") == body
    assert store.stat("tests/store/signed.bin").size == len(body)  # type: ignore[union-attr]


def test_signed_put_with_wrong_credentials_is_refused(s3_settings: Settings) -> None:
    store = ObjectStore(_with(s3_settings, s3_secret_key="wrong"))
    with pytest.raises(Unavailable):
        store.put("tests/store/denied.bin", b"x", sha256=digest(b"x"))


def _with(settings: Settings, **changes: object) -> Settings:
    """``settings`` with ``changes`` (Settings is a frozen pydantic model)."""
    return settings.model_copy(update=changes)
