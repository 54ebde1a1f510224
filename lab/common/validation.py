"""One way to turn a pydantic ValidationError into sentences: the field, what is wrong, what is allowed."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel]:
    """The (nested) model that owns the field at `path`, so an unknown key lists its own siblings."""
    import typing

    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return model
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return model
        model = nested[0]
    return model


def describe(error: ValidationError, model: type[BaseModel], section: str) -> str:
    """`invalid <section> parameters:` then one line per bad field, naming the allowed values."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or section
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            owner = _model_at(model, item["loc"][:-1])
            message = f"unknown parameter; allowed: {', '.join(owner.model_fields)}"
        elif item["type"] == "literal_error":
            message = f"{message} (got {item.get('input')!r})"
        lines.append(f"  {field}: {message}")
    return f"invalid {section} parameters:\n" + "\n".join(lines)
