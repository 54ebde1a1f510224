"""pyproject.toml and environment.yml must install the same pinned packages."""

import tomllib

import yaml

from lab.common.paths import ROOT


def _pyproject_pins() -> set[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = set(doc["project"]["dependencies"])
    for extra in doc["project"]["optional-dependencies"].values():
        pins |= set(extra)
    return pins


def _environment_pins() -> set[str]:
    doc = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {p for p in pip if not p.startswith("-e")}


def test_every_dependency_is_pinned_exactly():
    for pin in _pyproject_pins():
        assert "==" in pin, f"{pin} is not pinned with =="


def test_environment_yml_matches_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_environment_yml_uses_python_311():
    doc = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in doc["dependencies"]
