"""Static checks of deploy/: the manifests agree with each other, with stack.yml and with the code.

No cluster is needed: every YAML file is parsed and cross-checked (names,
namespaces, ports, environment variables, secrets, timeouts, image pins).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from flask import Flask

from fedfaas.config import env_names, secret_names
from fedfaas.openfaas.stackfile import expand_env, parse_duration
from gateway.app import register_routes

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
FAASD_COMPOSE = DEPLOY / "faasd" / "docker-compose.additions.yaml"
HELM_VALUES = K8S / "openfaas-values.yaml"
DOCKERFILE = DEPLOY / "gateway.Dockerfile"
SECRETS_DIR = "/var/openfaas/secrets"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
SENSITIVE_ENV = re.compile(r"(PASSWORD|SECRET_KEY|TOKEN|ACCESS_KEY|ROOT_USER)$")


@functools.cache
def _docs(path: Path) -> list[Any]:
    """The YAML documents of ``path`` (parsed once per session; callers must not mutate them)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def _manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s (Helm values excluded)."""
    return [doc for path in sorted(K8S.glob("*.yaml")) if path != HELM_VALUES for doc in _docs(path)]


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _manifests() if doc["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in _by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _gateway_container() -> dict[str, Any]:
    containers = _pod_spec(_named("Deployment", "fedfaas-gateway"))["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _gateway_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _gateway_container()["env"] if "value" in e}


def _service_port(host: str, port: int) -> None:
    """Assert ``host`` (``name.namespace``) is a Service of deploy/k8s exposing ``port``."""
    name, _, namespace = host.partition(".")
    service = _named("Service", name)
    assert service["metadata"]["namespace"] == namespace, host
    assert port in [p["port"] for p in service["spec"]["ports"]], f"{host}:{port}"


def _env_names_read_by_code() -> set[str]:
    """``FEDFAAS_*`` variables that fedfaas.config.Settings and the gateway package read."""
    names = env_names()
    for path in sorted((ROOT / "gateway").glob("*.py")):
        names |= set(re.findall(r"\"(FEDFAAS_[A-Z0-9_]+)\"", path.read_text()))
    return names


def _secrets_read_by_code() -> set[str]:
    return secret_names()


def _stack_defaults() -> dict[str, Any]:
    """stack.yml with every ``${VAR:-default}`` at its default, whatever the environment holds."""
    doc: dict[str, Any] = yaml.safe_load(expand_env((ROOT / "stack.yml").read_text(), {}))
    return doc


def _helm_values() -> dict[str, Any]:
    values: dict[str, Any] = _docs(HELM_VALUES)[0]
    return values


def test_every_yaml_file_parses_and_objects_are_named() -> None:
    # Prepare
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))

    # Execute
    docs = {path: _docs(path) for path in paths}

    # Assert
    assert {K8S / n for n in ("namespaces.yaml", "redis.yaml", "minio.yaml", "gateway.yaml")} <= set(docs)
    assert FAASD_COMPOSE in docs and HELM_VALUES in docs
    for path, items in docs.items():
        assert items, path
        if path.parent == K8S and path != HELM_VALUES:
            for doc in items:
                assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], path
                assert isinstance(doc.get("kind"), str) and doc["kind"], path
                assert isinstance(doc.get("metadata", {}).get("name"), str), (path, doc["kind"])


def test_namespaced_objects_live_in_declared_namespaces() -> None:
    # Prepare
    declared = {doc["metadata"]["name"] for doc in _by_kind("Namespace")}

    # Execute
    placed = {(doc["kind"], doc["metadata"]["name"]): doc["metadata"].get("namespace")
              for doc in _manifests() if doc["kind"] != "Namespace"}

    # Assert
    assert declared == {"openfaas", "openfaas-fn", "fedfaas"}
    assert set(placed.values()) == {"fedfaas"}, placed
    assert _helm_values()["functionNamespace"] in declared


def test_services_select_pods_and_name_their_container_ports() -> None:
    workloads = [doc for doc in _manifests() if doc["kind"] in WORKLOAD_KINDS]
    for service in _by_kind("Service"):
        selector = service["spec"]["selector"]
        backends = [w for w in workloads
                    if w["metadata"]["namespace"] == service["metadata"]["namespace"]
                    and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(backends) == 1, service["metadata"]["name"]
        port_names = {p.get("name") for c in _pod_spec(backends[0])["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_gateway_urls_point_at_the_services_that_exist() -> None:
    # Prepare
    env = _gateway_env()
    redis_url = urlsplit(env["FEDFAAS_REDIS_URL"])
    s3_host, _, s3_port = env["FEDFAAS_S3_ENDPOINT"].partition(":")
    faas = urlsplit(env["FEDFAAS_FAAS_GATEWAY_URL"])

    # Execute / Assert
    assert redis_url.scheme == "redis" and redis_url.hostname and redis_url.port
    _service_port(redis_url.hostname, redis_url.port)
    _service_port(s3_host, int(s3_port))
    # OpenFaaS's own gateway Service comes from the Helm chart: port 8080 in "openfaas".
    assert (faas.hostname, faas.port) == ("gateway.openfaas", 8080)
    assert env["FEDFAAS_S3_BUCKET"] == "fedfaas"


def test_bucket_job_targets_the_minio_service_and_the_gateway_bucket() -> None:
    # Prepare
    env = {e["name"]: e.get("value") for e in
           _pod_spec(_named("Job", "minio-make-bucket"))["containers"][0]["env"]}

    # Execute
    url = urlsplit(env["S3_URL"])

    # Assert
    assert url.hostname and url.port
    _service_port(url.hostname, url.port)
    assert f"{url.hostname}:{url.port}" == _gateway_env()["FEDFAAS_S3_ENDPOINT"]
    assert env["S3_BUCKET"] == _gateway_env()["FEDFAAS_S3_BUCKET"]


def test_stack_yml_defaults_match_the_manifests() -> None:
    # Prepare
    env = _gateway_env()

    # Execute
    functions = _stack_defaults()["functions"]

    # Assert
    for name, fn in functions.items():
        fenv = fn.get("environment", {})
        for key in ("FEDFAAS_REDIS_URL", "FEDFAAS_S3_ENDPOINT", "FEDFAAS_S3_BUCKET"):
            if key in fenv:
                assert fenv[key] == env[key], (name, key)


def test_gateway_env_names_are_read_by_the_code() -> None:
    # Prepare
    known = _env_names_read_by_code()
    compose_env = [item.partition("=")[0] for item in
                   _docs(FAASD_COMPOSE)[0]["services"]["fedfaas-gateway"]["environment"]]

    # Execute
    k8s_names = [e["name"] for e in _gateway_container()["env"]]

    # Assert
    assert {"FEDFAAS_REDIS_URL", "FEDFAAS_S3_ENDPOINT", "FEDFAAS_FAAS_GATEWAY_URL"} <= known
    assert set(k8s_names) <= known, set(k8s_names) - known
    assert set(compose_env) <= known, set(compose_env) - known
    assert _gateway_env()["FEDFAAS_SECRETS_DIR"] == SECRETS_DIR


def test_gateway_mounts_exactly_the_secrets_the_code_reads() -> None:
    # Prepare
    spec = _pod_spec(_named("Deployment", "fedfaas-gateway"))
    mounts = {m["name"]: m["mountPath"] for m in _gateway_container()["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if mounts.get(v["name"]) == SECRETS_DIR)
    compose = _docs(FAASD_COMPOSE)[0]["services"]["fedfaas-gateway"]

    # Execute
    k8s_files = {item["path"] for src in volume["projected"]["sources"] for item in src["secret"]["items"]}
    compose_files = {Path(v["target"]).name for v in compose["volumes"]
                     if str(Path(v["target"]).parent) == SECRETS_DIR}

    # Assert
    readable = _secrets_read_by_code()
    assert {"fedfaas-admin-token", "s3-access-key", "s3-secret-key"} <= k8s_files <= readable
    assert compose_files == k8s_files


def test_secrets_script_creates_every_secret_the_manifests_need() -> None:
    # Prepare
    script = (K8S / "secrets.example.sh").read_text()
    needed: set[str] = set()
    for doc in _manifests():
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = _pod_spec(doc)
        for container in spec["containers"]:
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    needed.add(ref["name"])
        for vol in spec.get("volumes", []):
            for src in vol.get("projected", {}).get("sources", []):
                needed.add(src["secret"]["name"])

    # Execute
    created = set(re.findall(r"for name in ([a-z0-9 -]+); do", script)[0].split())
    created |= set(re.findall(r"create secret generic ([a-z0-9-]+)", script))

    # Assert
    assert {"s3-access-key", "s3-secret-key", "fedfaas-admin-token"} <= created
    assert needed <= created, needed - created
    assert "openfaas-fn" in script and "fedfaas" in script


def test_openfaas_timeouts_cover_the_functions_exec_timeout() -> None:
    # Prepare
    values = _helm_values()
    functions = _stack_defaults()["functions"]
    exec_timeouts = [parse_duration(fn["environment"][key], f"{name}.{key}")
                     for name, fn in functions.items()
                     for key in ("exec_timeout", "read_timeout", "write_timeout")
                     if key in fn.get("environment", {})]

    # Execute
    upstream = parse_duration(values["gateway"]["upstreamTimeout"], "gateway.upstreamTimeout")
    others = {key: parse_duration(values[section][field], key) for key, (section, field) in {
        "gateway.readTimeout": ("gateway", "readTimeout"),
        "gateway.writeTimeout": ("gateway", "writeTimeout"),
        "faasnetes.readTimeout": ("faasnetes", "readTimeout"),
        "faasnetes.writeTimeout": ("faasnetes", "writeTimeout"),
        "queueWorker.ackWait": ("queueWorker", "ackWait"),
    }.items()}

    # Assert
    assert exec_timeouts and max(exec_timeouts) <= upstream
    assert upstream == 305  # tests/core/test_stack_yml.py: GATEWAY_UPSTREAM_TIMEOUT_S
    assert all(seconds > upstream for seconds in others.values()), others
    assert float(_gateway_env()["FEDFAAS_FUNCTION_TIMEOUT_S"]) >= upstream
    assert values["openfaasPro"] is False


def test_gateway_probes_resources_and_replicas() -> None:
    # Prepare
    deployment = _named("Deployment", "fedfaas-gateway")
    container = _gateway_container()
    routes = Flask("probe-routes")
    register_routes(routes)
    served = {rule.rule for rule in routes.url_map.iter_rules() if "GET" in (rule.methods or ())}

    # Execute
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]

    # Assert
    assert deployment["spec"]["replicas"] == 2
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz")
    for path in (readiness["path"], liveness["path"]):
        assert path in served, path
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_workloads_run_as_non_root_with_resources() -> None:
    for doc in _manifests():
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = _pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert spec["securityContext"]["runAsUser"] != 0, doc["metadata"]["name"]
        for container in spec["containers"]:
            assert container["resources"]["requests"], (doc["metadata"]["name"], container["name"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_dockerfile_pins_torch_and_runs_gunicorn_as_non_root() -> None:
    # Prepare
    text = DOCKERFILE.read_text()
    instructions = [line.split(None, 1) for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]

    # Execute
    froms = [rest for op, rest in instructions if op == "FROM"]
    users = [rest.strip() for op, rest in instructions if op == "USER"]
    cmd = yaml.safe_load(next(rest for op, rest in instructions if op == "CMD"))
    # Every quoted requirement naming torch, e.g. "torch==2.13.0" in a pip install line.
    torch_requirements = re.findall(r"\"(torch\b[^\"]*)\"", text)

    # Assert
    assert all(f.startswith("python:3.11-slim") for f in froms)
    assert torch_requirements and set(torch_requirements) == {"torch==2.13.0"}
    assert "download.pytorch.org/whl/cpu" in text
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert cmd[0] == "gunicorn" and cmd[-1] == "gateway.wsgi:app"
    bind = cmd[cmd.index("--bind") + 1]
    ports = [p["containerPort"] for p in _gateway_container()["ports"]]
    assert int(bind.rpartition(":")[2]) in ports


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: p.name)
def test_no_secret_values_are_committed(path: Path) -> None:
    for doc in _docs(path):
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            assert not any((doc.get("data") or {}).values()), path
            assert not any((doc.get("stringData") or {}).values()), path
        if path == FAASD_COMPOSE:
            for name, service in doc["services"].items():
                for item in service.get("environment", []):
                    key = item.partition("=")[0]
                    assert not SENSITIVE_ENV.search(key) or key.endswith("_FILE"), (name, key)
        for env in _env_entries(doc):
            assert not SENSITIVE_ENV.search(env["name"]) or "value" not in env, (path, env["name"])
        for text_value in _strings(doc):
            assert not re.fullmatch(r"[A-Za-z0-9+/]{32,}={0,2}", text_value), (path, text_value)


def _env_entries(node: Any) -> list[dict[str, Any]]:
    """Kubernetes-style ``{name: ..., value|valueFrom: ...}`` entries anywhere in ``node``."""
    if isinstance(node, list):
        return [e for v in node for e in _env_entries(v)]
    if not isinstance(node, dict):
        return []
    found = [node] if "name" in node and ("value" in node or "valueFrom" in node) else []
    return found + [e for v in node.values() for e in _env_entries(v)]


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_faasd_functions_reach_redis_and_minio_on_the_bridge() -> None:
    # Prepare
    services = _docs(FAASD_COMPOSE)[0]["services"]

    # Execute
    published = {name: services[name]["ports"] for name in ("redis", "minio")}

    # Assert
    assert "10.62.0.1:6379:6379" in published["redis"]
    assert "10.62.0.1:9000:9000" in published["minio"]
    env = dict(item.partition("=")[::2] for item in services["fedfaas-gateway"]["environment"])
    assert env["FEDFAAS_REDIS_URL"] == "redis://redis:6379/0"
    assert env["FEDFAAS_S3_ENDPOINT"] == "minio:9000"
    assert env["FEDFAAS_FAAS_GATEWAY_URL"] == "http://gateway:8080"
