"""OpenFaaS function ``wl-contribution``: the contribution workload (fedfaas.workloads), reading its data from S3."""

from fedfaas.workload_function import make_handler

handle = make_handler("contribution")
