"""OpenFaaS function ``wl-cosine-similarity``: the cosine-similarity workload (fedfaas.workloads), reading its data from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("cosine-similarity")
