"""Retries and error mapping of the SDK's HTTP layer, against a real scripted HTTP server."""

from __future__ import annotations

import socket

import pytest

from fedfaas.client import Backoff, FedfaasClient, Retry
from fedfaas.errors import (
    BadRequest,
    CodecError,
    Conflict,
    FedfaasError,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from tests.client.conftest import ScriptedServer

NO_BACKOFF = Retry(retries=3, backoff=Backoff(base_s=0.0))


def _client(url: str, sleeps: list[float], retry: Retry = NO_BACKOFF) -> FedfaasClient:
    return FedfaasClient(url, "tok", timeout=(2, 5), retry=retry, seed=1, sleep=sleeps.append)


def test_503_is_retried_after_the_servers_retry_after(scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script(
        (503, {"Retry-After": "1"}, {"error": "unavailable", "message": "redis is down"}),
        (200, {}, {"ok": True}),
    )
    sleeps: list[float] = []
    # Execute
    body = _client(scripted_server.url, sleeps).json("GET", "/v1/jobs/j")
    # Assert
    assert body == {"ok": True}
    assert len(scripted_server.hits) == 2
    assert sleeps == [1.0]  # the backoff alone would have waited 0 s
    assert scripted_server.hits[1].headers["Authorization"] == "Bearer tok"


def test_409_is_not_retried_and_carries_the_servers_code(scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script(
        (409, {"Retry-After": "1"}, {"error": "update_exists", "message": "already accepted"}))
    sleeps: list[float] = []
    # Execute
    with pytest.raises(Conflict) as caught:
        _client(scripted_server.url, sleeps).request("POST", "/v1/jobs/j/rounds/1/updates",
                                                     data=b"x", idempotent=True)
    # Assert
    assert len(scripted_server.hits) == 1 and sleeps == []
    assert caught.value.code == "update_exists" and caught.value.status == 409
    assert "already accepted" in caught.value.message and not caught.value.retryable


@pytest.mark.parametrize(("status", "error"), [(400, BadRequest), (401, Unauthorized),
                                               (403, Forbidden)])
def test_client_errors_are_never_retried(scripted_server: ScriptedServer, status: int,
                                         error: type[FedfaasError]) -> None:
    # Prepare
    scripted_server.script((status, {}, {"error": "nope", "message": "bad"}))
    sleeps: list[float] = []
    # Execute
    with pytest.raises(error) as caught:
        _client(scripted_server.url, sleeps).json("GET", "/v1/jobs/j")
    # Assert
    assert len(scripted_server.hits) == 1 and sleeps == []
    assert caught.value.status == status and caught.value.code == "nope"


def test_codec_errors_map_to_codec_error_by_code(scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script((400, {}, {"error": "bad_update_body", "message": "truncated"}))
    # Execute / Assert
    with pytest.raises(CodecError):
        _client(scripted_server.url, []).request("POST", "/u", data=b"x", idempotent=True)


def test_502_retries_reads_but_not_non_idempotent_posts(scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script((502, {}, b"<html>bad gateway</html>"), (200, {}, {"ok": 1}))
    sleeps: list[float] = []
    client = _client(scripted_server.url, sleeps)
    # Execute
    with pytest.raises(FedfaasError) as caught:
        client.request("POST", "/v1/jobs/j/rounds")
    post_hits = len(scripted_server.hits)
    scripted_server.script((502, {}, b"<html>bad gateway</html>"), (200, {}, {"ok": 1}))
    got = client.json("GET", "/v1/jobs/j")
    # Assert
    assert post_hits == 1 and caught.value.status == 502 and caught.value.code == "http_502"
    assert "bad gateway" in caught.value.message
    assert got == {"ok": 1} and len(scripted_server.hits) == 2


def test_429_gives_up_after_the_retry_budget_with_jittered_backoff(
        scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script((429, {}, {"error": "rate_limited", "message": "slow down"}))
    sleeps: list[float] = []
    retry = Retry(retries=3, backoff=Backoff(base_s=0.5, factor=2.0, cap_s=1.5, jitter=0.5))
    # Execute
    with pytest.raises(TooManyRequests) as caught:
        _client(scripted_server.url, sleeps, retry).request("POST", "/v1/jobs")
    # Assert
    assert len(scripted_server.hits) == 4 and caught.value.retryable
    ceilings = [0.5, 1.0, 1.5]
    assert len(sleeps) == 3
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True)), sleeps


def test_unreachable_gateway_is_retried_then_unavailable() -> None:
    # Prepare: a port nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    # Execute
    with pytest.raises(Unavailable) as caught:
        _client(f"http://127.0.0.1:{port}", sleeps).request("POST", "/v1/jobs")
    # Assert: a refused connection was never sent, so even a POST is retried
    assert len(sleeps) == 3 and caught.value.code == "connection_error"
