"""Parameter schemas for the non-training workloads (FLStore §4.3 requests carry parameters).

A schema is a tuple of :class:`Param`; :func:`validate_params` checks a
request's JSON parameters against it before any maths runs and answers a
:class:`~fedfaas.errors.BadRequest` that names the parameter and the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fedfaas.errors import BadRequest

Kind = Literal["int", "float", "bool", "str", "str_list", "map", "list"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a parameter the caller must give.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One parameter: JSON kind, default, bounds and a one-line doc.

    A default of ``None`` makes the parameter optional and nullable.
    """

    name: str
    kind: Kind
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    exclusive_minimum: bool = False

    def check(self, workload: str, value: Any) -> Any:
        """The value, normalised (ints for floats become floats); raises BadRequest."""
        where = f"{workload}: parameter {self.name!r}"
        if value is None:
            if self.default is None:
                return None
            raise BadRequest(f"{where} must not be null")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise BadRequest(f"{where} must be true or false, got {value!r}")
            return value
        if self.kind in ("int", "float"):
            return self._check_number(where, value)
        if self.kind == "str":
            if not isinstance(value, str):
                raise BadRequest(f"{where} must be a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise BadRequest(f"{where} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        if self.kind == "str_list":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise BadRequest(f"{where} must be a list of strings")
            return list(value)
        if self.kind == "list":
            if not isinstance(value, list | tuple):
                raise BadRequest(f"{where} must be a list")
            return list(value)
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise BadRequest(f"{where} must be a map with string keys")
        return dict(value)

    def _check_number(self, where: str, value: Any) -> int | float:
        # bool is an int subclass (True == 1): a JSON true is never a number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{where} must be a number, got {value!r}")
        if self.kind == "int":
            # An integral float (4.0, as some JSON encoders write 4) is normalised to 4;
            # 4.5 is refused.
            if isinstance(value, float) and not value.is_integer():
                raise BadRequest(f"{where} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise BadRequest(f"{where} must be finite, got {value!r}")
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                raise BadRequest(f"{where} must be > {self.minimum}, got {value!r}")
            if value < self.minimum:
                raise BadRequest(f"{where} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise BadRequest(f"{where} must be <= {self.maximum}, got {value!r}")
        return value


def validate_params(workload: str, schema: Sequence[Param], params: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """Check ``params`` against ``schema`` and fill in defaults.

    Raises
    ------
    BadRequest
        For parameters not in the schema, missing required ones and any
        value of the wrong kind or outside its bounds.
    """
    if not isinstance(params, Mapping):
        raise BadRequest(f"{workload}: parameters must be a JSON object")
    known = {p.name: p for p in schema}
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise BadRequest(
            f"{workload}: unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(known)) or 'none'}"
        )
    out: dict[str, Any] = {}
    for p in schema:
        if p.name in params:
            out[p.name] = p.check(workload, params[p.name])
        elif p.default is REQUIRED:
            raise BadRequest(f"{workload}: parameter {p.name!r} is required ({p.doc})")
        else:
            out[p.name] = p.default
    return out


def describe_params(schema: Sequence[Param]) -> list[dict[str, Any]]:
    """JSON description of a schema (for API listings)."""
    rows: list[dict[str, Any]] = []
    for p in schema:
        row: dict[str, Any] = {"name": p.name, "type": p.kind, "doc": p.doc,
                               "required": p.default is REQUIRED}
        if p.default is not REQUIRED:
            row["default"] = p.default
        for key in ("minimum", "maximum", "choices"):
            if getattr(p, key) is not None:
                row[key] = getattr(p, key) if key != "choices" else list(p.choices or ())
        rows.append(row)
    return rows


def check_numeric_array(value: Any, what: str) -> np.ndarray:
    """``value`` (nested JSON lists) as a finite numeric array; BadRequest naming ``what`` otherwise."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"{what} must be a numeric array of rectangular nested lists") from None
    if arr.dtype.kind not in "iuf" or _holds_bool(value):
        # true/false are not numbers, alone or mixed in (numpy makes [1, true] an int array).
        raise BadRequest(f"{what} must hold only numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        # Workloads compute in float32: a value beyond its range would become inf there.
        finite = np.isfinite(arr.astype(np.float32)).all()
    if not finite:
        raise BadRequest(f"{what} holds NaN, infinite values or values beyond float32's range")
    return arr


def _holds_bool(value: Any) -> bool:
    """True when the nested lists ``value`` hold a bool anywhere (one C-speed pass)."""
    if isinstance(value, bool):
        return True
    if not isinstance(value, list | tuple):
        return False
    flat = np.asarray(value, dtype=object).ravel()
    return bool in set(map(type, flat))


SEED = Param("seed", "int", 0, "seed for every random choice", minimum=0, maximum=2**32 - 1)
