"""OpenFaaS function ``wl-cosine-similarity``: runs the cosine-similarity workload on data read from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("cosine-similarity")
