"""One way to turn a pydantic ValidationError into sentences: the field, what is wrong, what is allowed."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


def describe(error: ValidationError, model: type[BaseModel], section: str) -> str:
    """`invalid <section> parameters:` then one line per bad field, naming the allowed values."""
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or section
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown parameter; allowed: {', '.join(model.model_fields)}"
        elif item["type"] == "literal_error":
            message = f"{message} (got {item.get('input')!r})"
        lines.append(f"  {field}: {message}")
    return f"invalid {section} parameters:\n" + "\n".join(lines)
