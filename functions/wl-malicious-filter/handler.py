"""OpenFaaS function ``wl-malicious-filter``: runs the malicious-filter workload on data read from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("malicious-filter")
