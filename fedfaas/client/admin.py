"""The job owner's side of API v1 (JIT paper 5.1): tenants, jobs, initial model, rounds.

Used by the examples, the demo, the benchmarks and the Flower strategy
wrapper to drive jobs without writing HTTP by hand.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fedfaas import codec
from fedfaas.client.http import DEFAULT_TIMEOUT_S, FedfaasClient
from fedfaas.client.payload import GlobalModel, Tensors, encode_update, round_header
from fedfaas.client.retry import Retry
from fedfaas.client.rounds import round_status, wait_round_closed
from fedfaas.config import read_secret
from fedfaas.errors import BadRequest, Conflict
from fedfaas.spec import JobSpec, PartyProfile, check_id, parse

ADMIN_TOKEN_SECRET = "fedfaas-admin-token"
GATEWAY_URL_ENV = "FEDFAAS_GATEWAY_URL"


class AdminClient:
    """A tenant admin (or the operator) talking to the gateway.

    Parameters
    ----------
    base_url
        Gateway URL.
    token
        Admin token of a tenant, or the operator's.
    timeout, retry
        Per-call timeout and retry policy (see :class:`FedfaasClient`).
    """

    def __init__(self, base_url: str, token: str, *,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
                 retry: Retry | None = None) -> None:
        self.http = FedfaasClient(base_url, token, timeout=timeout, retry=retry)

    @classmethod
    def from_env(cls, **kwargs: Any) -> AdminClient:
        """Gateway from ``FEDFAAS_GATEWAY_URL``, token from the ``fedfaas-admin-token`` secret.

        These are what ``eval "$(fedfaas env)"`` exports for the local stack.
        """
        url = os.environ.get(GATEWAY_URL_ENV)
        token = read_secret(ADMIN_TOKEN_SECRET)
        if not url or not token:
            raise BadRequest(f"set {GATEWAY_URL_ENV} and the {ADMIN_TOKEN_SECRET} secret "
                             "(eval \"$(fedfaas env)\" does both for the local stack)")
        return cls(url, token, **kwargs)

    @property
    def base_url(self) -> str:
        """Gateway URL."""
        return self.http.base_url

    def close(self) -> None:
        """Close the HTTP session."""
        self.http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- tenants and jobs ----------------------------------------------------------------
    def create_tenant(self, tenant: str) -> dict[str, Any]:
        """Create a tenant (operator only); the answer holds its ``admin_token``."""
        body = {"tenant": check_id(tenant, "tenant")}
        return self.http.json("POST", "/v1/tenants", json_body=body, idempotent=False)

    def create_job(self, spec: Mapping[str, Any] | JobSpec) -> dict[str, Any]:
        """Create a job from a job spec; the answer holds ``job_id`` and ``enrollment_token``.

        The spec is validated locally first, so a mistake is reported before any call.
        """
        body = spec.model_dump(exclude_none=True) if isinstance(spec, JobSpec) else dict(spec)
        parse(JobSpec, body, "job spec")
        return self.http.json("POST", "/v1/jobs", json_body=body, idempotent=False)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job: spec, current round, state, party count, rejections."""
        return self.http.json("GET", f"/v1/jobs/{check_id(job_id, 'job id')}")

    def list_jobs(self, tenant: str | None = None) -> list[str]:
        """Job ids of a tenant (the token's own by default)."""
        params = {"tenant": tenant} if tenant else None
        return list(self.http.json("GET", "/v1/jobs", params=params)["jobs"])

    # --- parties -------------------------------------------------------------------------
    def register_party(self, job_id: str, party_id: str | None = None,
                       profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Register a party as the admin; the answer holds ``party_id`` and its ``token``."""
        body = dict(profile or {})
        if party_id is not None:
            body["party_id"] = check_id(party_id, "party id")
        parse(PartyProfile, body, "party profile")
        return self.http.json("POST", f"/v1/jobs/{check_id(job_id, 'job id')}/parties",
                              json_body=body, idempotent=False)

    def list_parties(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Every party's profile, by party id."""
        answer = self.http.json("GET", f"/v1/jobs/{check_id(job_id, 'job id')}/parties")
        return dict(answer["parties"])

    def get_party(self, job_id: str, party_id: str) -> dict[str, Any]:
        """One party's profile (including what it reported about itself)."""
        return self.http.json("GET", f"/v1/jobs/{check_id(job_id, 'job id')}/parties/"
                                     f"{check_id(party_id, 'party id')}")

    # --- models and rounds ---------------------------------------------------------------
    def put_initial_model(self, job_id: str, model: Tensors,
                          meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Upload the round-0 global model (``PUT /v1/jobs/{job}/model``)."""
        body = encode_update(model, {"job": job_id, "round": 0, **(meta or {})})
        return self.http.json("PUT", f"/v1/jobs/{check_id(job_id, 'job id')}/model", data=body,
                              headers={"Content-Type": "application/octet-stream"})

    def start_round(self, job_id: str, parties: Sequence[str] | None = None) -> dict[str, Any]:
        """Open the job's next round; the answer is its status (``round`` is its number).

        ``parties`` restricts the round to those registered parties (client sampling):
        it closes as soon as their updates are in.  By default every registered
        party is expected.
        """
        body = None if parties is None else {"parties": [check_id(p, "party id") for p in parties]}
        return self.http.json("POST", f"/v1/jobs/{check_id(job_id, 'job id')}/rounds",
                              json_body=body, idempotent=False)

    def round_status(self, job_id: str, rnd: int) -> dict[str, Any]:
        """Round status, including ``arrived_parties``."""
        return round_status(self.http, check_id(job_id, "job id"), rnd)

    def wait_round_closed(self, job_id: str, rnd: int, timeout_s: float = 600.0) -> dict[str, Any]:
        """Block until round ``rnd`` closed; raises ``RoundFailed`` or ``WaitTimeout``."""
        return wait_round_closed(self.http, check_id(job_id, "job id"), rnd, timeout_s)

    def fetch_model(self, job_id: str, rnd: int | None = None) -> GlobalModel:
        """The newest global model, or round ``rnd``'s."""
        params = None if rnd is None else {"round": str(rnd)}
        path = f"/v1/jobs/{check_id(job_id, 'job id')}/model"
        resp = self.http.request("GET", path, params=params)
        return GlobalModel.from_body(resp.content, round_header(resp.headers.get("X-Fedfaas-Round"),
                                                                rnd))

    def fetch_update(self, job_id: str, rnd: int, party_id: str,
                     digest: str | None = None) -> codec.ModelUpdate:
        """A party's stored update for round ``rnd``, as uploaded.

        With ``digest`` (the sha256 the gateway recorded), the body is checked
        against it and a mismatch raises :class:`Conflict`.
        """
        if rnd < 1:
            raise BadRequest("round numbers start at 1")
        path = (f"/v1/jobs/{check_id(job_id, 'job id')}/rounds/{rnd}/updates/"
                f"{check_id(party_id, 'party id')}")
        resp = self.http.request("GET", path)
        body = resp.content
        if digest is not None and hashlib.sha256(body).hexdigest() != digest:
            raise Conflict(f"the stored update of party {party_id!r} for round {rnd} does not "
                           f"match digest {digest[:16]}...", code="digest_mismatch")
        return codec.decode(body)
