"""The production side of OpenFaaS: the client the gateway calls functions with, and the
``stack.yml`` model (labels, durations) it reads a deployment's settings from.

The local OpenFaaS emulator that serves the same API on a developer machine is
development code and lives in :mod:`fedfaas.devstack.faas`.
"""
