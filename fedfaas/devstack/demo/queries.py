"""Non-training queries on the demo's job (FLStore 4.4, Table 1): filtering, incentives, clustering.

Each query goes to the gateway's Request Tracker (``POST /v1/jobs/{job}/queries``),
which runs the workload on the cache function holding the round's updates and
answers with JSON.  The demo asks three questions about the last round:

- *malicious-filter*: which parties sent suspicious updates (the planted one should be there);
- *contribution*: GTG-Shapley value of every party on the job's validation set;
- *clustering*: groups of parties whose updates point the same way (their label skew).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fedfaas.client import AdminClient
from fedfaas.errors import FedfaasError

#: Workload name -> parameters the demo asks with (seeded, bounded GTG budget).
QUERIES: dict[str, dict[str, Any]] = {
    "malicious-filter": {},
    "contribution": {"method": "gtg", "max_permutations": 200, "seed": 0},
    "clustering": {"seed": 0},
}
#: A Shapley query on 20+ parties evaluates a few thousand sub-models: give it time.
QUERY_TIMEOUT_S = (5.0, 300.0)


@dataclass
class QueryResult:
    """One workload's answer (or why there is none)."""

    workload: str
    round: int
    seconds: float
    function: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def run_queries(admin: AdminClient, job_id: str, rnd: int,
                queries: dict[str, dict[str, Any]] | None = None) -> dict[str, QueryResult]:
    """Ask every workload of ``queries`` about round ``rnd`` of ``job_id``; failures are recorded."""
    out: dict[str, QueryResult] = {}
    for workload, params in (queries or QUERIES).items():
        began = time.monotonic()
        try:
            answer = admin.http.json("POST", f"/v1/jobs/{job_id}/queries",
                                     json_body={"workload": workload, "round": rnd,
                                                "params": params},
                                     timeout=QUERY_TIMEOUT_S, idempotent=True)
        except FedfaasError as exc:
            out[workload] = QueryResult(workload, rnd, time.monotonic() - began, error=str(exc))
            continue
        seconds = time.monotonic() - began
        if answer.get("status") != "done":
            out[workload] = QueryResult(workload, rnd, seconds,
                                        error=f"query ended {answer.get('status')!r}: "
                                              f"{answer.get('error')}")
            continue
        out[workload] = QueryResult(workload, rnd, seconds, function=str(answer.get("function", "")),
                                    result=dict(answer.get("result") or {}))
    return out
