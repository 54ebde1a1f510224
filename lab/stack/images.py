"""The lab's images: a Debian bookworm base (pulled, or made locally) and one image per stack/images/<dir>, plus
the pretix image of another Python when the stack parameter `python` asks for one (lab/stack/pybuild.py: its own
Debian base, wheelhouse and tag).

Builds are keyed by a hash of their inputs, stored as an image label: unchanged inputs build nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from lab.common.paths import IMAGES_DIR, cache_dir
from lab.errors import LabError
from lab.stack import pybuild

BASE_IMAGE = "pretix-lab/base:bookworm"
INPUTS_LABEL = "org.pretix-lab.inputs"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


class ImageError(LabError, RuntimeError):
    """An image could not be made; the message names it and where its build log is."""


@dataclass(frozen=True)
class ImageSpec:
    name: str  # folder under stack/images
    tag: str
    context: Path
    dockerfile: str = "Dockerfile"
    base: str = BASE_IMAGE


def specs() -> list[ImageSpec]:
    """One image per folder with a Dockerfile, pretix last (it is the slowest and changes least)."""
    found = [
        ImageSpec(name=d.name, tag=f"pretix-lab/{d.name}:local", context=d)
        for d in sorted(IMAGES_DIR.iterdir())
        if (d / "Dockerfile").exists()
    ]
    return sorted(found, key=lambda s: s.name == "pretix")


def _image(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


def mirror_args(suite: str) -> list[str]:
    """mmdebstrap's mirror: the host's own sources for bookworm (the host's release), Debian's mirror otherwise."""
    if suite == "bookworm":
        return [str(HOST_SOURCES)] if HOST_SOURCES.exists() else []
    return [f"deb http://deb.debian.org/debian {suite} main", f"deb http://deb.debian.org/debian {suite}-updates main",
            f"deb http://deb.debian.org/debian-security {suite}-security main"]


def ensure_base(client: docker.DockerClient, log: Callable[[str], None] = print, suite: str = "bookworm") -> str:
    """A Debian release as `pretix-lab/base:<suite>`: pulled where a registry answers, else mmdebstrap."""
    tag = pybuild.base_tag(suite)
    if _image(client, tag) is not None:
        return tag
    try:
        image = client.images.pull("debian", tag=f"{suite}-slim")
        image.tag(tag)
        log(f"base image: pulled debian:{suite}-slim")
        return tag
    except APIError:
        log(f"base image: no registry answers; making Debian {suite} locally with mmdebstrap ...")
    if shutil.which("mmdebstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "mmdebstrap"], check=True)
    tarball = cache_dir() / f"base-{suite}.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    if not tarball.exists():
        partial = tarball.with_name(f"base-{suite}.{os.getpid()}.partial.tar")  # worlds may share the cache
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates",
             suite, str(partial), *mirror_args(suite)],
            check=True,
        )
        partial.rename(tarball)
    subprocess.run(
        ["docker", "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["/bin/bash"]',
         str(tarball), tag],
        check=True, stdout=subprocess.DEVNULL,
    )
    return tag


def inputs_hash(context: Path, base_id: str) -> str:
    """Hash of every file in the build context (names and contents) and the base image id."""
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        rel = path.relative_to(context).as_posix()
        digest.update(rel.encode() + b"\0")
        if path.suffix == ".whl":  # wheels are immutable per name+size; skip reading ~200 MB each time
            digest.update(str(path.stat().st_size).encode())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(
    client: docker.DockerClient, spec: ImageSpec, log: Callable[[str], None] = print
) -> tuple[str, bool]:
    """Build one image unless its inputs are unchanged. Returns (image id, built?)."""
    base = client.images.get(spec.base)
    key = inputs_hash(spec.context, base.id)
    existing = _image(client, spec.tag)
    if existing is not None and existing.labels.get(INPUTS_LABEL) == key:
        return existing.id, False
    log(f"building {spec.tag} ...")
    logfile = Path(tempfile.gettempdir()) / f"pretix-lab-build-{spec.name}.log"
    try:
        image, chunks = client.images.build(
            path=str(spec.context), dockerfile=spec.dockerfile, tag=spec.tag, rm=True,
            network_mode="host", buildargs={"BASE_IMAGE": spec.base}, labels={INPUTS_LABEL: key},
        )
        logfile.write_text("".join(c.get("stream", "") for c in chunks))
    except BuildError as error:
        logfile.write_text("".join(c.get("stream", "") or c.get("error", "") for c in error.build_log))
        raise ImageError(f"building {spec.tag} failed: {error.msg} (log: {logfile})") from None
    return image.id, True


def ensure_images(client: docker.DockerClient, log: Callable[[str], None] = print,
                  python: str = pybuild.DEFAULT) -> dict[str, str]:
    """Base image, the pretix wheelhouse, then every image, and the pretix image of `python` when it is not the
    default's. Returns tag -> image id."""
    from lab.stack.wheelhouse import ensure_wheelhouse

    ensure_base(client, log)
    ensure_wheelhouse(pybuild.wheelhouse_dir(), progress=log)
    ids = {}
    for spec in specs():
        ids[spec.tag], _ = build(client, spec, log)
    if python != pybuild.DEFAULT:
        ids[pybuild.pretix_tag(python)] = ensure_pretix(client, python, log)
    return ids


def ensure_pretix(client: docker.DockerClient, python: str = pybuild.DEFAULT,
                  log: Callable[[str], None] = print) -> str:
    """The pretix image of one Python variant (its base, wheelhouse and build, each skipped when unchanged); returns
    its id. The default's is stack/images/pretix as `ensure_images` builds it."""
    from lab.stack.wheelhouse import ensure_wheelhouse

    variant = pybuild.build_of(python)
    base = ensure_base(client, log, variant.suite)
    ensure_wheelhouse(pybuild.wheelhouse_dir(python), progress=log, python_version=variant.version)
    if python == pybuild.DEFAULT:
        spec = next(s for s in specs() if s.name == "pretix")
        return build(client, spec, log)[0]
    staging = cache_dir() / "build-contexts"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"pretix-py{python}-", dir=staging) as tmp:
        context = pybuild.stage_context(python, Path(tmp))
        spec = ImageSpec(name=f"pretix-py{python}", tag=pybuild.pretix_tag(python), context=context, base=base)
        return build(client, spec, log)[0]


def digests(client: docker.DockerClient, python: str = pybuild.DEFAULT) -> dict[str, str]:
    """Image ids of the stack (with the pretix image of `python` when it is not the default's), for a run's
    environment record."""
    tags = [s.tag for s in specs()] + ([pybuild.pretix_tag(python)] if python != pybuild.DEFAULT else [])
    return {tag: img.id for tag in tags if (img := _image(client, tag)) is not None}
