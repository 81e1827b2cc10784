"""Python SDK for fedfaas parties and job owners (gateway API v1).

Parties use :class:`Party` (register, fetch the global model, push updates,
wait for rounds, report measured times and bandwidth); job owners use
:class:`AdminClient`.  Every error is a :class:`fedfaas.errors.FedfaasError`.
"""

from fedfaas.client.admin import AdminClient
from fedfaas.client.http import DEFAULT_TIMEOUT_S, FedfaasClient, error_from_response
from fedfaas.client.measure import BandwidthMeter, TrainingTimer, measure_training
from fedfaas.client.party import Party
from fedfaas.client.payload import GlobalModel, as_tensors
from fedfaas.client.retry import NO_RETRY, Backoff, Poll, Retry, parse_retry_after
from fedfaas.client.rounds import JobFinished, RoundFailed, WaitTimeout

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NO_RETRY",
    "AdminClient",
    "Backoff",
    "BandwidthMeter",
    "FedfaasClient",
    "GlobalModel",
    "JobFinished",
    "Party",
    "Poll",
    "Retry",
    "RoundFailed",
    "TrainingTimer",
    "WaitTimeout",
    "as_tensors",
    "error_from_response",
    "measure_training",
    "parse_retry_after",
]
