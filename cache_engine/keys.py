"""Data keys of FLStore's Cache Engine table (FLStore paper, section 4.2).

A :class:`DataKey` names one cacheable piece of FL data: a client's model
update of a round, the aggregated (global) model of a round, or the metadata and
hyperparameters of a round (optionally of one client).  Its string form is safe
inside a Redis key and always starts with the tenant, so every table entry, and
every lookup, is namespaced by tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedfaas.errors import BadRequest
from fedfaas.spec import check_id

Kind = Literal["update", "model", "meta"]
KINDS: tuple[Kind, ...] = ("update", "model", "meta")
MAX_ROUND = 10**9
SEP = ":"
# Ids (tenant, job, client, cache function, workload) follow fedfaas's one id rule,
# :func:`fedfaas.spec.check_id`: a DNS label, so no ``:``, ``/`` or ``..`` can appear.


def check_round(value: object) -> int:
    """Return ``value`` if it is a round number in ``[0, 10**9)``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_ROUND:
        raise BadRequest(f"round must be an integer in [0, {MAX_ROUND}); got {value!r}",
                         code="bad_round")
    return value


@dataclass(frozen=True)
class DataKey:
    """One cacheable item: ``(tenant, job, round, client, kind)``.

    ``kind`` is ``"update"`` (a client's model update; ``client`` required),
    ``"model"`` (the aggregated model of the round; ``client`` is None) or
    ``"meta"`` (metadata and hyperparameters of the round, or of one client in
    the round when ``client`` is given).
    """

    tenant: str
    job: str
    round: int
    client: str | None
    kind: str

    def __post_init__(self) -> None:
        check_id(self.tenant, "tenant")
        check_id(self.job, "job")
        check_round(self.round)
        if self.kind not in KINDS:
            raise BadRequest(f"kind must be one of {list(KINDS)}; got {self.kind!r}",
                             code="bad_kind")
        if self.kind == "update" and self.client is None:
            raise BadRequest("an update key needs a client", code="bad_key")
        if self.kind == "model" and self.client is not None:
            raise BadRequest("the aggregated model of a round has no client", code="bad_key")
        if self.client is not None:
            check_id(self.client, "client")

    @classmethod
    def update(cls, tenant: str, job: str, round: int, client: str) -> DataKey:
        """Key of ``client``'s model update in ``round``."""
        return cls(tenant, job, round, client, "update")

    @classmethod
    def model(cls, tenant: str, job: str, round: int) -> DataKey:
        """Key of the aggregated model produced by ``round``."""
        return cls(tenant, job, round, None, "model")

    @classmethod
    def meta(cls, tenant: str, job: str, round: int, client: str | None = None) -> DataKey:
        """Key of the metadata/hyperparameters of ``round`` (of one client if given)."""
        return cls(tenant, job, round, client, "meta")

    def sort_key(self) -> tuple[str, str, str, int, str]:
        """Total order: tenant, job, kind, round, client (round-level entries first)."""
        return (self.tenant, self.job, self.kind, self.round, self.client or "")

    def __lt__(self, other: DataKey) -> bool:
        return self.sort_key() < other.sort_key()

    @property
    def scope(self) -> tuple[str, str]:
        """``(tenant, job)``: the unit of isolation and of policy state."""
        return (self.tenant, self.job)

    def to_str(self) -> str:
        """``tenant:job:kind:round[:client]``, parsed back by :meth:`from_str`."""
        parts = [self.tenant, self.job, self.kind, str(self.round)]
        if self.client is not None:
            parts.append(self.client)
        return SEP.join(parts)

    def __str__(self) -> str:
        return self.to_str()

    @classmethod
    def from_str(cls, text: str | bytes) -> DataKey:
        """Parse the string form written by :meth:`to_str`.

        Raises
        ------
        BadRequest
            If ``text`` is not a well-formed key.
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        parts = text.split(SEP)
        if len(parts) not in (4, 5) or not parts[3].isdigit():
            raise BadRequest(f"malformed data key {text!r}", code="bad_key")
        client = parts[4] if len(parts) == 5 else None
        return cls(parts[0], parts[1], int(parts[3]), client, parts[2])
