"""Client reputation over rounds (FLStore Table 1, policy P4; Hu et al. 2022, Khan et al. 2024c).

A beta reputation with exponential forgetting (Jøsang & Ismail 2002, as used
for FL by Kang et al. 2019).  Client ``c``'s record in round ``r`` gives
positive and negative evidence::

    q      = contribution_c,r / max_j |contribution_j,r|       in [-1, 1]
    pos    = w_on_time * on_time + w_contribution * max(q, 0)
    neg    = w_on_time * (1 - on_time) + w_contribution * max(-q, 0) + w_flag * flagged

(a term is left out when its field is absent).  With ``d = decay^(R - r)``,
``R`` the latest round considered::

    alpha_c = sum_r d * pos      beta_c = sum_r d * neg
    reputation_c  = (alpha_c + 1) / (alpha_c + beta_c + 2)     in (0, 1)
    uncertainty_c = 2 / (alpha_c + beta_c + 2)

so a client without evidence sits at 0.5 with uncertainty 1, recent rounds
weigh most, and one flag costs ``w_flag`` good rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedfaas.errors import BadRequest
from fedfaas.workloads.base import WorkloadInputs, WorkloadSpec, round_records
from fedfaas.workloads.params import Param

NAME = "reputation"
PARAMS = (
    Param("decay", "float", 0.9, "per-round forgetting factor in (0, 1]", minimum=0.0,
          maximum=1.0, exclusive_minimum=True),
    Param("as_of_round", "int", None, "score as of this round (default: the latest)", minimum=0),
    Param("window", "int", None, "only the last this many rounds (default: all)", minimum=1),
    Param("w_on_time", "float", 1.0, "weight of on-time behaviour", minimum=0.0),
    Param("w_contribution", "float", 1.0, "weight of the normalised contribution", minimum=0.0),
    Param("w_flag", "float", 2.0, "weight of a malicious-filter flag", minimum=0.0),
    Param("clients", "str_list", None, "clients to report (default: all in the records)"),
    Param("threshold", "float", 0.5, "clients below this reputation are listed as untrusted",
          minimum=0.0, maximum=1.0),
)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def reputations(records: Sequence[Mapping[str, Any]], *, decay: float = 0.9,
                as_of_round: int | None = None, w_on_time: float = 1.0,
                w_contribution: float = 1.0, w_flag: float = 2.0,
                clients: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Beta reputation of each client from round records (formula in the module docstring)."""
    recs = [r for r in records if as_of_round is None or int(r["round"]) <= as_of_round]
    if not recs:
        raise BadRequest(f"{NAME}: no round records at or before round {as_of_round}")
    latest = max(int(r["round"]) for r in recs)
    alpha: dict[str, float] = {}
    beta: dict[str, float] = {}
    rounds: dict[str, int] = {}
    for rec in recs:
        d = decay ** (latest - int(rec["round"]))
        infos = {c: i for c, i in rec.get("clients", {}).items() if isinstance(i, Mapping)}
        contribs = [abs(x) for i in infos.values()
                    if (x := _number(i.get("contribution"))) is not None]
        scale = max(contribs, default=0.0)
        for client, info in infos.items():
            pos = neg = 0.0
            on_time = info.get("on_time")
            if isinstance(on_time, bool):
                pos += w_on_time * on_time
                neg += w_on_time * (not on_time)
            contribution = _number(info.get("contribution"))
            if contribution is not None and scale > 0:
                q = contribution / scale
                pos += w_contribution * max(q, 0.0)
                neg += w_contribution * max(-q, 0.0)
            if info.get("flagged") is True:
                neg += w_flag
            alpha[client] = alpha.get(client, 0.0) + d * pos
            beta[client] = beta.get(client, 0.0) + d * neg
            rounds[client] = rounds.get(client, 0) + 1
    wanted = sorted(alpha) if clients is None else list(clients)
    out: dict[str, dict[str, float]] = {}
    for c in wanted:
        a, b = alpha.get(c, 0.0), beta.get(c, 0.0)
        out[c] = {"reputation": (a + 1.0) / (a + b + 2.0), "uncertainty": 2.0 / (a + b + 2.0),
                  "alpha": a, "beta": b, "rounds": float(rounds.get(c, 0))}
    return out


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    records = round_records(inputs.metadata, NAME)
    if p["window"] is not None:
        cut = p["as_of_round"] if p["as_of_round"] is not None else int(records[-1]["round"])
        records = [r for r in records if cut - p["window"] < int(r["round"]) <= cut]
    scores = reputations(records, decay=p["decay"], as_of_round=p["as_of_round"],
                         w_on_time=p["w_on_time"], w_contribution=p["w_contribution"],
                         w_flag=p["w_flag"], clients=p["clients"])
    ranking = sorted(scores, key=lambda c: (-scores[c]["reputation"], c))
    return {
        "workload": NAME,
        "scores": scores,
        "ranking": ranking,
        "untrusted": [c for c in ranking if scores[c]["reputation"] < p["threshold"]],
        "rounds": [int(r["round"]) for r in records],
        "decay": p["decay"],
        "round": inputs.round,
    }


SPEC = WorkloadSpec(
    name=NAME,
    policy="P4",
    summary="decayed beta reputation per client from contributions, flags and punctuality",
    params=PARAMS,
    run_fn=_execute,
    needs=frozenset({"metadata"}),
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and score the clients in the cached round records."""
    return SPEC.run(inputs, params)
