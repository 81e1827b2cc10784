"""OpenFaaS function ``wl-inference``: runs the inference workload on data read from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("inference")
