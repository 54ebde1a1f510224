"""The lab's images: a Debian bookworm base (pulled, or made locally) and one image per stack/images/<dir>.

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


def ensure_base(client: docker.DockerClient, log: Callable[[str], None] = print) -> str:
    """Debian bookworm as `pretix-lab/base:bookworm`: pulled where a registry answers, else mmdebstrap."""
    if _image(client, BASE_IMAGE) is not None:
        return BASE_IMAGE
    try:
        image = client.images.pull("debian", tag="bookworm-slim")
        image.tag(BASE_IMAGE)
        log("base image: pulled debian:bookworm-slim")
        return BASE_IMAGE
    except APIError:
        log("base image: no registry answers; making Debian bookworm locally with mmdebstrap ...")
    if shutil.which("mmdebstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "mmdebstrap"], check=True)
    tarball = cache_dir() / "base-bookworm.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    if not tarball.exists():
        mirror = [str(HOST_SOURCES)] if HOST_SOURCES.exists() else []
        partial = tarball.with_name(f"base-bookworm.{os.getpid()}.partial.tar")  # worlds may share the cache
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates",
             "bookworm", str(partial), *mirror],
            check=True,
        )
        partial.rename(tarball)
    subprocess.run(
        ["docker", "import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["/bin/bash"]',
         str(tarball), BASE_IMAGE],
        check=True, stdout=subprocess.DEVNULL,
    )
    return BASE_IMAGE


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
    base = client.images.get(BASE_IMAGE)
    key = inputs_hash(spec.context, base.id)
    existing = _image(client, spec.tag)
    if existing is not None and existing.labels.get(INPUTS_LABEL) == key:
        return existing.id, False
    log(f"building {spec.tag} ...")
    logfile = Path(tempfile.gettempdir()) / f"pretix-lab-build-{spec.name}.log"
    try:
        image, chunks = client.images.build(
            path=str(spec.context), dockerfile=spec.dockerfile, tag=spec.tag, rm=True,
            network_mode="host", buildargs={"BASE_IMAGE": BASE_IMAGE}, labels={INPUTS_LABEL: key},
        )
        logfile.write_text("".join(c.get("stream", "") for c in chunks))
    except BuildError as error:
        logfile.write_text("".join(c.get("stream", "") or c.get("error", "") for c in error.build_log))
        raise ImageError(f"building {spec.tag} failed: {error.msg} (log: {logfile})") from None
    return image.id, True


def ensure_images(client: docker.DockerClient, log: Callable[[str], None] = print) -> dict[str, str]:
    """Base image, the pretix wheelhouse, then every image. Returns tag -> image id."""
    from lab.stack.wheelhouse import ensure_wheelhouse

    ensure_base(client, log)
    ensure_wheelhouse(IMAGES_DIR / "pretix" / "wheelhouse", progress=log)
    ids = {}
    for spec in specs():
        ids[spec.tag], _ = build(client, spec, log)
    return ids


def digests(client: docker.DockerClient) -> dict[str, str]:
    """Image ids of the stack, for a run's environment record."""
    return {s.tag: img.id for s in specs() if (img := _image(client, s.tag)) is not None}
