"""The JIT paper's evaluation (JIT paper 6), outside the production package.

- :mod:`~bench.jit.cost`, :mod:`~bench.jit.scenarios`, :mod:`~bench.jit.simulator`: the
  container-seconds model, the workloads and the discrete-event simulator of Fig. 9,
  driving the production estimator, learner and scheduler on a virtual clock;
- :mod:`~bench.jit.keepalive`: the live platform's keep-alive, for the simulator;
- :mod:`~bench.jit.live_party`: party processes of the live benchmark.

Used by ``bench/jit_sim.py``, ``bench/jit_live.py`` and the tests; production code
(``fedfaas``, ``gateway``, ...) imports nothing from here.
"""
