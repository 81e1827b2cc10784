"""OpenFaaS function ``wl-scheduling``: runs the scheduling workload on data read from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("scheduling")
