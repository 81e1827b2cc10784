"""Just-in-time aggregation for federated learning (JIT paper, ``000_88bf82acece40542``).

- :mod:`~fedfaas.jit.spec`, :mod:`~fedfaas.jit.regression`, :mod:`~fedfaas.jit.formulas`,
  :mod:`~fedfaas.jit.calibration`, :mod:`~fedfaas.jit.estimator`, :mod:`~fedfaas.jit.estimate`:
  when updates arrive and how long aggregation takes (paper 4, 5.1-5.4);
- :mod:`~fedfaas.jit.last_arrival`, :mod:`~fedfaas.jit.planning`: the timer's aim at the
  round's last update, and how many aggregators finish it in time (beyond 5.4, 5.5);
- :mod:`~fedfaas.jit.learning`: corrections learned round by round, and reports;
- :mod:`~fedfaas.jit.strategies`, :mod:`~fedfaas.jit.scheduler`, :mod:`~fedfaas.jit.state`,
  :mod:`~fedfaas.jit.redis_state`: priorities, timers, capacity, preemption, claims (5.5);
- :mod:`~fedfaas.jit.service`: the gateway's facade on Redis.

The paper's evaluation (6) on a virtual clock lives in :mod:`bench.jit`.
"""

from fedfaas.jit.calibration import calibrate_t_pair
from fedfaas.jit.clock import Clock, SystemClock, VirtualClock
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.formulas import t_agg, t_comm
from fedfaas.jit.learning import ArrivalLearner, RoundReport
from fedfaas.jit.scheduler import Scheduler, SchedulerConfig
from fedfaas.jit.spec import STRATEGIES, EstimatorJob, PartyTiming
from fedfaas.jit.state import Decision, InMemoryState, SchedulerState, TaskRecord

__all__ = [
    "STRATEGIES",
    "ArrivalLearner",
    "Clock",
    "DeadlineEstimator",
    "Decision",
    "EstimatorJob",
    "InMemoryState",
    "JobEstimate",
    "PartyTiming",
    "RoundReport",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerState",
    "SystemClock",
    "TaskRecord",
    "VirtualClock",
    "calibrate_t_pair",
    "t_agg",
    "t_comm",
]
