"""One aggregation step, as run by the ``aggregate`` OpenFaaS function (JIT paper 5.4-5.5).

A step folds a list of stored updates into a partial aggregate (continuing
from a checkpointed one when given) and writes the new partial to S3; a final
step turns the partial into the round's global model.  Steps are idempotent:
outputs are named after their inputs, so a step repeated after its instance
was killed half-way finds or rewrites the very same object, and nothing is
lost because inputs are never modified.

Every S3 key is derived here from (tenant, job, round); a caller cannot direct
reads or writes outside its job.  Updates are read up to ``READ_AHEAD`` ahead of
the one being fused (within ``READ_AHEAD_BYTES``), so a step's S3 round trips
overlap its fusion: 1.6x faster for 200 updates of 80 KB, 1.3x for 40 of 10 MB,
on the local stack.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from fedfaas import codec, keys
from fedfaas.contracts import StepAnswer, StepRequest, schema_json
from fedfaas.errors import BadRequest, FedfaasError, FusionError, NotFound
from fedfaas.fusion import get_algorithm
from fedfaas.fusion.algorithm import Algorithm, LinearAlgorithm, ServerState
from fedfaas.fusion.checks import check_updates
from fedfaas.fusion.partial import PartialAggregate
from fedfaas.model_schema import ParameterSchema
from fedfaas.store import ObjectStore, digest

log = logging.getLogger("fedfaas.aggregation")

READ_AHEAD = 4
"""Most updates read from S3 ahead of the one being fused: their round trips overlap
the fusion instead of adding up."""
READ_AHEAD_BYTES = 256 * 1024**2
"""Memory the updates read ahead may hold; large models read fewer ahead."""


def partial_id(base: str | None, parties: list[str]) -> str:
    """Deterministic name of the partial made by folding ``parties`` into ``base``."""
    text = json.dumps([base, sorted(parties)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Read:
    """One party's update as read for fusion, or why it cannot be fused."""

    party: str
    update: codec.ModelUpdate | None
    reason: str
    nbytes: int


