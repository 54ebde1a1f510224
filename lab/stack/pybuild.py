"""The Python the pretix image runs: Debian's own python3 of one Debian release, chosen by the stack parameter `python`.

pretix 2026.8.0 declares Python >= 3.11 (classifiers 3.11-3.14). Without a registry the lab's base images come from
Debian's mirror (mmdebstrap), so a Python version means a Debian release: bookworm ships 3.11, trixie 3.13. Debian
builds its python3 with PGO and LTO on amd64 (its changelog: "Enable LTO/PGO builds"), statically linked, so each
variant is the optimised build of its version obtainable here; a self-compiled build would only repeat that.

The default variant is today's image, built from stack/images/pretix unchanged (same tag, same inputs hash: nothing
is rebuilt or retagged). Another variant is built from a staged copy of that folder: its own wheelhouse (resolved
for its interpreter) and the Dockerfile's site-packages paths pointed at its python; its tag names the version.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.common.paths import IMAGES_DIR, cache_dir


@dataclass(frozen=True)
class PythonBuild:
    key: str  # the stack parameter's value
    suite: str  # the Debian release of the image's base
    version: str  # that release's python3: the wheelhouse resolves for it


DEFAULT = "3.11"
BUILDS: dict[str, PythonBuild] = {
    "3.11": PythonBuild("3.11", "bookworm", "3.11.2"),
    "3.13": PythonBuild("3.13", "trixie", "3.13.5"),
}
PRETIX_DIR = IMAGES_DIR / "pretix"
PRETIX_TAG = "pretix-lab/pretix:local"
WHEELHOUSE = "wheelhouse"  # the folder the Dockerfile copies, in the build context


def build_of(key: str) -> PythonBuild:
    return BUILDS[key]


def base_tag(suite: str) -> str:
    """The lab's Debian base image of a release."""
    return f"pretix-lab/base:{suite}"


def pretix_tag(key: str = DEFAULT) -> str:
    """The pretix image of a Python variant: the default keeps the one tag everything knows."""
    return PRETIX_TAG if key == DEFAULT else f"{PRETIX_TAG}-py{key}"


def wheelhouse_dir(key: str = DEFAULT) -> Path:
    """Where a variant's wheels are kept: the default's inside its build context, another's in the shared cache."""
    return PRETIX_DIR / WHEELHOUSE if key == DEFAULT else cache_dir() / f"wheelhouse-py{key}"


def dockerfile_text(text: str, key: str) -> str:
    """The pretix Dockerfile for a variant: its venv's site-packages paths name the variant's python."""
    return text if key == DEFAULT else text.replace("python3.11", f"python{key}")


def stage_context(key: str, into: Path) -> Path:
    """A build context for a non-default variant: stack/images/pretix's files (hard links where the filesystem
    allows), the Dockerfile rewritten, the variant's wheelhouse as `wheelhouse/`."""
    if key == DEFAULT:
        raise ValueError("the default variant builds from stack/images/pretix itself")
    into.mkdir(parents=True, exist_ok=True)
    for path in PRETIX_DIR.iterdir():
        if path.name == WHEELHOUSE or not path.is_file():
            continue
        if path.name == "Dockerfile":
            (into / path.name).write_text(dockerfile_text(path.read_text(), key))
        else:
            shutil.copy2(path, into / path.name)
    wheels = into / WHEELHOUSE
    wheels.mkdir(exist_ok=True)
    for path in wheelhouse_dir(key).iterdir():
        if path.is_file():
            _link_or_copy(path, wheels / path.name)
    return into


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


__all__ = ["BUILDS", "DEFAULT", "PythonBuild", "base_tag", "build_of", "dockerfile_text", "pretix_tag",
           "stage_context", "wheelhouse_dir"]
