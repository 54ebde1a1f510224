"""The stack parameter `python`: which pretix image a deployment and pretix alone run, and what that image is
built from (lab/stack/pybuild.py). No image is built here."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from lab.stack import images, params, pybuild, tuning
from lab.stack.params import StackParams


def test_the_parameter_allows_exactly_the_known_builds_and_defaults_to_bookworms():
    allowed = typing.get_args(StackParams.model_fields["python"].annotation)
    assert set(allowed) == set(pybuild.BUILDS)
    assert StackParams().python == pybuild.DEFAULT == "3.11"
    assert params.validate({"python": 3.13}).python == "3.13"  # YAML's unquoted number


def test_the_python_knob_is_reported_when_on():
    p = params.validate({"python": "3.13"})
    assert tuning.changed(tuning.knobs(p)) == {"python": "3.13"}
    assert tuning.describe(tuning.knobs(p)) == "python=3.13"
    assert tuning.pretix_env(p) == tuning.pretix_env(StackParams())  # it selects an image, not an env


def test_the_default_keeps_todays_tag_context_and_wheelhouse():
    assert pybuild.pretix_tag() == "pretix-lab/pretix:local"
    assert pybuild.wheelhouse_dir() == pybuild.PRETIX_DIR / "wheelhouse"
    text = (pybuild.PRETIX_DIR / "Dockerfile").read_text()
    assert pybuild.dockerfile_text(text, pybuild.DEFAULT) == text
    assert [s.tag for s in images.specs()][-1] == "pretix-lab/pretix:local"  # no second pretix spec by default


def test_another_python_names_its_image_base_and_wheelhouse(monkeypatch, tmp_path):
    monkeypatch.setenv("PRETIX_LAB_CACHE", str(tmp_path))
    assert pybuild.pretix_tag("3.13") == "pretix-lab/pretix:local-py3.13"
    assert pybuild.base_tag(pybuild.build_of("3.13").suite) == "pretix-lab/base:trixie"
    assert pybuild.wheelhouse_dir("3.13") == tmp_path / "wheelhouse-py3.13"
    assert pybuild.build_of("3.13").version.startswith("3.13.")
    mirror = images.mirror_args("trixie")
    assert any("trixie-security" in m for m in mirror) and not any("bookworm" in m for m in mirror)


def _staged(monkeypatch, tmp_path: Path, wheel_size: int) -> Path:
    monkeypatch.setenv("PRETIX_LAB_CACHE", str(tmp_path / "cache"))
    wheels = pybuild.wheelhouse_dir("3.13")
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / "pretix-2026.8.0-py3-none-any.whl").write_bytes(b"x" * wheel_size)
    (wheels / "requirements.txt").write_text("pretix==2026.8.0\n")
    return pybuild.stage_context("3.13", tmp_path / f"ctx-{wheel_size}")


def test_the_staged_context_points_the_dockerfile_at_its_python_and_carries_its_wheels(monkeypatch, tmp_path):
    ctx = _staged(monkeypatch, tmp_path, 10)
    dockerfile = (ctx / "Dockerfile").read_text()
    assert "python3.11" not in dockerfile and "/opt/pretix/venv/lib/python3.13/site-packages" in dockerfile
    assert (ctx / "wheelhouse" / "pretix-2026.8.0-py3-none-any.whl").is_file()
    own = {p.name for p in pybuild.PRETIX_DIR.iterdir() if p.is_file()}
    assert own <= {p.name for p in ctx.iterdir()}  # entrypoint, health, cfg, settings: the same files
    assert (ctx / "pretix.cfg").read_bytes() == (pybuild.PRETIX_DIR / "pretix.cfg").read_bytes()


def test_the_variants_inputs_hash_follows_its_wheels_and_base(monkeypatch, tmp_path):
    a = images.inputs_hash(_staged(monkeypatch, tmp_path, 10), "sha256:trixie")
    assert images.inputs_hash(tmp_path / "ctx-10", "sha256:trixie") == a  # unchanged inputs: the cached image
    c = images.inputs_hash(tmp_path / "ctx-10", "sha256:other")
    b = images.inputs_hash(_staged(monkeypatch, tmp_path, 11), "sha256:trixie")
    assert len({a, b, c}) == 3


def test_the_default_variant_is_not_staged():
    with pytest.raises(ValueError):
        pybuild.stage_context(pybuild.DEFAULT, Path("/nonexistent"))


def test_compose_and_alone_take_the_parameters_image():
    from lab.stack.deploy import compose_for

    compose = (pybuild.PRETIX_DIR.parents[1] / "compose.yaml").read_text()
    assert '"${LAB_PRETIX_IMAGE:-pretix-lab/pretix:local}"' in compose
    env = compose_for(params.validate({"python": "3.13"})).env
    assert env["LAB_PRETIX_IMAGE"] == "pretix-lab/pretix:local-py3.13"


def test_the_studys_python_file_sets_only_the_python_knob():
    from lab.experiments.bench_tuning import tuned_params

    p = tuned_params(str(pybuild.PRETIX_DIR.parents[2] / "studies" / "tuning-python-3.13.yaml"))
    assert tuning.changed(tuning.knobs(p)) == {"python": "3.13"}


def test_lab_up_offers_exactly_the_known_builds():
    from lab.cli.stack import up

    option = next(p for p in up.params if p.name == "python")
    assert set(option.type.choices) == set(pybuild.BUILDS)
