"""A Flower strategy wrapper that records a Flower run in fedfaas (FLStore 4.2, JIT 5.5).

``FedfaasStrategy(inner, admin)`` wraps any Flower Message-API strategy.  Every
Flower round becomes a fedfaas round; every client reply's ``ArrayRecord`` is
stored as that client's update (keys kept, ``num-examples`` as
``num_examples``), so FLStore's non-training workloads can query Flower runs.
With ``aggregate_in_fedfaas=True`` fedfaas's JIT aggregation produces the
round's global model and the wrapper returns it instead of the inner
strategy's.  Clients that run :func:`fedfaas.flower.mod.fedfaas_upload_mod`
upload straight to fedfaas and send only a reference, which the wrapper
resolves.

Each Flower node is a fedfaas party ``<party_prefix>-<node id>``, registered by
the wrapper the first time the node is sampled.  Each fedfaas round expects
exactly the nodes Flower sampled for it, so it closes as soon as their replies
are in; a round in which a sampled node failed closes at the job's
``t_wait_s`` (with its quorum).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.strategy_utils import (
    aggregate_metricrecords,
    validate_message_reply_consistency,
)

from fedfaas.client import AdminClient, Party, RoundFailed
from fedfaas.errors import BadRequest
from fedfaas.flower.records import (
    CONFIG_KEY,
    NUM_EXAMPLES_METRIC,
    REF_KEY,
    arrayrecord_nbytes,
    arrayrecord_to_tensors,
    metric_meta,
    num_examples,
    tensors_to_arrayrecord,
)

log = logging.getLogger("fedfaas.flower")

#: fedfaas fusion algorithm for each Flower strategy (the first match along the MRO wins).
ALGORITHMS = {
    "FedAvg": "fedavg", "FedProx": "fedprox", "FedAvgM": "fedavgm", "FedAdam": "fedadam",
    "FedYogi": "fedyogi", "FedAdagrad": "fedadagrad", "FedMedian": "median",
    "FedTrimmedAvg": "trimmed-mean", "Krum": "krum", "MultiKrum": "multi-krum", "Bulyan": "bulyan",
}
MAX_T_WAIT_S = 7 * 24 * 3600.0


def fedfaas_algorithm(inner: Strategy) -> str:
    """fedfaas's name for the fusion algorithm of a Flower strategy (``fedavg`` if unknown)."""
    for cls in type(inner).__mro__:
        if cls.__name__ in ALGORITHMS:
            return ALGORITHMS[cls.__name__]
    return "fedavg"


