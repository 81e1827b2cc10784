"""A Flower client mod that uploads the client's update straight to fedfaas (FLStore 4.2).

The model then travels once, client to fedfaas, instead of client to Flower
server to fedfaas; the reply carries only a small reference (``fedfaas-ref``
ConfigRecord) that :class:`fedfaas.flower.strategy.FedfaasStrategy` resolves.
The mod also times the ClientApp's training and reports it, with the upload
bandwidth it measured, to JIT's estimator.

If the upload fails, the reply is sent unchanged through Flower and the
strategy stores it instead: an update is never lost because fedfaas was
briefly unreachable from a client.
"""

from __future__ import annotations

import logging
import threading
import time

from flwr.app import ConfigRecord, Context, Message, MessageType
from flwr.client.typing import Mod
from flwr.clientapp.typing import ClientAppCallable

from fedfaas.client import Party, Retry, TrainingTimer
from fedfaas.client.http import DEFAULT_TIMEOUT_S
from fedfaas.errors import BadRequest, FedfaasError
from fedfaas.flower.records import (
    CONFIG_KEY,
    NUM_EXAMPLES_METRIC,
    REF_KEY,
    arrayrecord_to_tensors,
    metric_meta,
    num_examples,
)

log = logging.getLogger("fedfaas.flower")

class _Parties:
    """One :class:`Party` per (gateway, job, party), kept so bandwidth EWMAs span rounds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parties: dict[tuple[str, str, str], Party] = {}

    def get(self, url: str, job: str, party: str, token: str,
            timeout: float | tuple[float, float], retry: Retry | None) -> Party:
        with self._lock:
            found = self._parties.get((url, job, party))
            if found is None or found.http.token != token:
                found = Party(url, job, party, token, timeout=timeout, retry=retry)
                self._parties[(url, job, party)] = found
            return found


def make_upload_mod(*, url: str | None = None,
                    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
                    retry: Retry | None = None) -> Mod:
    """Build a client mod that uploads train replies to fedfaas.

    Parameters
    ----------
    url
        Gateway URL as this client reaches it; by default the one the strategy sent.
    timeout, retry
        HTTP policy of the uploads.
    """
    parties = _Parties()

    def fedfaas_upload_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if (not msg.metadata.message_type.startswith(MessageType.TRAIN) or not msg.has_content()
                or CONFIG_KEY not in msg.content.config_records):
            return call_next(msg, context)
        cfg = msg.content.config_records[CONFIG_KEY]
        # The ClientApp does not need to see where its update goes, nor the token.
        del msg.content[CONFIG_KEY]
        started = time.perf_counter()
        reply = call_next(msg, context)
        train_time_s = time.perf_counter() - started
        if reply.has_error() or not reply.has_content() or len(reply.content.array_records) != 1:
            return reply
        try:
            _upload(reply, cfg, train_time_s, parties.get(
                url or str(cfg["url"]), str(cfg["job"]), str(cfg["party"]), str(cfg["token"]),
                timeout, retry))
        except FedfaasError as exc:
            log.warning("upload to fedfaas failed, sending the update through Flower: %s", exc)
        return reply

    return fedfaas_upload_mod


def _upload(reply: Message, cfg: ConfigRecord, train_time_s: float, party: Party) -> None:
    key, record = next(iter(reply.content.array_records.items()))
    weight_key = str(cfg.get("weighted-by-key", NUM_EXAMPLES_METRIC))
    rnd = int(_number(cfg, "round", None))
    epochs = _number(cfg, "local-epochs", 1.0)
    party.last_training = TrainingTimer(epochs=epochs, elapsed_s=train_time_s)
    meta = {"source": "flwr", "flwr_round": cfg.get("flwr-round"), "flwr_record": key,
            "flwr_metrics": metric_meta(reply.content)}
    stored = party.push(rnd, arrayrecord_to_tensors(record),
                        num_examples=num_examples(reply.content, weight_key),
                        train_time_s=train_time_s, meta=meta)
    del reply.content[key]
    reply.content[REF_KEY] = ConfigRecord({
        "job": party.job_id, "round": rnd, "party": party.party_id, "record": key,
        "digest": str(stored["digest"]), "size": int(stored["size"])})


def _number(cfg: ConfigRecord, key: str, default: float | None) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"the strategy's {CONFIG_KEY!r} config has no number {key!r}")
    return float(value)


#: The mod with default settings: ``ClientApp(mods=[fedfaas_upload_mod])``.
fedfaas_upload_mod = make_upload_mod()
