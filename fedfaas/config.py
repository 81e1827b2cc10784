"""The one config loader: settings from ``FEDFAAS_*`` environment variables and secret files.

Every process of fedfaas (gateway, functions, CLI, benchmarks) reads its
settings through :func:`load_settings`, a ``pydantic-settings`` model: each
setting is typed, has one default and reads ``FEDFAAS_<NAME>``.  Secrets come
from OpenFaaS secret files (``<secrets_dir>/<name>``) before the environment
(``FEDFAAS_SECRET_<NAME>``, then the plain ``FEDFAAS_<NAME>`` where one exists).
The local stack exports the same variables to the processes it starts, so code
never needs to know whether it runs on OpenFaaS or on a laptop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic._internal._model_construction import ModelMetaclass
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SECRETS_DIR_DEFAULT = "/var/openfaas/secrets"
ENV_PREFIX = "FEDFAAS_"
#: Header carrying the internal token on every function call of the gateway.
INTERNAL_TOKEN_HEADER = "X-Fedfaas-Internal-Token"
#: Set on every error a function answers itself; the platform's own errors (an instance
#: gone, stuck or busy: OpenFaaS' proxy answers 500-504) lack it.
FUNCTION_ERROR_HEADER = "X-Fedfaas-Function-Error"


def secrets_dir() -> Path:
    """Folder holding OpenFaaS secrets (``/var/openfaas/secrets`` on a cluster)."""
    return Path(os.environ.get(ENV_PREFIX + "SECRETS_DIR", SECRETS_DIR_DEFAULT))


def _secret_env(name: str) -> str:
    return ENV_PREFIX + "SECRET_" + name.upper().replace("-", "_")


def read_secret(name: str, default: str | None = None) -> str | None:
    """Read an OpenFaaS secret file ``<secrets_dir>/<name>``, stripped of whitespace.

    Falls back to the environment variable ``FEDFAAS_SECRET_<NAME>`` (dashes as
    underscores), then to ``default``.
    """
    path = secrets_dir() / name
    try:
        return path.read_text().strip()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        env = os.environ.get(_secret_env(name))
        return env if env is not None else default


def internal_token() -> str | None:
    """The shared secret ``fedfaas-internal-token`` of the gateway and the functions.

    Functions serve data only to callers that present it (the OpenFaaS
    gateway's ``/function/<name>`` routes are not authenticated), so an empty
    value counts as absent.
    """
    return read_secret("fedfaas-internal-token") or None


def _secret(name: str, env: str | None = None) -> AliasChoices:
    """Where a secret setting is read, first found wins: the file ``name``, ``FEDFAAS_SECRET_<NAME>``,
    then the plain ``FEDFAAS_<env>`` if given."""
    plain = [ENV_PREFIX + env] if env else []
    return AliasChoices(name, _secret_env(name), *plain)


class _FieldDefaultsOnClass(ModelMetaclass):
    """Lets ``Settings.max_body_bytes`` name a field's default, as on a dataclass."""

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("__pydantic_fields__") or {}
        if name in fields and not fields[name].is_required():
            return fields[name].get_default(call_default_factory=True)
        return ModelMetaclass.__getattr__(self, name)  # type: ignore[attr-defined]


class Settings(BaseSettings, metaclass=_FieldDefaultsOnClass):
    """Connection settings, limits and tunables shared by every fedfaas process."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, env_ignore_empty=True,
                                      populate_by_name=True, extra="ignore", use_attribute_docstrings=True)

    # --- connections -----------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis holding metadata, queues and the Cache Engine's table."""
    s3_endpoint: str = "127.0.0.1:8333"
    """``host:port`` of the S3 store holding models, updates and results."""
    s3_access_key: str = Field("fedfaas", validation_alias=_secret("s3-access-key", "S3_ACCESS_KEY"))
    """S3 access key: secret ``s3-access-key``, else ``FEDFAAS_S3_ACCESS_KEY``."""
    s3_secret_key: str = Field("fedfaas-secret", repr=False,
                               validation_alias=_secret("s3-secret-key", "S3_SECRET_KEY"))
    """S3 secret key: secret ``s3-secret-key``, else ``FEDFAAS_S3_SECRET_KEY``."""
    s3_secure: bool = False
    """Talk to S3 over TLS."""
    s3_region: str = "us-east-1"
    """Region the S3 client signs for."""
    s3_bucket: str = "fedfaas"
    """The one bucket of fedfaas."""
    faas_gateway_url: str = "http://127.0.0.1:8080"
    """OpenFaaS gateway (or the local router) the gateway invokes functions through."""
    basic_auth_user: str | None = Field(None, validation_alias=_secret("basic-auth-user"))
    """OpenFaaS basic-auth user (secret ``basic-auth-user``)."""
    basic_auth_password: str | None = Field(None, repr=False,
                                            validation_alias=_secret("basic-auth-password"))
    """OpenFaaS basic-auth password (secret ``basic-auth-password``)."""
    admin_token: str | None = Field(None, repr=False, validation_alias=_secret("fedfaas-admin-token"))
    """The operator's (``root``) bearer token (secret ``fedfaas-admin-token``)."""
    # Kept out of repr so that a logged Settings never shows it.
    internal_token: str | None = Field(None, repr=False,
                                       validation_alias=_secret("fedfaas-internal-token"))
    """Shared secret of the gateway and the functions (secret ``fedfaas-internal-token``)."""

    # --- limits and timeouts ---------------------------------------------------------
    max_body_bytes: int = 256 * 1024**2
    """Largest request body the gateway accepts."""
    redis_timeout_s: float = 5.0
    """Socket timeout of every Redis call."""
    s3_timeout_s: float = 30.0
    """Read timeout of S3 calls."""
    function_timeout_s: float = 120.0
    """Timeout of a synchronous function call (an aggregation step, a query)."""
    event_claim_idle_s: float = 30.0
    """How long an arrivals-stream entry a replica read may stay unacknowledged before
    another replica claims it (the first replica is presumed dead)."""
    rate_limit_per_min: int = 600
    """Requests per minute of each party and each tenant-admin token; 0 turns the limit off."""

    # --- round driver and JIT scheduler (JIT paper section 3) -------------------------
    driver: bool = True
    """Run the round driver in this gateway (off for API-only replicas)."""
    driver_delta_s: float = 0.5
    """Seconds between scheduling decisions (the paper's delta)."""
    always_on_ping_s: float = 5.0
    """Seconds between keep-alive pings of the always-on baseline's aggregator; must stay
    below the aggregate function's scale-to-zero idle time."""
    agg_capacity: int | None = None
    """Aggregation steps the scheduler runs at once (None: unbounded)."""
    agg_overhead_s: float = 1.0
    """Cold start plus state load of an aggregation instance: the learner's prior."""
    agg_keep_alive_s: str | None = None
    """The aggregator's keep-alive as a duration (``"30s"``) or ``"never"``; wins over the
    function's labels (Community Edition ignores them).  Checked by the gateway at start."""
    agg_cold_start_s: str = "1"
    """The aggregator's cold start as a duration; checked by the gateway at start."""
    default_bandwidth_bps: float = 100e6
    """Bits per second assumed for a party that reported none."""

    # --- FLStore (cache engine, request tracker, cache functions) ----------------------
    flstore: bool = True
    """Run FLStore's control plane in this gateway."""
    cache_functions: str = "cache-0,cache-1,cache-2,cache-3"
    """Comma-separated names of the cache functions."""
    cache_id: str = "cache"
    """This cache function's name (set per cache function)."""
    cache_budget_bytes: int = 1024**3
    """Bytes a cache function holds; the Cache Engine plans with the same budget."""
    workload_cache_budget_bytes: int = 256 * 1024**2
    """Bytes a workload function keeps of the data it read (a quarter of its 1 GiB container)."""
    cache_replicas: int = 1
    """Extra copies of a hot object across cache functions."""
    cache_timeout_s: float = 30.0
    """Timeout of the gateway's calls to cache and workload functions."""
    keepalive_s: float = 60.0
    """Seconds between keep-alive pings of cache functions holding data."""

    # --- process ---------------------------------------------------------------------
    home: str | None = None
    """Folder for a process's working files (the gateway's metrics); a temporary one if unset."""
    log_level: str = "INFO"
    """Logging level of the gateway."""

    @field_validator("s3_access_key", "s3_secret_key", mode="before")
    @classmethod
    def _empty_secret_is_default(cls, value: Any, info: Any) -> Any:
        if value in (None, ""):
            return cls.model_fields[info.field_name].default
        return value.strip() if isinstance(value, str) else value

    @field_validator("basic_auth_user", "basic_auth_password", "admin_token", "internal_token",
                     mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        # Functions serve data only to callers presenting the internal token: empty is absent.
        if isinstance(value, str):
            value = value.strip()
        return value or None

    @field_validator("faas_gateway_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def faas_basic_auth(self) -> tuple[str, str] | None:
        """Basic auth ``(user, password)`` of OpenFaaS' ``/system`` API, when both secrets are set."""
        if self.basic_auth_user and self.basic_auth_password:
            return self.basic_auth_user, self.basic_auth_password
        return None

    @property
    def cache_function_names(self) -> list[str]:
        """:attr:`cache_functions` as a list."""
        return [name for name in self.cache_functions.split(",") if name]

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files before the environment, as OpenFaaS mounts them; no .env file.
        return init_settings, file_secret_settings, env_settings


def secret_names() -> set[str]:
    """Names of the OpenFaaS secret files :class:`Settings` reads."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names.add(str(field.validation_alias.choices[0]))
    return names


def env_names() -> set[str]:
    """``FEDFAAS_*`` variables :class:`Settings` reads (secrets' fallbacks included)."""
    names = {ENV_PREFIX + "SECRETS_DIR"}
    for name, field in Settings.model_fields.items():
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(c) for c in field.validation_alias.choices[1:])
        else:
            names.add(ENV_PREFIX + name.upper())
    return names


def load_settings() -> Settings:
    """Build :class:`Settings` from the OpenFaaS secret files and the environment."""
    folder = secrets_dir()
    return Settings(_secrets_dir=folder if folder.is_dir() else None)
