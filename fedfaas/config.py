"""The one config loader: settings from ``FEDFAAS_*`` environment variables and secret files.

Every process of fedfaas (gateway, functions, CLI, benchmarks) reads its
settings through :func:`load_settings`.  The local stack exports the same
variables to the processes it starts, so code never needs to know whether it
runs on OpenFaaS or on a laptop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SECRETS_DIR_DEFAULT = "/var/openfaas/secrets"
#: Header carrying the internal token on every function call of the gateway.
INTERNAL_TOKEN_HEADER = "X-Fedfaas-Internal-Token"
#: Set on every error a function answers itself; the platform's own errors (an instance
#: gone, stuck or busy: OpenFaaS' proxy answers 500-504) lack it.
FUNCTION_ERROR_HEADER = "X-Fedfaas-Function-Error"


def secrets_dir() -> Path:
    """Folder holding OpenFaaS secrets (``/var/openfaas/secrets`` on a cluster)."""
    return Path(os.environ.get("FEDFAAS_SECRETS_DIR", SECRETS_DIR_DEFAULT))


def read_secret(name: str, default: str | None = None) -> str | None:
    """Read an OpenFaaS secret file ``<secrets_dir>/<name>``, stripped of whitespace.

    Falls back to the environment variable ``FEDFAAS_SECRET_<NAME>`` (dashes as
    underscores), then to ``default``.
    """
    path = secrets_dir() / name
    try:
        return path.read_text().strip()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        env = os.environ.get("FEDFAAS_SECRET_" + name.upper().replace("-", "_"))
        return env if env is not None else default


def internal_token() -> str | None:
    """The shared secret ``fedfaas-internal-token`` of the gateway and the functions.

    Functions serve data only to callers that present it (the OpenFaaS
    gateway's ``/function/<name>`` routes are not authenticated), so an empty
    value counts as absent.
    """
    return read_secret("fedfaas-internal-token") or None


def _env(name: str, default: str) -> str:
    return os.environ.get("FEDFAAS_" + name, default)


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


@dataclass(frozen=True)
class Settings:
    """Connection settings and limits shared by every fedfaas process."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "fedfaas"
    s3_secret_key: str = "fedfaas-secret"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "fedfaas"
    faas_gateway_url: str = "http://127.0.0.1:8080"
    faas_basic_auth: tuple[str, str] | None = None
    admin_token: str | None = None
    # Kept out of repr so that a logged Settings never shows it.
    internal_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 256 * 1024**2
    redis_timeout_s: float = 5.0
    s3_timeout_s: float = 30.0
    function_timeout_s: float = 120.0
    event_claim_idle_s: float = 30.0
    """How long an arrivals-stream entry a replica read may stay unacknowledged before
    another replica claims it (the first replica is presumed dead)."""
    extra: dict[str, str] = field(default_factory=dict)


def load_settings() -> Settings:
    """Build :class:`Settings` from the environment and the OpenFaaS secret files."""
    faas_user = read_secret("basic-auth-user")
    faas_password = read_secret("basic-auth-password")
    return Settings(
        redis_url=_env("REDIS_URL", Settings.redis_url),
        s3_endpoint=_env("S3_ENDPOINT", Settings.s3_endpoint),
        s3_access_key=read_secret("s3-access-key", _env("S3_ACCESS_KEY", Settings.s3_access_key))
        or Settings.s3_access_key,
        s3_secret_key=read_secret("s3-secret-key", _env("S3_SECRET_KEY", Settings.s3_secret_key))
        or Settings.s3_secret_key,
        s3_secure=_env("S3_SECURE", "0") in ("1", "true", "yes"),
        s3_region=_env("S3_REGION", Settings.s3_region),
        s3_bucket=_env("S3_BUCKET", Settings.s3_bucket),
        faas_gateway_url=_env("FAAS_GATEWAY_URL", Settings.faas_gateway_url).rstrip("/"),
        faas_basic_auth=(faas_user, faas_password) if faas_user and faas_password else None,
        admin_token=read_secret("fedfaas-admin-token"),
        internal_token=internal_token(),
        max_body_bytes=_env_int("MAX_BODY_BYTES", Settings.max_body_bytes),
        redis_timeout_s=_env_float("REDIS_TIMEOUT_S", Settings.redis_timeout_s),
        s3_timeout_s=_env_float("S3_TIMEOUT_S", Settings.s3_timeout_s),
        function_timeout_s=_env_float("FUNCTION_TIMEOUT_S", Settings.function_timeout_s),
        event_claim_idle_s=_env_float("EVENT_CLAIM_IDLE_S", Settings.event_claim_idle_s),
    )
