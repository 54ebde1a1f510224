"""The secrets a run must never hold: which values they are, how logs are scrubbed of them, how a folder is checked.

Values by kind: the deployment's secrets (secrets.json, pretix.json), the key buyers' passwords derive from, and
the derived password of every buyer who has one (buyers.parquet). find_secrets() looks for each of them in every
file under a folder: in its raw bytes, and in what the file holds encoded where a byte search cannot see it
(Parquet column values behind compression, the text of a PDF, gzip), so one function checks run folders, study
folders and reports alike.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lab.common.paths import deploy_dir
from lab.errors import LabError

MIN_LENGTH = 4  # shorter values would match by chance; every real secret is far longer
UNREADABLE = "unreadable"  # the kind reported for a file whose content could not be decoded to be checked
SecretKinds = Mapping[str, Iterable[str]]


class SecretsUnavailable(LabError, RuntimeError):
    """The deployment's secrets could not be read, so nothing can be scrubbed of them (and nothing is written)."""


def known_secrets(directory: Path | None = None) -> dict[str, list[str]]:
    """kind -> values: every secret of the deployment in `directory` (default: the current one), the buyers' key
    and each password-holding buyer's derived password. No deployment: {}. Unreadable files: SecretsUnavailable."""
    from lab.pretix.buyers import buyer_secret, password_for
    from lab.stack.secrets import secret_kinds

    directory = Path(directory) if directory is not None else deploy_dir()
    try:
        kinds = secret_kinds(directory)
        if kinds.get("django_secret"):
            key = buyer_secret(kinds["django_secret"][0])
            kinds["buyer_secret"] = [key]
            buyers = directory / "buyers.parquet"
            if buyers.exists():
                table = pq.read_table(buyers, columns=["email", "has_password"]).to_pydict()
                kinds["buyer_password"] = [password_for(key, email) for email, has in
                                           zip(table["email"], table["has_password"], strict=True) if has]
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        raise SecretsUnavailable(f"the secrets in {directory} cannot be read ({type(error).__name__}: "
                                 f"{str(error)[:200]})") from None
    return kinds


def trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of `words`, the longest where several match, laid out as a trie of their characters: a
    scan then tests about one character per position instead of every word (a plain alternation of a few hundred
    words is about ten times slower). Bytes: build it from latin-1 text and encode the pattern back."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # the word ends here ("" is never a character)

    def build(node: dict[str, dict]) -> str:
        ends = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and not ends else "(?:" + "|".join(branches) + ")"
        return body + ("?" if ends else "")

    return build(root)


def _flat(values: Iterable[str] | SecretKinds) -> list[str]:
    if isinstance(values, Mapping):
        return [v for group in values.values() for v in group]
    return list(values)


class Scrubber:
    """Replace every known secret value by *** (longest first, so a secret inside another is not half-left)."""

    def __init__(self, values: Iterable[str] | SecretKinds):
        found = sorted({v for v in _flat(values) if v and len(v) >= MIN_LENGTH})
        self._pattern = re.compile(trie_regex(found)) if found else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern is not None else text


def load_scrubber(directory: Path | None = None) -> Scrubber:
    """The scrubber of the deployment's secrets; fails closed: SecretsUnavailable when they cannot be read or there
    are none, so a caller writes nothing raw rather than something unscrubbed."""
    kinds = known_secrets(directory)
    if not any(kinds.values()):
        raise SecretsUnavailable(f"no secrets found in {directory or deploy_dir()}: nothing to scrub against")
    return Scrubber(kinds)


