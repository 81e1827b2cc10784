"""OpenFaaS function ``wl-malicious-filter``: the malicious-filter workload (fedfaas.workloads), reading its data from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("malicious-filter")
