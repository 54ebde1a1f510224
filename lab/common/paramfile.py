"""A parameter file (`--params`): a YAML mapping with `stack:`, `seed:` and `load:` sections, checked for shape.

Each section is a mapping of parameters; an empty section or a list is refused here, naming the section and its
allowed parameters, before a model ever sees it (a `stack:` with nothing under it is YAML's None, not {}).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from lab.common.validation import not_a_mapping
from lab.errors import InputError, Problem

SECTIONS = ("stack", "seed", "load")


def read(path: Path | str) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty file), or InputError naming the file."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError.of("parameter file", str(path), f"not a readable YAML file ({type(error).__name__})") \
            from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError("parameter file", not_a_mapping(doc, str(path)).moved(str(path)))
    return doc


def section(doc: dict[str, Any], name: str, allowed: Iterable[str], *, whole_file: bool = False) -> dict[str, Any]:
    """The `name:` section ({} when absent). `whole_file`: a file without any section is that section itself."""
    allowed = tuple(allowed)
    if name not in doc:
        if whole_file and not any(s in doc for s in SECTIONS):
            return dict(doc)
        return {}
    value = doc[name]
    if value is None or value == {}:
        raise InputError(f"{name} parameters", Problem(
            name, f"the section is empty; give parameters under it or leave it out; allowed: {', '.join(allowed)}",
            allowed))
    if not isinstance(value, dict):
        raise InputError(f"{name} parameters", Problem(
            name, f"{not_a_mapping(value).message}; allowed parameters: {', '.join(allowed)}", allowed))
    return dict(value)


__all__ = ["SECTIONS", "read", "section"]