class FedfaasStrategy(Strategy):
    """Wrap a Flower strategy so that its run is stored (and optionally aggregated) in fedfaas.

    Parameters
    ----------
    inner
        Any Flower Message-API strategy; sampling, evaluation and (by default)
        aggregation stay its job.
    admin
        Admin client of the fedfaas gateway.
    job_id
        An existing job to record into; by default a job is created when the run starts.
    job_spec
        Fields that override the created job's spec (``algorithm``, ``strategy``, ...).
    aggregate_in_fedfaas
        Let fedfaas aggregate each round and return its global model.
    weighted_by_key
        Metric holding the FedAvg weight; the inner strategy's, else ``num-examples``.
    party_prefix
        Party ids are ``<party_prefix>-<node id>``.
    round_timeout_s
        Longest wait for a fedfaas round to close.
    send_credentials
        Tell each sampled node where and as whom to upload (needed by the client mod).
    local_epochs
        Local epochs per round, so a client mod can report its epoch time.
    upload_workers
        Parallel uploads of replies that arrived through Flower.
    """

    def __init__(self, inner: Strategy, admin: AdminClient, *, job_id: str | None = None,
                 job_spec: Mapping[str, Any] | None = None, aggregate_in_fedfaas: bool = False,
                 weighted_by_key: str | None = None, party_prefix: str = "flwr-node",
                 round_timeout_s: float = 3600.0, send_credentials: bool = True,
                 local_epochs: float = 1.0, upload_workers: int = 4) -> None:
        if not isinstance(inner, Strategy):
            raise BadRequest(f"inner must be a Flower Strategy, not {type(inner).__name__}")
        if upload_workers < 1 or round_timeout_s <= 0 or local_epochs <= 0:
            raise BadRequest("upload_workers, round_timeout_s and local_epochs must be positive")
        self.inner = inner
        self.admin = admin
        self.job_id = job_id
        self.job_spec = dict(job_spec or {})
        self.aggregate_in_fedfaas = aggregate_in_fedfaas
        self.weighted_by_key = weighted_by_key or str(
            getattr(inner, "weighted_by_key", NUM_EXAMPLES_METRIC))
        self.party_prefix = party_prefix
        self.round_timeout_s = round_timeout_s
        self.send_credentials = send_credentials
        self.local_epochs = local_epochs
        self.upload_workers = upload_workers
        #: Flower round -> fedfaas round.
        self.rounds: dict[int, int] = {}
        self.parties: dict[int, Party] = {}

    # --- job and parties -----------------------------------------------------------------
    def party_id(self, node_id: int) -> str:
        """The fedfaas party id of a Flower node."""
        return f"{self.party_prefix}-{node_id}"

    def ensure_job(self, arrays: ArrayRecord, num_rounds: int | None = None,
                   timeout_s: float | None = None) -> str:
        """Create the fedfaas job (once) and store ``arrays`` as its round-0 model."""
        if self.job_id is not None:
            return self.job_id
        spec: dict[str, Any] = {
            "name": f"flower-{type(self.inner).__name__}",
            "model": {"name": "flower-arrayrecord",
                      "size_bytes": max(arrayrecord_nbytes(arrays), 1)},
            "algorithm": {"name": fedfaas_algorithm(self.inner)},
            "rounds": num_rounds or 1000,
            "quorum": max(int(getattr(self.inner, "min_train_nodes", 1)), 1),
            "t_wait_s": min(timeout_s or self.round_timeout_s, MAX_T_WAIT_S),
        }
        spec.update(self.job_spec)
        created = self.admin.create_job(spec)
        self.job_id = str(created["job_id"])
        self.admin.put_initial_model(self.job_id, arrayrecord_to_tensors(arrays),
                                     meta={"source": "flwr"})
        log.info("fedfaas job %s records this Flower run", self.job_id)
        return self.job_id

    def _party(self, node_id: int) -> Party:
        party = self.parties.get(node_id)
        if party is None:
            job_id = self._job()
            answer = self.admin.register_party(job_id, self.party_id(node_id))
            party = Party(self.admin.base_url, job_id, answer["party_id"], answer["token"],
                          auto_report=False, timeout=self.admin.http.timeout,
                          retry=self.admin.http.retry)
            self.parties[node_id] = party
        return party

    def _job(self) -> str:
        if self.job_id is None:
            raise BadRequest("the fedfaas job does not exist yet: call start() or ensure_job()")
        return self.job_id

    def close(self) -> None:
        """Close the parties' HTTP sessions."""
        for party in self.parties.values():
            party.close()

    # --- Flower Strategy -----------------------------------------------------------------
    def summary(self) -> None:
        """Log the inner strategy's summary and where fedfaas records the run."""
        self.inner.summary()
        log.info("fedfaas: job %s, aggregation by %s", self.job_id or "(created at start)",
                 "fedfaas" if self.aggregate_in_fedfaas else type(self.inner).__name__)

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None
              ) -> Result:
        """Flower's round loop, with the fedfaas job created first."""
        self.ensure_job(initial_arrays, num_rounds, timeout)
        try:
            return super().start(grid, initial_arrays, num_rounds, timeout, train_config,
                                 evaluate_config, evaluate_fn)
        finally:
            self.close()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """The inner strategy's messages, after opening a fedfaas round for the sampled nodes."""
        self.ensure_job(arrays)
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        if not messages:
            return messages
        self._wait_previous_round()
        parties = {m.metadata.dst_node_id: self._party(m.metadata.dst_node_id) for m in messages}
        # The round expects exactly the sampled nodes: it closes when their replies are in.
        fround = int(self.admin.start_round(
            self._job(), parties=[p.party_id for p in parties.values()])["round"])
        self.rounds[server_round] = fround
        if not self.send_credentials:
            return messages
        out = []
        for msg in messages:
            party = parties[msg.metadata.dst_node_id]
            content = RecordDict(dict(msg.content.items()))
            content[CONFIG_KEY] = ConfigRecord({
                "url": self.admin.base_url, "job": party.job_id, "round": fround,
                "party": party.party_id, "token": party.http.token or "",
                "weighted-by-key": self.weighted_by_key, "local-epochs": float(self.local_epochs),
                "flwr-round": server_round})
            out.append(Message(content, msg.metadata.dst_node_id, msg.metadata.message_type,
                               ttl=msg.metadata.ttl, group_id=msg.metadata.group_id or None))
        return out

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Store every reply in fedfaas, then aggregate with the inner strategy or fedfaas."""
        replies = list(replies)
        fround = self.rounds.get(server_round)
        if fround is None:  # nothing was sampled for this round
            return self.inner.aggregate_train(server_round, replies)
        kept = self._record_replies(server_round, fround, replies)
        if not self.aggregate_in_fedfaas:
            return self.inner.aggregate_train(server_round, kept)
        return self._fedfaas_result(fround, kept)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """The inner strategy's evaluation (not recorded in fedfaas)."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """The inner strategy's evaluation aggregate."""
        return self.inner.aggregate_evaluate(server_round, replies)

    # --- recording -----------------------------------------------------------------------
    def _wait_previous_round(self) -> None:
        if not self.rounds:
            return
        last = max(self.rounds.values())
        try:
            self.admin.wait_round_closed(self._job(), last, timeout_s=self.round_timeout_s)
        except RoundFailed as exc:
            log.warning("fedfaas round %d failed: %s", last, exc.message)

    def _record_replies(self, server_round: int, fround: int, replies: list[Message]
                        ) -> list[Message]:
        """Upload replies that carry arrays; resolve or check replies that carry references."""
        kept: list[Message] = []
        uploads = []
        for msg in replies:
            if msg.has_error() or not msg.has_content():
                kept.append(msg)
                continue
            party = self.parties.get(msg.metadata.src_node_id)
            if party is None:
                log.warning("dropping a reply from node %d, which was not sampled",
                            msg.metadata.src_node_id)
                continue
            ref = msg.content.config_records.get(REF_KEY)
            if ref is not None:
                if not self._resolve(msg, ref, party, fround):
                    continue
            elif len(msg.content.array_records) == 1:
                uploads.append((msg, party))
            kept.append(msg)
        with ThreadPoolExecutor(max_workers=self.upload_workers) as pool:
            for done in pool.map(lambda job: self._upload(server_round, fround, *job), uploads):
                log.debug("stored %s", done)
        return kept

    def _upload(self, server_round: int, fround: int, msg: Message, party: Party) -> dict[str, Any]:
        key, record = next(iter(msg.content.array_records.items()))
        meta = {"source": "flwr", "flwr_round": server_round,
                "flwr_node_id": msg.metadata.src_node_id, "flwr_record": key,
                "flwr_metrics": metric_meta(msg.content)}
        return party.push(fround, arrayrecord_to_tensors(record),
                          num_examples=num_examples(msg.content, self.weighted_by_key), meta=meta)

    def _resolve(self, msg: Message, ref: ConfigRecord, party: Party, fround: int) -> bool:
        """Check a reference against its sender; fetch its arrays when Flower needs them."""
        if (ref.get("job"), ref.get("round"), ref.get("party")) != (party.job_id, fround,
                                                                      party.party_id):
            log.warning("dropping node %d's reply: its reference %s is not its update of round %d",
                        msg.metadata.src_node_id, dict(ref), fround)
            return False
        if not self.aggregate_in_fedfaas:
            update = self.admin.fetch_update(party.job_id, fround, party.party_id,
                                             digest=str(ref.get("digest", "")) or None)
            del msg.content[REF_KEY]
            msg.content[str(ref.get("record", "arrays"))] = tensors_to_arrayrecord(update.tensors)
        return True

    def _fedfaas_result(self, fround: int, replies: list[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid = [m.content for m in replies if not m.has_error() and m.has_content()]
        if not valid:
            return None, None
        try:
            self.admin.wait_round_closed(self._job(), fround, timeout_s=self.round_timeout_s)
        except RoundFailed as exc:
            log.warning("fedfaas round %d failed, no global model: %s", fround, exc.message)
            return None, None
        arrays = tensors_to_arrayrecord(self.admin.fetch_model(self._job(), fround).tensors)
        validate_message_reply_consistency(valid, self.weighted_by_key, check_arrayrecord=False)
        metrics_fn = getattr(self.inner, "train_metrics_aggr_fn", None) or aggregate_metricrecords
        return arrays, metrics_fn(valid, self.weighted_by_key)
