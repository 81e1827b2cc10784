"""Patient clients and checks for the reliability tests.

Faults are real (see :mod:`fedfaas.devstack.localstack.faults`).  Clients retry the way
the party SDK does (connection errors, 429 and 503 with ``Retry-After``), and
record every answer so a test can check that no acknowledged update was lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from fedfaas import codec
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.store import ObjectStore, digest

RETRYABLE = (429, 502, 503, 504)


def admin_token(stack: LocalStack) -> str:
    """The operator's token, read from the stack's secret file."""
    return (Path(stack.env()["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text().strip()


def log_text(stack: LocalStack, name: str) -> str:
    """A component's log so far."""
    path = stack.data_dir / "logs" / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Ledger:
    """Every answer the gateway gave to update uploads, shared by uploader threads."""

    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, party: str, status: int, body: dict[str, Any] | None) -> None:
        """Remember one answer (and the acknowledgement, for a 2xx)."""
        with self.lock:
            self.statuses.append(status)
            if 200 <= status < 300 and body is not None:
                self.acked[party] = body

    @property
    def errors_5xx(self) -> list[int]:
        """Answers that were 5xx other than 503 (503 with Retry-After is the contract)."""
        return [s for s in self.statuses if s >= 500 and s != 503]


def upload(session: requests.Session, base: str, url: str, token: str, body: bytes, party: str,
           ledger: Ledger, timeout_s: float = 90.0) -> int:
    """POST an update until the gateway gives an answer that is not "retry later"; returns it.

    Connection errors (a killed gateway) count as status 0 in the ledger.
    """
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        try:
            resp = session.post(base + url, data=body, timeout=30,
                                headers={"Authorization": f"Bearer {token}"})
        except requests.RequestException:
            ledger.record(party, 0, None)
            time.sleep(0.2)
            continue
        status = resp.status_code
        ledger.record(party, status, resp.json() if status < 300 else None)
        if status not in RETRYABLE:
            return status
        assert resp.headers.get("Retry-After"), (status, resp.text)
        time.sleep(min(float(resp.headers["Retry-After"]), 0.5))
    return status


def call(session: requests.Session, method: str, url: str, token: str, timeout_s: float = 60.0,
         **kwargs: Any) -> requests.Response:
    """One admin/party call, retried through connection errors and 503s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            resp = session.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                   timeout=30, **kwargs)
            if resp.status_code not in RETRYABLE or time.monotonic() > deadline:
                return resp
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def wait_round(session: requests.Session, base: str, job_id: str, rnd: int, token: str,
               timeout_s: float = 90.0) -> dict[str, Any]:
    """Poll a round until it is closed or failed; returns its status."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = call(session, "GET", f"{base}/v1/jobs/{job_id}/rounds/{rnd}", token)
        if resp.status_code == 200:
            status = resp.json()
            if status["state"] in ("closed", "failed"):
                return status
        time.sleep(0.1)
    raise AssertionError(f"round {rnd} of {job_id} did not close in {timeout_s} s: {status}")


def make_job(session: requests.Session, base: str, admin: str, parties: int,
             strategy: dict[str, Any], **spec: Any) -> tuple[str, list[str]]:
    """Create a one-round job whose round closes when all ``parties`` delivered; start round 1."""
    body = {"model": {"name": "reliability", "size_bytes": 4096}, "t_wait_s": 300,
            "quorum": parties, "rounds": 2, "strategy": strategy, **spec}
    job = call(session, "POST", f"{base}/v1/jobs", admin, json=body)
    assert job.status_code == 201, job.text
    jid, enroll = job.json()["job_id"], job.json()["enrollment_token"]
    tokens = []
    for i in range(parties):
        reg = call(session, "POST", f"{base}/v1/jobs/{jid}/parties", enroll, json={"party_id": f"p{i}"})
        assert reg.status_code == 201, reg.text
        tokens.append(reg.json()["token"])
    started = call(session, "POST", f"{base}/v1/jobs/{jid}/rounds", admin)
    assert started.status_code == 201, started.text
    return jid, tokens


def lost_updates(store: ObjectStore, ledger: Ledger, bodies: dict[str, bytes]) -> list[str]:
    """Acknowledged updates that S3 does not hold byte for byte."""
    lost = []
    for party, ack in ledger.acked.items():
        try:
            stored = store.get(ack["key"])
        except Exception:
            lost.append(party)
            continue
        if digest(stored) != ack["digest"] or ack["digest"] != digest(bodies[party]):
            lost.append(party)
    return lost


def weighted_mean(updates: list[dict[str, np.ndarray]], weights: list[float]) -> dict[str, np.ndarray]:
    """FedAvg of float tensors in float64, cast back to each tensor's dtype."""
    w = np.asarray(weights, np.float64) / float(np.sum(weights))
    return {name: np.tensordot(w, np.stack([u[name].astype(np.float64) for u in updates]), axes=1)
            .astype(updates[0][name].dtype) for name in updates[0]}


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest absolute difference between two models with the same tensors."""
    assert list(a) == list(b), (list(a), list(b))
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)


def decode_model(raw: bytes) -> dict[str, np.ndarray]:
    """Tensors of a downloaded global model."""
    return dict(codec.decode(raw).tensors)
