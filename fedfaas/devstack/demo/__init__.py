"""``fedfaas demo``: the main FL job end to end on real data (JIT paper 6, FLStore 5).

20+ party processes train a torch MLP on non-IID shares of scikit-learn's
digits against a private local stack; the job runs under JIT and again under
eager-serverless aggregation, FLStore answers non-training queries, and a
report with plots is written.  Entry point: :func:`run`.
"""

from fedfaas.devstack.demo.plan import DemoConfig
from fedfaas.devstack.demo.runner import run

__all__ = ["DemoConfig", "run"]
