"""Typed reader for an OpenFaaS ``stack.yml`` (the faas-cli stack file).

The same file deploys on OpenFaaS with ``faas-cli deploy -f stack.yml`` and runs
locally under :mod:`fedfaas.devstack.faas.router`.  Like faas-cli, ``${VAR}``,
``${VAR:-default}`` and ``${VAR-default}`` are expanded in the raw text before
the YAML is parsed.  Scaling settings come from the OpenFaaS labels
(``com.openfaas.scale.min``/``max``/``zero``/``zero-duration``); timeouts and
per-replica concurrency from the of-watchdog environment variables
(``exec_timeout``, ``write_timeout``, ``max_inflight``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedfaas.errors import BadRequest

LABEL_SCALE_MIN = "com.openfaas.scale.min"
LABEL_SCALE_MAX = "com.openfaas.scale.max"
LABEL_SCALE_ZERO = "com.openfaas.scale.zero"
LABEL_SCALE_ZERO_DURATION = "com.openfaas.scale.zero-duration"
LABEL_MAX_INFLIGHT = "com.openfaas.max_inflight"
ENV_EXEC_TIMEOUT = "exec_timeout"
ENV_WRITE_TIMEOUT = "write_timeout"
ENV_MAX_INFLIGHT = "max_inflight"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FUNCTION_KEYS = frozenset(
    {
        "lang",
        "handler",
        "image",
        "fprocess",
        "environment",
        "environment_file",
        "secrets",
        "labels",
        "annotations",
        "limits",
        "requests",
        "constraints",
        "build_args",
        "build_options",
        "build_secrets",
        "readonly_root_filesystem",
        "namespace",
        "skip_build",
        "platforms",
    }
)


class StackFileError(BadRequest):
    """The stack file is unreadable or violates the OpenFaaS schema."""

    code = "bad_stack_file"


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the stack file, with its scaling and timeout settings resolved.

    ``None`` means "not set in the stack file"; the router applies its global
    defaults then.
    """

    name: str
    lang: str
    handler: Path
    image: str
    fprocess: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    readonly_root_filesystem: bool = False
    namespace: str | None = None
    scale_min: int | None = None
    scale_max: int | None = None
    scale_zero: bool | None = None
    scale_zero_duration_s: float | None = None
    exec_timeout_s: float | None = None
    max_inflight: int | None = None


