"""Tokens and principals: who is calling, and what they may touch.

Tokens are random 256-bit strings handed out once; only their SHA-256 is
stored in Redis (a leaked Redis dump yields no usable token).  Roles:

- ``root``: the operator, holding the ``fedfaas-admin-token`` secret; may create tenants
  and act as admin of any tenant.
- ``tenant-admin``: creates and manages that tenant's jobs, reads its data.
- ``enroll``: a job's enrollment token; may only register parties of that job
  (``POST /v1/jobs/{job}/parties``), which is all the enrollment flow calls with
  it.  Every party shares it, so it reads nothing: no job, round or model.
- ``party``: one party of one job; uploads its own updates, reads global models.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Literal

import redis

from fedfaas import keys
from fedfaas.errors import Forbidden, Unauthorized

Role = Literal["root", "tenant-admin", "enroll", "party"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    role: Role
    tenant: str | None = None
    job: str | None = None
    party: str | None = None

    def is_admin_of(self, tenant: str) -> bool:
        """True for root and for the admin of ``tenant``."""
        return self.role == "root" or (self.role == "tenant-admin" and self.tenant == tenant)

    def require_admin(self, tenant: str) -> None:
        """Raise 403 unless the caller administers ``tenant``."""
        if not self.is_admin_of(tenant):
            raise Forbidden("this action needs the tenant's admin token")

    def require_member(self) -> None:
        """Raise 403 for an enrollment token: it registers parties and does nothing else."""
        if self.role == "enroll":
            raise Forbidden("the enrollment token can only register parties "
                            "(POST /v1/jobs/{job}/parties); use the party's token or an admin token")


def new_token() -> str:
    """A fresh random token (43 url-safe characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 of a token, the only form stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def store_token(client: redis.Redis, token: str, principal: Principal) -> None:
    """Remember ``token`` (hashed) as ``principal``."""
    client.set(keys.token(token_hash(token)), json.dumps(asdict(principal)))


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 when absent."""
    if not header:
        raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return value.strip()


def authenticate(client: redis.Redis, header: str | None, root_token: str | None) -> Principal:
    """Resolve the caller from its bearer token; 401 for unknown tokens."""
    token = bearer(header)
    if len(token) > 512:
        raise Unauthorized("token too long")
    if root_token and hmac.compare_digest(token.encode(), root_token.encode()):
        return Principal(role="root")
    raw = client.get(keys.token(token_hash(token)))
    if raw is None:
        raise Unauthorized("unknown or revoked token")
    data = json.loads(raw)
    return Principal(**data)
