"""A study never deploys over, or tears down, a deployment this checkout cannot open (another checkout's, or one
whose var/ folder was removed): it refuses before its study folder exists, and the other deployment's database
volume is still there afterwards."""

from __future__ import annotations

import pytest

from lab.stack import deploy
from lab.stack.topology import project
from lab.study import params as studies
from lab.study.runner import run_study

pytestmark = pytest.mark.stack


def test_a_study_refuses_a_deployment_it_cannot_open(docker_client, tmp_path, monkeypatch):
    """In a world of its own (the session's stack has a database volume of its own, with its secrets)."""
    monkeypatch.setenv("PRETIX_LAB_PROJECT", f"{project()}-foreign")
    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path / "var"))  # a checkout without secrets
    name = f"{project()}_pg-primary"
    assert not docker_client.volumes.list(filters={"name": f"^{name}$"}), f"{name} left by an earlier run"
    volume = docker_client.volumes.create(name, labels={"pretix-lab-test": "foreign-deployment"})
    try:
        assert "secrets are gone" in deploy.foreign_deployment(docker_client)
        studies_root = tmp_path / "studies"
        with pytest.raises(deploy.DeployError, match="the study cannot deploy: .*secrets are gone"):
            run_study(studies.load(preset="quick"), log=lambda _: None, root=studies_root)
        assert not studies_root.exists()  # refused before the study folder was made
        assert docker_client.volumes.get(name).id == volume.id  # and nothing was torn down
    finally:
        volume.remove()