@dataclass(frozen=True)
class StackFile:
    """A parsed stack file: provider settings, functions and ``configuration.copy`` paths."""

    path: Path
    version: str
    provider: str
    gateway: str | None
    functions: dict[str, FunctionSpec]
    copy_paths: tuple[Path, ...] = ()
    templates: tuple[dict[str, Any], ...] = ()


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` as faas-cli does.

    An unset ``${VAR}`` without a default expands to the empty string.
    ``:-`` also replaces an empty value; ``-`` only an unset one.
    """

    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if operator == ":-" and not value:
            return default or ""
        if operator == "-" and value is None:
            return default or ""
        return value or ""

    return _ENV_REF.sub(substitute, text)


def parse_duration(value: object, where: str) -> float:
    """Seconds from a Go duration (``"1m30s"``, ``"500ms"``) or a plain number of seconds."""
    if isinstance(value, bool):
        raise StackFileError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _GO_DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise StackFileError(
                    f"{where}: {value!r} is not a duration (use e.g. '30s', '5m', '1h30m')"
                ) from None
            seconds = sum(float(n) * _GO_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise StackFileError(f"{where}: duration must not be negative, got {value!r}")
    return seconds


def load_stack(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> StackFile:
    """Read, expand and validate a stack file.

    Parameters
    ----------
    path
        The ``stack.yml``; handler, copy and environment-file paths are relative to it.
    env
        Variables for ``${VAR}`` expansion, on top of ``os.environ``.

    Raises
    ------
    StackFileError
        With a message naming the offending function and field.
    """
    stack_path = Path(path).resolve()
    try:
        raw_text = stack_path.read_text()
    except OSError as exc:
        raise StackFileError(f"cannot read stack file {stack_path}: {exc}") from exc
    variables = {**os.environ, **(env or {})}
    doc = _safe_load(expand_env(raw_text, variables), str(stack_path))
    if not isinstance(doc, dict):
        raise StackFileError(f"{stack_path}: expected a mapping at the top level")
    version = _version(doc.get("version"))
    provider = doc.get("provider")
    if not isinstance(provider, dict) or provider.get("name") != "openfaas":
        raise StackFileError("provider.name must be 'openfaas'")
    gateway = provider.get("gateway")
    base = stack_path.parent
    config = doc.get("configuration") or {}
    if not isinstance(config, dict):
        raise StackFileError("configuration must be a mapping")
    copy_paths = tuple(_resolve_copy(base, p) for p in _str_list(config.get("copy"), "copy"))
    templates = config.get("templates") or []
    if not isinstance(templates, list) or not all(isinstance(t, dict) for t in templates):
        raise StackFileError("configuration.templates must be a list of mappings")
    functions = doc.get("functions")
    if not isinstance(functions, dict) or not functions:
        raise StackFileError("functions must be a non-empty mapping of name to function")
    specs = {str(name): _function(str(name), body, base, variables) for name, body in functions.items()}
    return StackFile(
        path=stack_path,
        version=version,
        provider="openfaas",
        gateway=str(gateway) if gateway is not None else None,
        functions=specs,
        copy_paths=copy_paths,
        templates=tuple(templates),
    )


def _safe_load(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StackFileError(f"{where}: invalid YAML: {exc}") from exc


def _version(value: object) -> str:
    if value in (1.0, "1.0"):
        return "1.0"
    raise StackFileError(f"version must be 1.0, got {value!r}")


def _function(name: str, body: object, base: Path, variables: Mapping[str, str]) -> FunctionSpec:
    where = f"function {name!r}"
    if not _DNS_LABEL.match(name):
        raise StackFileError(
            f"{where}: name must be a DNS label (lower-case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit)"
        )
    if not isinstance(body, dict):
        raise StackFileError(f"{where}: expected a mapping of fields")
    unknown = sorted(set(body) - _FUNCTION_KEYS)
    if unknown:
        raise StackFileError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    for key in ("lang", "handler", "image"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise StackFileError(f"{where}: field {key!r} must be a non-empty string")
    environment: dict[str, str] = {}
    for env_file in _str_list(body.get("environment_file"), f"{where}: environment_file"):
        environment.update(_environment_file(base / env_file, where, variables))
    environment.update(_env_map(body.get("environment"), f"{where}: environment"))
    if not isinstance(body.get("build_args", {}), dict):
        raise StackFileError(f"{where}: build_args must be a mapping")
    labels = _string_map(body.get("labels"), f"{where}: labels")
    scale_min = _int_label(labels, LABEL_SCALE_MIN, where, minimum=0)
    scale_max = _int_label(labels, LABEL_SCALE_MAX, where, minimum=1)
    if scale_min is not None and scale_max is not None and scale_min > scale_max:
        raise StackFileError(
            f"{where}: label {LABEL_SCALE_MIN}={scale_min} exceeds {LABEL_SCALE_MAX}={scale_max}"
        )
    zero_text = labels.get(LABEL_SCALE_ZERO)
    if zero_text is not None and zero_text not in ("true", "false"):
        raise StackFileError(f"{where}: label {LABEL_SCALE_ZERO} must be 'true' or 'false'")
    zero_duration = labels.get(LABEL_SCALE_ZERO_DURATION)
    return FunctionSpec(
        name=name,
        lang=body["lang"],
        handler=(base / body["handler"]).resolve(),
        image=body["image"],
        fprocess=_optional_str(body.get("fprocess"), f"{where}: fprocess"),
        environment=environment,
        secrets=tuple(_str_list(body.get("secrets"), f"{where}: secrets")),
        labels=labels,
        annotations=_string_map(body.get("annotations"), f"{where}: annotations"),
        limits=_resources(body.get("limits"), f"{where}: limits"),
        requests=_resources(body.get("requests"), f"{where}: requests"),
        constraints=tuple(_str_list(body.get("constraints"), f"{where}: constraints")),
        readonly_root_filesystem=bool(body.get("readonly_root_filesystem", False)),
        namespace=_optional_str(body.get("namespace"), f"{where}: namespace"),
        scale_min=scale_min,
        scale_max=scale_max,
        scale_zero=None if zero_text is None else zero_text == "true",
        scale_zero_duration_s=(
            None
            if zero_duration is None
            else parse_duration(zero_duration, f"{where}: label {LABEL_SCALE_ZERO_DURATION}")
        ),
        exec_timeout_s=_exec_timeout(environment, where),
        max_inflight=_max_inflight(environment, labels, where),
    )


def _exec_timeout(environment: Mapping[str, str], where: str) -> float | None:
    # of-watchdog cuts a call at whichever of exec_timeout / write_timeout is shorter; 0 disables.
    limits = [
        parse_duration(environment[key], f"{where}: environment {key}")
        for key in (ENV_EXEC_TIMEOUT, ENV_WRITE_TIMEOUT)
        if key in environment
    ]
    enabled = [t for t in limits if t > 0]
    return min(enabled) if enabled else None


def _max_inflight(environment: Mapping[str, str], labels: Mapping[str, str], where: str) -> int | None:
    from_env = _positive_int(environment.get(ENV_MAX_INFLIGHT), f"{where}: environment max_inflight")
    from_label = _positive_int(labels.get(LABEL_MAX_INFLIGHT), f"{where}: label {LABEL_MAX_INFLIGHT}")
    if from_env is not None and from_label is not None and from_env != from_label:
        raise StackFileError(
            f"{where}: environment max_inflight={from_env} disagrees with "
            f"label {LABEL_MAX_INFLIGHT}={from_label}"
        )
    return from_env if from_env is not None else from_label


def _positive_int(text: str | None, where: str) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise StackFileError(f"{where}: expected an integer, got {text!r}") from None
    if value < 1:
        raise StackFileError(f"{where}: must be at least 1, got {value}")
    return value


def _int_label(labels: Mapping[str, str], key: str, where: str, minimum: int) -> int | None:
    text = labels.get(key)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise StackFileError(f"{where}: label {key} must be an integer, got {text!r}") from None
    if value < minimum:
        raise StackFileError(f"{where}: label {key} must be >= {minimum}, got {value}")
    return value


def _string_map(value: object, where: str) -> dict[str, str]:
    """Labels and annotations: Kubernetes only accepts string values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackFileError(f"{where}: expected a mapping")
    for key, item in value.items():
        if not isinstance(item, str):
            raise StackFileError(f"{where}: value of {key!r} must be a string (quote it), got {item!r}")
    return {str(k): v for k, v in value.items()}


def _env_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackFileError(f"{where}: expected a mapping")
    result: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            result[str(key)] = "true" if item else "false"
        elif isinstance(item, str | int | float):
            result[str(key)] = str(item)
        elif item is None:
            result[str(key)] = ""
        else:
            raise StackFileError(f"{where}: value of {key!r} must be a scalar, got {item!r}")
    return result


def _environment_file(path: Path, where: str, variables: Mapping[str, str]) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise StackFileError(f"{where}: cannot read environment_file {path}: {exc}") from exc
    doc = _safe_load(expand_env(text, variables), str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("environment", {}), dict):
        raise StackFileError(f"{where}: environment_file {path} needs an 'environment' mapping")
    return _env_map(doc.get("environment"), f"{where}: environment_file {path.name}")


def _resources(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackFileError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, value)) - {"memory", "cpu"})
    if unknown:
        raise StackFileError(f"{where}: unknown resource(s) {', '.join(unknown)}")
    return {str(k): str(v) for k, v in value.items()}


def _str_list(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise StackFileError(f"{where}: expected a list of non-empty strings")
    return list(value)


def _optional_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StackFileError(f"{where}: expected a string, got {value!r}")
    return value


def _resolve_copy(base: Path, relative: str) -> Path:
    resolved = (base / relative).resolve()
    # faas-cli refuses copy paths outside the stack file's folder.
    if not resolved.is_relative_to(base):
        raise StackFileError(f"configuration.copy: {relative!r} is outside {base}")
    return resolved