class AggregationStep:
    """Runs steps against one object store (the function keeps one for its lifetime)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def _load(self, key: str) -> codec.ModelUpdate:
        return codec.decode(self.store.get(key))

    def _load_partial(self, req: StepRequest) -> tuple[PartialAggregate, dict[str, str]]:
        """The base partial and the updates excluded on the way to it."""
        if req.base is None:
            return PartialAggregate(), {}
        key = keys.s3_partial(req.tenant, req.job, req.round, req.base)
        try:
            stored = self._load(key)
        except NotFound:
            raise NotFound(f"partial aggregate {req.base!r} of round {req.round} does not exist") from None
        excluded = dict(stored.meta.get("excluded") or {})
        return PartialAggregate.from_tensors(stored.tensors, stored.meta, copy=True), excluded

    def _read(self, req: StepRequest, party: str) -> _Read:
        """Read and check one acknowledged update: its digest, its encoding, its weight, its schema."""
        expected = req.digests[party]
        try:
            body = self.store.get(keys.s3_update(req.tenant, req.job, req.round, party, expected))
        except NotFound:
            log.error("job %s round %d: the acknowledged update of %s is missing from S3",
                      req.job, req.round, party)
            return _Read(party, None, "its acknowledged update is missing from storage", 0)
        if digest(body) != expected:
            log.error("job %s round %d: the stored update of %s does not match its acknowledged "
                      "digest %s; it is not fused", req.job, req.round, party, expected)
            return _Read(party, None, f"its stored bytes do not match the acknowledged update "
                                      f"(sha256 {expected[:12]}...)", len(body))
        try:
            update = codec.decode(body)
        except FedfaasError as exc:
            return _Read(party, None, f"its stored update cannot be decoded: {exc.message}", len(body))
        weight = update.meta.get("num_examples", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            return _Read(party, None, "its num_examples is not a non-negative number", len(body))
        if req.parameter_schema is not None:
            diffs = req.parameter_schema.differences(ParameterSchema.of_tensors(update.tensors))
            if diffs:
                return _Read(party, None, "it does not match the job's model: " + "; ".join(diffs[:5]),
                             len(body))
        return _Read(party, update, "", len(body))

    def _updates(self, req: StepRequest, parties: list[str]) -> Iterator[_Read]:
        """The parties' updates in order, up to ``READ_AHEAD`` read while one is fused."""
        if not parties:
            return
        first = self._read(req, parties[0])
        ahead = max(1, min(READ_AHEAD, READ_AHEAD_BYTES // max(1, first.nbytes)))
        rest = iter(parties[1:])
        with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="read-ahead") as pool:
            pending: deque[Future[_Read]] = deque()

            def read_next() -> None:
                party = next(rest, None)
                if party is not None:
                    pending.append(pool.submit(self._read, req, party))

            for _ in range(ahead):
                read_next()
            yield first
            while pending:
                read = pending.popleft().result()
                read_next()
                yield read

    def _fold(self, partial: PartialAggregate, req: StepRequest, excluded: dict[str, str]) -> None:
        """Fold the request's parties in; an update that cannot be fused is excluded with its reason.

        Without the job's schema the first update fused defines the model's tensors.
        """
        # Parties already in the partial were folded by an earlier, interrupted run.
        todo = [p for p in dict.fromkeys(req.parties) if p not in partial and p not in excluded]
        for read in self._updates(req, todo):
            if read.update is None:
                excluded[read.party] = read.reason
                continue
            weight = float(read.update.meta.get("num_examples", 1)) or 1e-12
            try:
                partial.add(read.update.tensors, weight, read.party)
            except FusionError as exc:  # the partial is unchanged
                excluded[read.party] = exc.message

    def run(self, req: StepRequest) -> StepAnswer:
        """Execute one step; returns what it produced (keys, parties, weight, exclusions)."""
        algorithm = get_algorithm(req.algorithm.name, **req.algorithm.params)
        if req.finalize:
            return self._finalize(algorithm, req)
        if not isinstance(algorithm, LinearAlgorithm):
            raise BadRequest(f"{req.algorithm.name!r} needs all updates at once: send one finalize step")
        out_id = partial_id(req.base, req.parties)
        out_key = keys.s3_partial(req.tenant, req.job, req.round, out_id)
        existing = self.store.stat(out_key)
        if existing is not None:
            meta, _, _ = codec.decode_header(self.store.get(out_key))
            return StepAnswer(partial=out_id, parties=meta["parties"], total_weight=meta["total_weight"],
                              excluded=meta.get("excluded", {}), reused=True)
        partial, excluded = self._load_partial(req)
        before = len(partial.parties)
        started = time.perf_counter()
        self._fold(partial, req, excluded)
        fold_s = time.perf_counter() - started
        tensors, meta = partial.to_tensors()
        meta.update({"job": req.job, "round": req.round, "excluded": excluded})
        parts, _ = codec.encode_parts(tensors, meta)
        self.store.put(out_key, b"".join(parts))
        # What reading and fusing the updates took, apart from loading and writing the
        # partial: the gateway derives a one-update (eager) step from a larger fold.
        return StepAnswer(partial=out_id, parties=list(partial.parties), total_weight=partial.total_weight,
                          excluded=excluded, folded_updates=len(partial.parties) - before, fold_s=fold_s)

    def _finalize(self, algorithm: Algorithm, req: StepRequest) -> StepAnswer:
        model_key = keys.s3_model(req.tenant, req.job, req.round)
        if self.store.stat(model_key) is not None:
            meta, specs, _ = codec.decode_header(self.store.get(model_key))
            return StepAnswer(model_key=model_key, parties=meta.get("parties", []),
                              excluded=meta.get("excluded", {}), reused=True,
                              schema=schema_json(ParameterSchema.of_specs(specs)))
        global_model = None
        if algorithm.needs_global_model:
            try:
                global_model = self._load(keys.s3_model(req.tenant, req.job, req.round - 1)).tensors
            except NotFound:
                raise BadRequest(f"{req.algorithm.name!r} needs the previous global model; upload an "
                                 "initial model with PUT /v1/jobs/{job}/model") from None
        state = None
        try:
            stored = self._load(keys.s3_server_state(req.tenant, req.job, req.round - 1))
            state = ServerState.from_tensors(stored.tensors, stored.meta)
        except NotFound:
            pass
        if isinstance(algorithm, LinearAlgorithm):
            partial, excluded = self._load_partial(req)
            self._fold(partial, req, excluded)
            if len(partial.parties) < req.min_parties:
                return _below_quorum(partial.parties, excluded)
            result = algorithm.finalize(partial, global_model=global_model, state=state, consume=True)
        else:
            if req.base is not None:
                raise BadRequest(f"{req.algorithm.name!r} cannot continue from a partial aggregate")
            good, excluded = self._all_fusable(req)
            if len(good) < req.min_parties:
                return _below_quorum([r.party for r in good], excluded)
            updates = [cast(codec.ModelUpdate, r.update).tensors for r in good]
            weights = [float(cast(Mapping[str, Any], cast(codec.ModelUpdate, r.update).meta)
                             .get("num_examples", 1)) or 1e-12 for r in good]
            result = algorithm.fuse(updates, weights, [r.party for r in good], global_model=global_model,
                                   state=state)
        if result.state is not None:
            tensors, meta = result.state.to_tensors()
            self.store.put(keys.s3_server_state(req.tenant, req.job, req.round), codec.encode(tensors, meta))
        meta = {"job": req.job, "round": req.round, "kind": "global_model", "algorithm": req.algorithm.name,
                "parties": sorted(result.parties), "excluded": excluded}
        meta.update({k: v for k, v in result.meta.items() if isinstance(v, str | int | float | bool)})
        self.store.put(model_key, codec.encode(result.model, meta))
        return StepAnswer(model_key=model_key, parties=sorted(result.parties), excluded=excluded,
                          schema=schema_json(ParameterSchema.of_tensors(result.model)))

    def _all_fusable(self, req: StepRequest) -> tuple[list[_Read], dict[str, str]]:
        """Every update of the request that can be fused, and why the others cannot.

        Without the job's schema the one most updates share is the model's (the
        earliest listed wins a tie), so one malformed update cannot define it.
        """
        excluded: dict[str, str] = {}
        good = []
        for read in self._updates(req, list(req.parties)):
            if read.update is None:
                excluded[read.party] = read.reason
            else:
                good.append(read)
        if req.parameter_schema is None and good:
            shapes = Counter(ParameterSchema.of_tensors(cast(codec.ModelUpdate, r.update).tensors)
                             for r in good)
            reference = shapes.most_common(1)[0][0]
            kept = []
            for read in good:
                diffs = reference.differences(
                    ParameterSchema.of_tensors(cast(codec.ModelUpdate, read.update).tensors))
                if diffs:
                    excluded[read.party] = ("it does not match the model most updates share: "
                                            + "; ".join(diffs[:5]))
                else:
                    kept.append(read)
            good = kept
        if good:
            check_updates([cast(codec.ModelUpdate, r.update).tensors for r in good], [r.party for r in good])
        return good, excluded


def _below_quorum(parties: Any, excluded: dict[str, str]) -> StepAnswer:
    """A final step that wrote no model: too few updates could be fused."""
    return StepAnswer(parties=sorted(parties), excluded=excluded, below_quorum=True)
