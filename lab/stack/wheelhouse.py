"""Fill the pretix image's wheelhouse on the host.

`pip install` inside `docker build` cannot reach PyPI here (TLS chain), so every wheel the image needs is
downloaded on the host for the image's interpreter (bookworm's CPython 3.11.2 by default, or the python of another
Debian release: lab/stack/pybuild.py; manylinux x86_64) and the
Dockerfile installs with `--no-index --find-links`. Packages that ship only an sdist are built into wheels
on the host first. A stamp file makes a second call a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lab.errors import LabError

# Kept in step with stack/images/pretix/Dockerfile: the image runs pretix on bookworm's python3.
TARGET_PYTHON = "3.11.2"
TARGET_IMPLEMENTATION = "cp"
TARGET_PLATFORMS: tuple[str, ...] = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_36_x86_64",  # bookworm's glibc is 2.36
)

PRETIX_REQUIREMENTS: tuple[str, ...] = (
    "pretix==2026.8.0",
    # pretix declares no WSGI server; its docs run gunicorn unpinned. 27.0.1 is the current release and ran
    # pretix 2026.8.0 here (note: 27 wants --control-socket per instance).
    "gunicorn==27.0.1",
    # redis requires it for python_full_version < "3.11.3", but pip evaluates that marker with the HOST
    # interpreter, not --python-version, so it would be silently left out for 3.11.2.
    "async-timeout==5.0.1",
)

# Known to ship no wheel: built on the host before resolving (others are found from pip's error).
SDIST_ONLY: tuple[str, ...] = ("django-jquery-js",)

STAMP_NAME = ".wheelhouse-stamp.json"
# What the Dockerfile installs (`pip install --no-index --find-links /wheelhouse -r requirements.txt`).
REQUIREMENTS_NAME = "requirements.txt"
_STAMP_FORMAT = 1
_MAX_SDIST_ROUNDS = 8


class WheelhouseError(LabError, RuntimeError):
    """Filling the wheelhouse failed; `package` names the culprit when known."""

    def __init__(self, message: str, package: str | None = None) -> None:
        super().__init__(message)
        self.package = package


def _normalize(requirement: str) -> str:
    return " ".join(requirement.split())


def requirements_hash(
    requirements: Iterable[str],
    python_version: str = TARGET_PYTHON,
    platforms: Sequence[str] = TARGET_PLATFORMS,
) -> str:
    """sha256 over the requirements (order and whitespace ignored) and the target interpreter/platforms."""
    reqs = sorted({_normalize(r) for r in requirements if r.strip()})
    payload = json.dumps(
        {
            "format": _STAMP_FORMAT,
            "requirements": reqs,
            "python": python_version,
            "implementation": TARGET_IMPLEMENTATION,
            "platforms": list(platforms),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def read_stamp(dest: Path) -> dict | None:
    """The stamp's content, or None when it is missing or unreadable."""
    try:
        data = json.loads((dest / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stamp_matches(dest: Path, requirements: Iterable[str] = PRETIX_REQUIREMENTS,
                  python_version: str = TARGET_PYTHON) -> bool:
    """True when dest's stamp has the same hash and every wheel it lists is still there."""
    stamp = read_stamp(dest)
    if stamp is None or stamp.get("hash") != requirements_hash(requirements, python_version):
        return False
    wheels = stamp.get("wheels")
    if not isinstance(wheels, list) or not wheels:
        return False
    if not (dest / REQUIREMENTS_NAME).is_file():
        return False
    return all(isinstance(w, str) and (dest / w).is_file() for w in wheels)


def requirements_text(requirements: Iterable[str]) -> str:
    """The requirements file the image installs from, one requirement a line, in the given order."""
    lines = [_normalize(r) for r in requirements if r.strip()]
    return "# Written by lab/stack/wheelhouse.py: do not edit.\n" + "".join(f"{line}\n" for line in lines)


def write_stamp(dest: Path, requirements: Iterable[str], python_version: str = TARGET_PYTHON) -> None:
    """Record the requirements hash and the wheel files; written last so a crash leaves no stamp."""
    stamp = {
        "hash": requirements_hash(requirements, python_version),
        "requirements": sorted({_normalize(r) for r in requirements if r.strip()}),
        "python": python_version,
        "wheels": sorted(p.name for p in dest.glob("*.whl")),
    }
    tmp = dest / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    tmp.replace(dest / STAMP_NAME)


_MISSING_RE = re.compile(r"(?:No matching distribution found for|satisfies the requirement) ([^\s;(]+)")


def missing_package(pip_output: str) -> str | None:
    """The requirement pip could not find as a wheel, from its error text (None if it names none)."""
    found = _MISSING_RE.findall(pip_output)
    return found[-1] if found else None


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0]


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def marker_gaps(dest: Path, python_full_version: str = TARGET_PYTHON) -> list[str]:
    """Dependencies the target interpreter needs (python_full_version markers) that are missing in dest.

    pip evaluates those markers with the host interpreter, so they can be silently skipped.
    """
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement

    present = {canonical_name(p.name.split("-", 1)[0]) for p in dest.glob("*.whl")}
    env = default_environment()
    env.update(
        {
            "python_full_version": python_full_version,
            "python_version": ".".join(python_full_version.split(".")[:2]),
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": "x86_64",
            "os_name": "posix",
        }
    )
    gaps: set[str] = set()
    for wheel in dest.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            meta = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            if meta is None:
                continue
            text = zf.read(meta).decode("utf-8", "replace")
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:") or "python_full_version" not in line:
                continue
            try:
                req = Requirement(line.split(":", 1)[1].strip())
            except InvalidRequirement:
                continue
            if req.marker is not None and req.marker.evaluate({**env, "extra": ""}):
                if canonical_name(req.name) not in present:
                    gaps.add(str(req))
    return sorted(gaps)


def _run_pip(args: list[str], package: str | None) -> str:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    env = {**os.environ, "PIP_PROGRESS_BAR": "off"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise _PipFailed(out, package)
    return out


class _PipFailed(Exception):
    def __init__(self, output: str, package: str | None) -> None:
        super().__init__(output)
        self.output = output
        self.package = package


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _build_sdist_wheel(requirement: str, into: Path) -> None:
    """`pip wheel --no-deps` on the host; the result must be a pure-Python wheel."""
    before = set(into.glob("*.whl"))
    try:
        _run_pip(["wheel", "--no-deps", "--wheel-dir", str(into), requirement], requirement)
    except _PipFailed as exc:
        raise WheelhouseError(
            f"{requirement}: ships no wheel and `pip wheel` failed on the host:\n{_tail(exc.output)}",
            package=_requirement_name(requirement),
        ) from None
    for wheel in set(into.glob("*.whl")) - before:
        if not wheel.name.endswith("-none-any.whl"):
            raise WheelhouseError(
                f"{requirement}: the host-built wheel {wheel.name} is not pure Python, "
                "so it would not match the image's interpreter",
                package=_requirement_name(requirement),
            )


def _download(requirements: Sequence[str], into: Path, python_version: str = TARGET_PYTHON) -> None:
    platform_args = [a for p in TARGET_PLATFORMS for a in ("--platform", p)]
    _run_pip(
        [
            "download",
            "--only-binary=:all:",
            "--python-version",
            python_version,
            "--implementation",
            TARGET_IMPLEMENTATION,
            *platform_args,
            "--find-links",
            str(into),
            "--dest",
            str(into),
            *requirements,
        ],
        None,
    )


def ensure_wheelhouse(
    dest: Path,
    requirements: Sequence[str] = PRETIX_REQUIREMENTS,
    progress: Callable[[str], None] | None = None,
    python_version: str = TARGET_PYTHON,
) -> Path:
    """Fill dest with every wheel the pretix image needs for CPython `python_version` (the image's python3); a
    no-op when dest's stamp matches.

    The wheels are gathered in a temporary folder beside dest and moved in only on success, so a
    failed fill never leaves a half-filled wheelhouse that looks complete.
    """
    say = progress or (lambda _msg: None)
    dest = Path(dest)
    requirements = tuple(requirements)
    if stamp_matches(dest, requirements, python_version):
        say(f"wheelhouse up to date: {dest}")
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}-", dir=dest.parent) as tmpdir:
        work = Path(tmpdir)
        for sdist in SDIST_ONLY:
            say(f"building a wheel on the host for sdist-only {sdist}")
            _build_sdist_wheel(sdist, work)

        built: set[str] = {canonical_name(s) for s in SDIST_ONLY}
        for _ in range(_MAX_SDIST_ROUNDS):
            say(f"downloading wheels for CPython {python_version} manylinux x86_64: {', '.join(requirements)}")
            try:
                _download(requirements, work, python_version)
                break
            except _PipFailed as exc:
                missing = missing_package(exc.output)
                if missing is None:
                    raise WheelhouseError(f"pip download failed:\n{_tail(exc.output)}", package=None) from None
                name = canonical_name(_requirement_name(missing))
                if name in built:
                    raise WheelhouseError(
                        f"{missing}: no wheel for CPython {python_version} manylinux x86_64 "
                        f"(not even after building one on the host):\n{_tail(exc.output)}",
                        package=name,
                    ) from None
                say(f"{missing} ships no usable wheel: building one on the host")
                _build_sdist_wheel(missing, work)
                built.add(name)
        else:
            raise WheelhouseError(f"gave up after {_MAX_SDIST_ROUNDS} sdist-only packages", package=None)

        gaps = marker_gaps(work, python_version)
        if gaps:
            raise WheelhouseError(
                f"dependencies needed on python {python_version} were skipped by pip (it evaluates "
                f"python_full_version with the host interpreter); add them to the requirements: {gaps}",
                package=canonical_name(_requirement_name(gaps[0])),
            )

        dest.mkdir(parents=True, exist_ok=True)
        for old in [*dest.glob("*.whl"), dest / STAMP_NAME, dest / REQUIREMENTS_NAME]:
            old.unlink(missing_ok=True)
        for wheel in work.glob("*.whl"):
            shutil.move(str(wheel), dest / wheel.name)
        (dest / REQUIREMENTS_NAME).write_text(requirements_text(requirements))
        write_stamp(dest, requirements, python_version)
    say(f"wheelhouse ready: {len(list(dest.glob('*.whl')))} wheels in {dest}")
    return dest
