"""Tokens are stored hashed, and secrets come from OpenFaaS secret files, not the environment."""

from __future__ import annotations

import hashlib
import stat
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis

from fedfaas import codec
from fedfaas.config import load_settings
from fedfaas.devstack.localstack.stack import LocalStack
from tests.conftest import Api

pytestmark = pytest.mark.stack


def _everything_in_redis(client: Any) -> bytes:
    """Every key name and value of the database, concatenated."""
    out = bytearray()
    for key in client.scan_iter(count=1000):
        out += key + b"\n"
        kind = client.type(key)
        if kind == b"string":
            out += client.get(key) or b""
        elif kind == b"hash":
            for k, v in client.hgetall(key).items():
                out += k + b"=" + v + b"\n"
        elif kind == b"set":
            out += b"\n".join(client.smembers(key))
        elif kind == b"list":
            out += b"\n".join(client.lrange(key, 0, -1))
        elif kind == b"zset":
            out += b"\n".join(client.zrange(key, 0, -1))
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                out += b"\n".join(k + b"=" + v for k, v in fields.items())
        out += b"\n"
    return bytes(out)


def test_no_raw_token_is_stored_in_redis(api: Api, api_stack: LocalStack) -> None:
    # Prepare
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin = api.call("POST", "/v1/tenants", api.admin_token, json={"tenant": tenant}).json()["admin_token"]
    job = api.call("POST", "/v1/jobs", admin, json={"model": {"name": "m", "size_bytes": 8}}).json()
    party = api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                     json={"party_id": "alice"}).json()["token"]
    api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", admin)
    api.call("POST", f"/v1/jobs/{job['job_id']}/rounds/1/updates", party,
             data=codec.encode({"w": np.ones(2, np.float32)}, {"num_examples": 1}))
    tokens = [api.admin_token, admin, job["enrollment_token"], party]
    client = redis.Redis.from_url(api_stack.env()["FEDFAAS_REDIS_URL"], socket_timeout=10)
    # Execute
    dump = _everything_in_redis(client)
    # Assert
    for token in tokens:
        assert token.encode() not in dump
    for token in tokens[1:]:
        assert client.exists(f"ff:token:{hashlib.sha256(token.encode()).hexdigest()}")
    assert api.call("GET", f"/v1/jobs/{job['job_id']}", admin).status_code == 200
    hashed = hashlib.sha256(admin.encode()).hexdigest()
    assert api.call("GET", f"/v1/jobs/{job['job_id']}", hashed).status_code == 401


def test_secrets_live_in_private_files_and_not_in_the_gateways_environment(api_stack: LocalStack) -> None:
    # Prepare
    folder = Path(api_stack.env()["FEDFAAS_SECRETS_DIR"])
    names = ["fedfaas-admin-token", "fedfaas-internal-token", "s3-secret-key", "basic-auth-password"]
    gateway = psutil.Process(int(api_stack.read_state()["pids"]["gateway"]))  # type: ignore[index]
    # Execute
    environments = [p.environ() for p in [gateway, *gateway.children(recursive=True)]]
    # Assert
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in names:
        path = folder / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        secret = path.read_text().strip()
        assert len(secret) >= 16, name
        for env in environments:
            assert secret not in "\n".join(env.values()), name
    assert all(env.get("FEDFAAS_SECRETS_DIR") == str(folder) for env in environments)


def test_settings_read_openfaas_secret_files_before_the_environment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    (tmp_path / "s3-secret-key").write_text("from-the-file\n")
    (tmp_path / "fedfaas-admin-token").write_text("root-token-file")
    monkeypatch.setenv("FEDFAAS_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("FEDFAAS_S3_SECRET_KEY", "from-the-environment")
    monkeypatch.delenv("FEDFAAS_SECRET_FEDFAAS_ADMIN_TOKEN", raising=False)
    # Execute
    settings = load_settings()
    # Assert
    assert settings.s3_secret_key == "from-the-file"
    assert settings.admin_token == "root-token-file"