# ------------------------------------------------------------------------------------------------------- checking
def _parquet_values(raw: bytes) -> Iterator[bytes]:
    table = pq.read_table(pa.BufferReader(raw))
    for column in table.columns:
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
                or pa.types.is_temporal(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
            continue
        yield b"\n".join(v if isinstance(v, bytes) else str(v).encode() for v in column.to_pylist() if v is not None)


def _pdf_texts(path: Path, raw: bytes) -> Iterator[bytes]:
    """The PDF's text as pdftotext extracts it (when installed) and every Flate stream inflated."""
    view = memoryview(raw)
    for start in re.finditer(rb"stream\r?\n", raw):
        try:
            yield zlib.decompressobj().decompress(view[start.end():])
        except zlib.error:
            continue
    tool = shutil.which("pdftotext")
    if tool:  # a PDF it cannot read still had its streams searched above
        yield subprocess.run([tool, str(path), "-"], capture_output=True, timeout=300).stdout


def _contents(path: Path) -> Iterator[bytes]:
    raw = path.read_bytes()
    yield raw
    if raw[:4] == b"PAR1" and raw[-4:] == b"PAR1":
        yield from _parquet_values(raw)
    elif raw[:5] == b"%PDF-":
        yield from _pdf_texts(path, raw)
    elif raw[:2] == b"\x1f\x8b":
        yield gzip.decompress(raw)


def files_under(folder: Path) -> list[Path]:
    folder = Path(folder)
    return [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())


def find_secrets(folder: Path, values: SecretKinds) -> list[tuple[Path, str]]:
    """(file, kind) for every secret value found in any file under `folder` (or in `folder`, a file): sorted, one
    entry per file and kind, never the value itself. A file whose content cannot be decoded to be checked is
    reported as kind 'unreadable': it cannot be shown clean."""
    kind_of: dict[bytes, str] = {}
    for kind, group in values.items():
        for value in group:
            if value and len(value) >= MIN_LENGTH:
                kind_of.setdefault(value.encode(), kind)
    if not kind_of:
        raise ValueError("no secret values to look for: the check would find nothing")
    pattern = re.compile(trie_regex(v.decode("latin-1") for v in kind_of).encode("latin-1"))
    found: set[tuple[Path, str]] = set()
    for path in files_under(folder):
        try:
            for blob in _contents(path):
                found.update((path, kind_of[m.group()]) for m in pattern.finditer(blob))
        except Exception:  # noqa: BLE001 - whatever stops the decoding, the file is not shown clean
            found.add((path, UNREADABLE))
    return sorted(found)


def check_places(places: Iterable[Path], values: SecretKinds | None = None) -> dict[str, Any]:
    """The secret check of a study, a run or a report, as a record: `files` searched, `findings` (file and kind,
    never the value; a check that could not be made is one finding of kind 'unchecked' with its `why`), and
    `not_needed` when no deployment secrets exist. `values` default: the current deployment's (known_secrets)."""
    places = [Path(p) for p in places if Path(p).exists()]
    record: dict[str, Any] = {"files": sum(len(files_under(p)) for p in places), "findings": []}
    try:
        values = values if values is not None else known_secrets()
    except SecretsUnavailable as error:
        record["findings"] = [{"file": str(places[0] if places else ""), "kind": "unchecked", "why": str(error)}]
        return record
    if not any(values.values()):
        record["not_needed"] = "no deployment secrets exist (nothing was deployed)"
        return record
    record["kinds"] = sorted(k for k, v in values.items() if v)
    for place in places:
        record["findings"] += [{"file": str(path), "kind": kind} for path, kind in find_secrets(place, values)]
    return record


def describe_check(record: dict[str, Any]) -> list[str]:
    """The check's lines for a console: one per finding, or one saying how many files were clean."""
    lines = [f"SECRET FOUND: {f['file']}: {f['kind']}" + (f" ({f['why']})" if "why" in f else "")
             for f in record["findings"]]
    return lines or [f"secret check: {record['files']} file(s) searched, none holds a secret"
                     + (f" ({record['not_needed']})" if "not_needed" in record else "")]


class SecretFound(LabError, RuntimeError):
    """A file the lab wrote holds a secret (or could not be checked): the run or report must not be shared."""


def check_or_fail(places: Iterable[Path], log: Callable[[str], None]) -> dict[str, Any]:
    """check_places, its lines logged; SecretFound when anything was found or the check could not be made."""
    record = check_places(places)
    for line in describe_check(record):
        log(line)
    if record["findings"]:
        raise SecretFound(f"{len(record['findings'])} secret finding(s): see the lines above; do not share these "
                          "files")
    return record


__all__ = ["MIN_LENGTH", "UNREADABLE", "Scrubber", "SecretFound", "SecretsUnavailable", "check_or_fail",
           "check_places", "describe_check", "files_under", "find_secrets", "known_secrets", "load_scrubber"]
