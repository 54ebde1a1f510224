"""A run folder (data/runs/<run-id>/, or <study>/runs/<run-id>/): the one place that names the files a run leaves
and the schema they follow, so that what writes a run and what reads it cannot drift apart.

    params.yaml            the run's load parameters and the stack's (no secrets)
    environment.json       hardware, versions, image digests, limits
    customers.parquet      the buyers the run could draw from
    requests.parquet/      one row per HTTP request (a part-file dataset, lab.load.recorder)
    attempts.parquet/      one row per purchase attempt (idem)
    metrics.parquet/       the monitor's samples of every service (lab.evidence.monitor)
    faults.parquet/        one row per fault action, undo and probe (lab.faults.record)
    logs/<service>.log     each service's container log of the run's window, secrets scrubbed
    proxy_access.parquet   the proxy's access log as rows (lab.evidence.runlogs)
    run.json               what the run was and how it went, written when it ends; carries `schema`
    audit.json             the audit against PostgreSQL (lab.evidence.audit)

`schema` in run.json is the version of this layout. A run.json without it was written before the field existed
(schema 1: the same files); a newer schema than SCHEMA is refused, since this code would misread what it does not
know. Bump SCHEMA when a file's name or meaning changes, and teach the readers the old one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lab.errors import LabError

SCHEMA = 2  # the layout this code writes and the newest it reads
UNVERSIONED = 1  # the schema of a folder whose run.json has no `schema` (or that has no run.json yet)


class RunSchemaError(LabError, RuntimeError):
    """A run folder follows a newer (or malformed) schema than this code knows: reading on would misread it."""


def schema_of(meta: dict[str, Any], where: Path | str = "run.json") -> int:
    """The schema a run.json declares (UNVERSIONED without the field); RunSchemaError when this code cannot read it."""
    value = meta.get("schema", UNVERSIONED)
    if isinstance(value, bool) or not isinstance(value, int) or value < UNVERSIONED:
        raise RunSchemaError(f"{where}: schema {value!r} is not a schema number (an integer >= {UNVERSIONED})")
    if value > SCHEMA:
        raise RunSchemaError(f"{where}: schema {value} is newer than this lab reads (schemas {UNVERSIONED} to "
                             f"{SCHEMA}); update the lab to read this run")
    return value


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: its files' names and paths, and run.json read and written with its schema checked."""

    path: Path

    PARAMS: ClassVar[str] = "params.yaml"
    ENVIRONMENT: ClassVar[str] = "environment.json"
    CUSTOMERS: ClassVar[str] = "customers.parquet"
    REQUESTS: ClassVar[str] = "requests.parquet"
    ATTEMPTS: ClassVar[str] = "attempts.parquet"
    METRICS: ClassVar[str] = "metrics.parquet"
    FAULTS: ClassVar[str] = "faults.parquet"
    LOGS: ClassVar[str] = "logs"
    PROXY_ACCESS: ClassVar[str] = "proxy_access.parquet"
    META: ClassVar[str] = "run.json"
    AUDIT: ClassVar[str] = "audit.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- making and opening ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, run_id: str) -> RunFolder:
        """A new, empty run folder root/run_id; an existing one is never reused (a run folder is written once)."""
        path = Path(root) / run_id
        path.mkdir(parents=True, exist_ok=False)
        return cls(path)

    @classmethod
    def open(cls, path: Path | str) -> RunFolder:
        """An existing run folder, its schema checked (RunSchemaError when it is newer than this code reads)."""
        folder = cls(Path(path))
        if not folder.path.is_dir():
            raise FileNotFoundError(f"{folder.path} is not a run folder (no such folder)")
        if folder.meta_path.exists():
            folder.read_meta()  # refuses a schema this code cannot read
        return folder

    @classmethod
    def holds_run(cls, path: Path | str) -> bool:
        """Whether `path` is a run folder: it has run.json, or attempts of a run that ended before writing it."""
        path = Path(path)
        return path.is_dir() and ((path / cls.META).exists() or (path / cls.ATTEMPTS).exists())

    # -- names -------------------------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def params_path(self) -> Path:
        return self.path / self.PARAMS

    @property
    def environment_path(self) -> Path:
        return self.path / self.ENVIRONMENT

    @property
    def customers_path(self) -> Path:
        return self.path / self.CUSTOMERS

    @property
    def requests_path(self) -> Path:
        return self.path / self.REQUESTS

    @property
    def attempts_path(self) -> Path:
        return self.path / self.ATTEMPTS

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def faults_path(self) -> Path:
        return self.path / self.FAULTS

    @property
    def logs_dir(self) -> Path:
        return self.path / self.LOGS

    def log_of(self, service: str) -> Path:
        """logs/<service>.log: one service's container log (all its instances)."""
        return self.logs_dir / f"{service}.log"

    @property
    def proxy_access_path(self) -> Path:
        return self.path / self.PROXY_ACCESS

    @property
    def meta_path(self) -> Path:
        return self.path / self.META

    @property
    def audit_path(self) -> Path:
        return self.path / self.AUDIT

    # -- run.json ----------------------------------------------------------------------------------------------
    @property
    def schema(self) -> int:
        """The folder's schema: run.json's, UNVERSIONED before run.json is written (nothing newer to refuse yet)."""
        return schema_of(self._read_meta()) if self.meta_path.exists() else UNVERSIONED

    def read_meta(self) -> dict[str, Any]:
        """run.json, schema checked; FileNotFoundError when the run has not written it."""
        doc = self._read_meta()
        schema_of(doc, self.meta_path)
        return doc

    def meta_or_empty(self) -> dict[str, Any]:
        """run.json, or {} for a run that ended before writing it."""
        return self.read_meta() if self.meta_path.exists() else {}

    def write_meta(self, meta: dict[str, Any]) -> Path:
        """Write run.json once, stamped with the schema this code writes."""
        self.write_once(self.META, json.dumps({"schema": SCHEMA, **meta}, indent=2, default=str))
        return self.meta_path

    def write_once(self, name: str, text: str) -> Path:
        """Run files are immutable: refuse to overwrite what a run already recorded (FileExistsError)."""
        path = self.path / name
        with path.open("x") as out:
            out.write(text)
        return path

    def _read_meta(self) -> dict[str, Any]:
        doc = json.loads(self.meta_path.read_text())
        if not isinstance(doc, dict):
            raise RunSchemaError(f"{self.meta_path}: not a run record (a JSON object)")
        return doc


__all__ = ["SCHEMA", "UNVERSIONED", "RunFolder", "RunSchemaError", "schema_of"]
