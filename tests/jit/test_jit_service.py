"""The gateway's facade on a real Redis: two rounds, learning in between, reports out."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import NotFound
from fedfaas.jit.service import JitService
from fedfaas.jit.spec import EstimatorJob, PartyTiming

MB = 10**6


def _round(svc: JitService, job: EstimatorJob, parties: list[PartyTiming], r: int, t0: float,
           offsets: dict[str, float]) -> None:
    """Run one round: arrivals at t0 + offset, then launch, complete, finalise, learn."""
    svc.start_round(job, parties, r, now=t0, t_pair=0.0)
    for pid, off in sorted(offsets.items(), key=lambda kv: kv[1]):
        assert svc.record_arrival(job.job_id, r, pid, f"{pid}-r{r}", now=t0 + off)
    end = t0 + max(offsets.values())
    for d in svc.tick(now=end):
        assert d.kind == "aggregate"
        svc.complete(d.decision_id)
    (final,) = svc.tick(now=end + 1)
    assert final.kind == "finalise"
    svc.complete(final.decision_id)
    svc.finish_round(job.job_id, r, t_agg_obs=1.0)


def test_two_rounds_learn_a_late_party_and_report(service: JitService) -> None:
    # Prepare: 100 MB model, 10 MB/s links -> t_comm 20 s; epoch 60 s -> predicted t_upd 80 s
    job = EstimatorJob(job_id="job-a", model_bytes=100 * MB, strategy="lazy")
    parties = [PartyTiming(party_id=p, t_epoch=60.0, b_down=10 * MB, b_up=10 * MB)
               for p in ("slow", "fast")]
    # Execute: "slow" always 20% late
    _round(service, job, parties, 0, 0.0, {"slow": 96.0, "fast": 80.0})
    _round(service, job, parties, 1, 200.0, {"slow": 96.0, "fast": 80.0})
    est = service.estimate(job, parties, t_pair=0.0)
    # Assert
    assert est.t_upd.tolist() == pytest.approx([96.0, 80.0])
    reports = service.reports("job-a")
    assert [r["round"] for r in reports] == [0, 1]
    assert reports[0]["t_rnd_error"] == pytest.approx(16.0)
    assert reports[1]["mae_t_upd"] == pytest.approx(0.0)
    rows = service.round_report("job-a", 0)["parties"]
    assert rows[0] == {"party_id": "slow", "predicted_t_upd": 80.0, "observed_t_upd": 96.0,
                       "error": 16.0}
    with pytest.raises(NotFound):
        service.round_report("job-a", 7)


def test_t_pair_is_calibrated_once_per_model_size(service: JitService) -> None:
    first = service.t_pair(4 * MB)
    assert first > 0 and service.t_pair(4 * MB) == first


def test_jit_plans_fewer_aggregators_for_spread_arrivals_and_records_the_plan(
        service: JitService) -> None:
    # Prepare: 40 parties with epochs spread over 20-100 s, 10 MB model, up to 4 aggregators,
    # 0.5 s to fuse a pair: the round's work trickles in and one aggregator keeps up.
    job = EstimatorJob(job_id="job-p", model_bytes=10 * MB, strategy="jit", n_agg=4)
    parties = [PartyTiming(party_id=f"p{i}", t_epoch=20.0 + 2.0 * i, b_down=10 * MB,
                            b_up=10 * MB) for i in range(40)]
    offsets = {p.party_id: float(p.t_epoch) + 2.0 for p in parties}  # t_comm 2 s

    # Execute: one round observed, then the next round's plan
    service.start_round(job, parties, 0, now=0.0, t_pair=0.5)
    for pid, off in sorted(offsets.items(), key=lambda kv: kv[1]):
        service.record_arrival(job.job_id, 0, pid, f"{pid}-r0", now=off)
    for d in service.tick(now=200.0):
        service.complete(d.decision_id)
    service.finish_round(job.job_id, 0, t_agg_obs=12.0)
    task, est = service.start_round(job, parties, 1, now=300.0, t_pair=0.5)

    # Assert
    assert est.n_agg is not None and est.n_agg < 4
    assert task.n_agg == est.n_agg
    assert est.to_dict(parties=False)["n_agg_planned"] == est.n_agg


def test_finish_round_steers_the_timer_share_by_observed_latency(service: JitService) -> None:
    # A JIT job whose rounds publish 0.2 s after the last update while eager would
    # take ~0.35 s (two 100 MB state transfers at 1 GB/s, the fusion, the write).
    # From the third round on (parties seen twice) on time grows the timer's share
    # of the headroom, and 30 s late shrinks it.
    job = EstimatorJob(job_id="job-l", model_bytes=100 * MB, strategy="jit", c_agg=2, b_dc=1e9)
    parties = [PartyTiming(party_id=p, t_epoch=60.0, b_down=10 * MB, b_up=10 * MB)
               for p in ("a", "b")]
    shares = []
    for r, late in enumerate((0.2, 0.2, 0.2, 30.0)):
        t0 = 100.0 * r
        _, est = service.start_round(job, parties, r, now=t0, t_pair=0.1)
        assert est.target_latency == pytest.approx(0.2 + 0.05 + 0.1, rel=0.2)
        for pid, off in (("a", 80.0), ("b", 81.0)):
            service.record_arrival(job.job_id, r, pid, f"{pid}-r{r}", now=t0 + off)
        service.finish_round(job.job_id, r, published_at=t0 + 81.0 + late)
        shares.append(service.learner(job.job_id).timer_share)
    assert shares[0] == shares[1] < shares[2]
    assert shares[3] < shares[2]
    # Each round's report says how late it published against what its target allowed.
    rows = service.reports(job.job_id)
    assert [r["latency"] for r in rows] == pytest.approx([0.2, 0.2, 0.2, 30.0])
    assert all(r["target_latency"] == pytest.approx(0.35, rel=0.2) for r in rows)
    state = service.learner(job.job_id).controller()
    assert state["rounds_seen"] == 4 and state["timer_share"] == shares[3]
    assert state["latency_ratio"] is not None and state["latency_ratio"] > 1


def test_a_round_closed_at_t_wait_counts_its_latency_from_t_wait(service: JitService) -> None:
    # Prepare: two parties due at 80 s; "skipper" sends nothing, so the round closes at
    # t_wait = 120 s and publishes 0.5 s later.
    job = EstimatorJob(job_id="job-t", model_bytes=100 * MB, strategy="jit", t_wait=120.0)
    parties = [PartyTiming(party_id=p, t_epoch=60.0, b_down=10 * MB, b_up=10 * MB)
               for p in ("sender", "skipper")]
    service.start_round(job, parties, 0, now=0.0, t_pair=0.0)
    service.record_arrival("job-t", 0, "sender", "sender-r0", now=80.0)
    # Execute
    report = service.finish_round("job-t", 0, published_at=120.5, closable_at=120.0)
    # Assert: 0.5 s, not the 40.5 s since the last update that no aggregation could shorten
    assert report.latency == pytest.approx(0.5)
    assert np.isnan(report.observed_t_upd[1])  # no update
