"""The lab's one error root: the CLI catches LabError once, and InputError (bad input) is told apart by its type.

An InputError carries each bad field, what is wrong with it and the allowed values as attributes, so a caller that
nests another module's parameters (a study plans load runs) re-addresses the fields instead of cutting message text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace


class LabError(Exception):
    """Anything the lab refuses or fails at, said in one line a user can act on."""


@dataclass(frozen=True)
class Problem:
    """One bad field: its dotted path, what is wrong (naming the allowed values), and those values."""

    field: str
    message: str
    allowed: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def moved(self, field: str) -> Problem:
        return replace(self, field=field)


class InputError(LabError, ValueError):
    """A value a user gave is wrong; raised before anything is changed. `problems` lists every bad field."""

    def __init__(self, what: str, problems: Sequence[Problem] | Problem = ()):
        """`what` names the input (e.g. 'stack parameters'); without problems it is the whole message."""
        self.what = what
        self.problems: tuple[Problem, ...] = (problems,) if isinstance(problems, Problem) else tuple(problems)
        super().__init__(one_line(what, self.problems) if self.problems else what)

    @classmethod
    def of(cls, what: str, field: str, message: str, allowed: Iterable[object] = ()) -> InputError:
        """A single bad field."""
        return cls(what, Problem(field, message, tuple(str(a) for a in allowed)))

    @property
    def field(self) -> str:
        """The first bad field ('' when the whole input is of the wrong shape)."""
        return self.problems[0].field if self.problems else ""

    @property
    def allowed(self) -> tuple[str, ...]:
        """The first bad field's allowed values (empty when they are not a list, e.g. a free-form name)."""
        return self.problems[0].allowed if self.problems else ()

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


def field_error(field: str, message: str, allowed: Iterable[object] = ()) -> InputError:
    """One bad field, raised inside a pydantic validator: the lab's formatter keeps its field (pydantic would only
    keep the text)."""
    return InputError.of("", field, message, allowed)


def one_line(what: str, problems: Iterable[Problem]) -> str:
    """`invalid <what>: field: message; field: message` -- one line, every bad field, in the order found."""
    lines = list(dict.fromkeys(p.line() for p in problems))
    return f"invalid {what}: " + "; ".join(lines) if lines else f"invalid {what}"




class UnknownNameError(InputError, KeyError):
    """A name that is not in one of the lab's registries (faults, samplers); `allowed` lists the known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = tuple(known)
        self.kind, self.name = kind, name
        super().__init__(f"No {kind} named {name!r}; known: {', '.join(known)}")
        self.problems = (Problem("", str(self), known),)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


__all__ = ["InputError", "LabError", "Problem", "UnknownNameError", "field_error", "one_line"]
