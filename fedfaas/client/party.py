"""The party side of an FL job (JIT paper 5.2, FLStore 4.2): register, fetch, train, push.

A :class:`Party` registers with a job's enrollment token, downloads the
round's global model, uploads its update with the metadata the aggregator
needs (``num_examples``, ``train_time_s``) and reports what JIT's estimator
wants to know about it: measured epoch time and bandwidth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from fedfaas.client.http import DEFAULT_TIMEOUT_S, FedfaasClient
from fedfaas.client.measure import BandwidthMeter, TrainingTimer, measure_training
from fedfaas.client.payload import GlobalModel, Tensors, encode_update, round_header
from fedfaas.client.retry import Retry
from fedfaas.client.rounds import round_status, wait_round_closed, wait_round_open
from fedfaas.errors import BadRequest, FedfaasError
from fedfaas.spec import PartyProfile, check_id, parse

if TYPE_CHECKING:
    import torch

log = logging.getLogger("fedfaas.client")

DEFAULT_WAIT_S = 600.0


class Party:
    """One registered party of one job.

    Parameters
    ----------
    base_url
        Gateway URL.
    job_id, party_id
        The job and this party's id (a DNS label).
    token
        The party token returned at registration.
    auto_report
        After every push, report newly measured bandwidth and times (``PATCH``).
    timeout, retry
        Per-call timeout and retry policy (see :class:`FedfaasClient`).
    """

    def __init__(self, base_url: str, job_id: str, party_id: str, token: str, *,
                 auto_report: bool = True, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
                 retry: Retry | None = None) -> None:
        self.job_id = check_id(job_id, "job id")
        self.party_id = check_id(party_id, "party id")
        self.http = FedfaasClient(base_url, token, timeout=timeout, retry=retry)
        self.auto_report = auto_report
        self.up = BandwidthMeter()
        self.down = BandwidthMeter()
        self.last_training: TrainingTimer | None = None
        self._unused_training: TrainingTimer | None = None
        self._reported: dict[str, float] = {}

    @classmethod
    def register(cls, base_url: str, job_id: str, enrollment_token: str, *,
                 party_id: str | None = None,
                 profile: Mapping[str, Any] | PartyProfile | None = None,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
                 retry: Retry | None = None, auto_report: bool = True) -> Party:
        """Register a new party with the job's enrollment token (``POST /v1/jobs/{job}/parties``).

        ``profile`` holds :class:`fedfaas.spec.PartyProfile` fields (mode,
        epoch/minibatch time, dataset size, hardware, bandwidth); it is
        validated here before anything is sent.
        """
        body = _profile_json(profile)
        if party_id is not None:
            body["party_id"] = check_id(party_id, "party id")
        parse(PartyProfile, body, "party profile")
        with FedfaasClient(base_url, enrollment_token, timeout=timeout, retry=retry) as enroll:
            answer = enroll.json("POST", f"/v1/jobs/{check_id(job_id, 'job id')}/parties",
                                 json_body=body, idempotent=False)
        return cls(base_url, job_id, answer["party_id"], answer["token"], auto_report=auto_report,
                   timeout=timeout, retry=retry)

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP session."""
        self.http.close()

    def __enter__(self) -> Party:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- rounds --------------------------------------------------------------------------
    def job(self) -> dict[str, Any]:
        """The job as the party sees it (spec, current round, state)."""
        return self.http.json("GET", f"/v1/jobs/{self.job_id}")

    def round_status(self, rnd: int) -> dict[str, Any]:
        """Status of round ``rnd``, with ``your_update`` when this party delivered one."""
        return round_status(self.http, self.job_id, rnd)

    def wait_round_closed(self, rnd: int, timeout_s: float = DEFAULT_WAIT_S) -> dict[str, Any]:
        """Block until round ``rnd`` closed; raises ``RoundFailed`` or ``WaitTimeout``."""
        return wait_round_closed(self.http, self.job_id, rnd, timeout_s)

    def wait_next_round(self, after: int = 0, timeout_s: float = DEFAULT_WAIT_S) -> int:
        """Block until a round after ``after`` is open; return its number."""
        return wait_round_open(self.http, self.job_id, after, timeout_s)

    # --- models --------------------------------------------------------------------------
    def fetch_model(self, rnd: int | None = None) -> GlobalModel:
        """The newest global model, or the one produced by round ``rnd`` (0 = initial model)."""
        params = None if rnd is None else {"round": str(rnd)}
        resp, seconds = self.http.timed_request("GET", f"/v1/jobs/{self.job_id}/model",
                                                params=params)
        self.down.observe(len(resp.content), seconds)
        return GlobalModel.from_body(resp.content, round_header(resp.headers.get("X-Fedfaas-Round"),
                                                                rnd))

    def fetch_arrays(self, rnd: int | None = None) -> list[np.ndarray]:
        """The global model as a list of writable numpy arrays."""
        return self.fetch_model(rnd).arrays()

    def load_model(self, module: torch.nn.Module, rnd: int | None = None,
                   strict: bool = True) -> int:
        """Load the global model into ``module`` (``load_state_dict``); return its round."""
        model = self.fetch_model(rnd)
        module.load_state_dict(model.state_dict(), strict=strict)
        return model.round

    # --- updates -------------------------------------------------------------------------
    @contextmanager
    def measure_training(self, epochs: float = 1.0, minibatches: int | None = None
                         ) -> Iterator[TrainingTimer]:
        """Time the enclosed training loop; the next :meth:`push` reports it.

        Use it when the training code does not measure its own times.
        """
        with measure_training(epochs, minibatches) as timer:
            yield timer
        self.last_training = timer
        self._unused_training = timer

    def push(self, rnd: int, update: Tensors, *, num_examples: int,
             train_time_s: float | None = None, meta: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
        """Upload this party's update for round ``rnd``.

        Parameters
        ----------
        rnd
            The round the update belongs to.
        update
            A torch ``state_dict``, a mapping name -> numpy array, or a list of arrays.
        num_examples
            Examples trained on (the FedAvg weight).
        train_time_s
            Training time of this round; defaults to the last :meth:`measure_training`.
        meta
            Extra metadata stored with the update.

        Returns
        -------
        dict
            The gateway's record of the stored update (``duplicate: true`` when
            the same bytes had been accepted before).
        """
        if not isinstance(num_examples, int) or isinstance(num_examples, bool) or num_examples < 0:
            raise BadRequest(f"num_examples must be a non-negative integer, got {num_examples!r}")
        if train_time_s is None and self._unused_training is not None:
            train_time_s = self._unused_training.elapsed_s
        if train_time_s is not None and not train_time_s >= 0:
            raise BadRequest(f"train_time_s must be >= 0, got {train_time_s!r}")
        full_meta: dict[str, Any] = dict(meta or {})
        full_meta.update(job=self.job_id, round=rnd, party=self.party_id, num_examples=num_examples)
        if train_time_s is not None:
            full_meta["train_time_s"] = float(train_time_s)
        body = encode_update(update, full_meta)
        resp, seconds = self.http.timed_request(
            "POST", f"/v1/jobs/{self.job_id}/rounds/{rnd}/updates", data=body,
            headers={"Content-Type": "application/octet-stream"}, idempotent=True)
        self.up.observe(len(body), seconds)
        self._unused_training = None
        record: dict[str, Any] = resp.json()
        if self.auto_report:
            try:
                self.report_measurements()
            except FedfaasError as exc:
                # The update is stored; a lost measurement only makes JIT's guess worse.
                log.warning("party %s could not report its measurements: %s", self.party_id, exc)
        return record

    # --- measurements --------------------------------------------------------------------
    def measurements(self) -> dict[str, float]:
        """What this party measured so far, as PartyProfile fields."""
        values: dict[str, float | None] = {
            "bandwidth_up_bps": self.up.bps,
            "bandwidth_down_bps": self.down.bps,
            "epoch_time_s": self.last_training.epoch_time_s if self.last_training else None,
            "minibatch_time_s": self.last_training.minibatch_time_s if self.last_training else None,
        }
        return {k: float(v) for k, v in values.items() if v is not None and v > 0}

    def report(self, **fields: Any) -> dict[str, Any]:
        """``PATCH /v1/jobs/{job}/parties/{party}`` with PartyProfile fields; returns the profile.
        """
        parse(PartyProfile, fields, "party profile")
        return self.http.json("PATCH", f"/v1/jobs/{self.job_id}/parties/{self.party_id}",
                              json_body=fields)

    def report_measurements(self) -> dict[str, Any] | None:
        """Report measurements that changed since the last report; None when nothing changed."""
        changed = {k: v for k, v in self.measurements().items() if self._reported.get(k) != v}
        if not changed:
            return None
        profile = self.report(**changed)
        self._reported.update(changed)
        return profile


def _profile_json(profile: Mapping[str, Any] | PartyProfile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    if isinstance(profile, PartyProfile):
        return profile.model_dump(exclude_none=True)
    if not isinstance(profile, Mapping):
        raise BadRequest("a party profile must be a mapping or a PartyProfile")
    return dict(profile)
