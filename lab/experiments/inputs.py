"""What a command is asked: a parameter file's sections merged with its flags, validated before anything runs.

Every function here either returns validated parameters or raises InputError naming the field (the flag or the
file's dotted path) and the allowed values; none of them touches the stack, the var folder or Docker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lab.common.validation import problems
from lab.errors import InputError, Problem
from lab.pretix.seed import Catalogue, CustomerSeed


def parse_limits(values: tuple[str, ...]) -> dict[str, dict]:
    """--limit pretix-web-1:cpus=1.5,memory=2G (repeatable) -> {service: {cpus, memory}}."""
    from lab.stack.params import ServiceLimits

    allowed = tuple(ServiceLimits.model_fields)
    limits: dict[str, dict] = {}
    for value in values:
        service, _, spec = value.partition(":")
        entry: dict[str, str] = {}
        for part in filter(None, spec.split(",")):
            key, _, val = part.partition("=")
            if key not in allowed:
                raise InputError.of("--limit", "--limit", f"{value}: unknown limit {key!r}; allowed: "
                                    f"{', '.join(allowed)}", allowed)
            entry[key] = val
        if not service or not entry:
            raise InputError.of("--limit", "--limit", f"{value}: expected SERVICE:cpus=N,memory=SIZE", allowed)
        limits[service] = entry
    return limits


def _catalogue(seed: dict[str, Any]) -> Catalogue:
    raw = seed.get("catalogue")
    try:
        return Catalogue.model_validate(raw if raw is not None else {})
    except ValidationError as error:
        raise InputError("seed parameters", problems(error, Catalogue, prefix="seed.catalogue.")) from None


def seed_inputs(params_file: Path | None, customers: int | None = None,
                login_pool: int | None = None) -> tuple[Catalogue, CustomerSeed]:
    """`lab seed`: the file's seed section (catalogue, customers) with --customers / --login-pool on top."""
    from lab.experiments.run import load_file

    seed = load_file(params_file)[1] if params_file else {}
    cust = dict(seed.get("customers") or {})
    if customers is not None:
        cust["count"] = customers
    if login_pool is not None:
        cust["login_pool"] = login_pool
    catalogue = _catalogue(seed)
    try:
        who = CustomerSeed(**cust)
    except ValidationError as error:
        raise InputError("seed parameters", problems(error, CustomerSeed, prefix="seed.customers.")) from None
    except ValueError as error:  # model_post_init: login_pool > count
        raise InputError("seed parameters", Problem("seed.customers.login_pool", str(error))) from None
    return catalogue, who


def load_inputs(params_file: Path | None, flags: dict[str, Any]):
    """`lab load`: (LoadParams, Catalogue) from the file's load and seed sections with the flags on top.

    The catalogue is the file's `seed.catalogue` (the event the run buys from; seeded if it is not yet), else the
    default one; the load's product_mix is checked against it."""
    from lab.experiments.run import load_file, validate_load

    _, seed, raw = load_file(params_file) if params_file else ({}, {}, {})
    raw = dict(raw)
    for key in ("journey", "name"):
        if flags.get(key):
            raw[key] = flags[key]
    if flags.get("workload"):
        raw["workload"] = json_arg("--workload", flags["workload"])
    if flags.get("faults"):
        raw["faults"] = schedule_arg(flags["faults"])
    if flags.get("admission"):
        raw["admission"] = admission_arg(flags["admission"])
    if flags.get("generators") is not None:
        raw["generators"] = flags["generators"]
    if flags.get("queue_max_wait") is not None:
        raw["queue"] = {**(raw.get("queue") or {}), "max_wait": flags["queue_max_wait"]}
    catalogue = _catalogue(seed)
    return validate_load(raw, catalogue), catalogue


def json_arg(flag: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise InputError.of(flag, flag, f"not JSON ({error.args[0] if error.args else error})") from None


def admission_arg(text: str) -> dict:
    """--admission: a bare mode name or a JSON object."""
    from lab.stack.admission import Admission

    if not text.lstrip().startswith("{"):
        return {"mode": text.strip()}
    doc = json_arg("--admission", text)
    if not isinstance(doc, dict):
        raise InputError.of("--admission", "--admission", 'expected a mode name or a JSON object such as '
                            '{"mode":"waiting-room","rate":12}', tuple(Admission.model_fields))
    return doc


def schedule_arg(text: str) -> Any:
    """--faults: a file (YAML or JSON; a mapping with `faults:` or a list) or inline JSON/YAML."""
    import yaml

    try:
        is_file = Path(text).is_file()
    except OSError:  # inline JSON longer than a file name can be
        is_file = False
    try:
        doc = yaml.safe_load(Path(text).read_text() if is_file else text)
    except yaml.YAMLError:
        raise InputError.of("--faults", "--faults", "neither a readable file nor JSON/YAML") from None
    if not isinstance(doc, list | dict):
        raise InputError.of("--faults", "--faults", "expected a list of fault steps or a mapping with `faults:` "
                            "and `steady_state:` (see lab/faults/schedule.py)", ("faults", "steady_state"))
    return doc


__all__ = ["admission_arg", "json_arg", "load_inputs", "parse_limits", "schedule_arg", "seed_inputs"]
