"""The lab's one formatter of pydantic validation errors: each bad field, what is wrong, what is allowed.

Every parameter source (stack, seed, load, workload, fault schedule, admission, capacity search, study) goes
through `problems`, so a mistake reads the same wherever it was made, and `InputError` carries the fields.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError

from lab.errors import InputError, Problem

_BOUNDS = [("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")]  # pydantic's constraint metadata attributes
_OUT_OF_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_CONTAINERS = (list, tuple, set, frozenset, Union, types.UnionType)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel], Any]:
    """(the model holding the last field, that field's FieldInfo or None) of a pydantic error location."""
    current: Any = model
    holder, info = model, None
    skip_key = False
    for part in loc:
        if isinstance(part, int) or skip_key:
            skip_key = False
            continue
        if not _is_model(current) or part not in current.model_fields:
            return (current if _is_model(current) else holder), None
        holder, info = current, current.model_fields[part]
        current = info.annotation
        while True:
            origin = typing.get_origin(current)
            if origin is dict:
                current, skip_key = typing.get_args(current)[1], True
            elif origin in _CONTAINERS:
                args = [a for a in typing.get_args(current) if a is not type(None)]
                current = next((a for a in args if _is_model(a)), args[0] if args else None)
            else:
                break
    return holder, info


def _literals(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return tuple(v for a in typing.get_args(annotation) for v in _literals(a))
    return ()


def _bounds(info: Any) -> list[str]:
    found = []
    for meta in getattr(info, "metadata", ()):
        for attr, symbol in _BOUNDS:
            value = getattr(meta, attr, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                found.append(f"{symbol} {value}" if isinstance(value, int) else f"{symbol} {value:g}")
    return found


def problems(error: ValidationError, model: type[BaseModel], prefix: str = "") -> list[Problem]:
    """One Problem per pydantic error: dotted field (after `prefix`), a message naming the allowed values."""
    found = []
    for item in error.errors():
        loc = tuple(item["loc"])
        field = ".".join(filter(None, (prefix.rstrip("."), *(str(p) for p in loc))))
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, InputError) and cause.problems:  # a validator named its own field (field_error)
            found += [p.moved(".".join(filter(None, (field, p.field)))) for p in cause.problems]
            continue
        holder, info = _walk(model, loc)
        literals = _literals(info.annotation) if info is not None else ()
        bounds = _bounds(info)
        kind, given = item["type"], item.get("input")
        message = item["msg"].removeprefix("Value error, ")
        allowed: tuple[str, ...] = ()
        if kind == "extra_forbidden":
            allowed = tuple(holder.model_fields)
            message = f"unknown parameter; allowed: {', '.join(allowed) or 'none'}"
        elif kind == "missing":
            allowed = tuple(bounds)
            message = "required" + (f" (must be {' and '.join(bounds)})" if bounds else "")
        elif kind == "too_short":
            message = f"needs at least {item['ctx']['min_length']} item(s)"
        elif literals:
            allowed = tuple(str(v) for v in literals)
            message = "must be one of " + ", ".join(repr(v) for v in literals)
        elif bounds and kind in _OUT_OF_BOUNDS:
            allowed = tuple(bounds)
            message = f"must be {' and '.join(bounds)}"
        elif bounds and kind != "value_error":  # the wrong type: pydantic says which, and the bounds follow
            allowed = tuple(bounds)
            message = f"{message}; allowed: {' and '.join(bounds)}"
        if kind not in ("missing", "extra_forbidden", "value_error", "too_short") and not isinstance(
                given, dict | list):
            message += f" (got {given!r})"
        found.append(Problem(field, message, allowed))
    return found


def input_error(error: ValidationError, model: type[BaseModel], what: str, prefix: str = "") -> InputError:
    """A pydantic ValidationError -> InputError('invalid <what>: field: message; ...')."""
    return InputError(what, problems(error, model, prefix))


def not_a_mapping(got: Any, field: str = "") -> Problem:
    """A section that must be a mapping of parameters was something else (a list, a string, a number)."""
    return Problem(field, f"expected a mapping of parameters (key: value); got a {type(got).__name__}")


__all__ = ["input_error", "not_a_mapping", "problems"]
