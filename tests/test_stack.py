"""The deployed stack, for real: health, HTTPS, balancing, replication, API, orders, clean teardown."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
import uuid

import default_world
import httpx
import pytest
from default_world import default_world_deployment

from lab.common.paths import deploy_dir
from lab.experiments.smoke import place_one_order, primary_sql
from lab.faults import run_schedule
from lab.stack import containers, deploy, images
from lab.stack.engine import EngineError, ensure_engine
from lab.stack.params import StackParams
from lab.stack.sql import pretix_sql
from lab.stack.topology import long_running, project

pytestmark = pytest.mark.stack


def _sql(client, service: str, query: str) -> str:
    return pretix_sql(client, query, service)


# --- bad input: refused before anything is deployed or changed -------------------------------------

def test_port_in_use_is_refused_before_anything_changes(docker_client):
    before = {c.id for c in deploy.project_containers(docker_client)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(deploy.DeployError, match=f"https_port={port}.*in use.*choose another port"):
            deploy.up(StackParams(https_port=port))
    assert {c.id for c in deploy.project_containers(docker_client)} == before


def test_missing_engine_without_root_says_what_to_install(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(EngineError, match="not running as root.*install and start Docker"):
        ensure_engine(is_root=False)


# --- the deployed stack ------------------------------------------------------------------------------

def test_every_service_is_running_and_healthy(stack, docker_client):
    rows = {r.service: r for r in deploy.status(docker_client)}
    for service in long_running():
        assert rows[service].state == "running", service
        assert rows[service].health == "healthy", service
        assert rows[service].memory_limit_mib and rows[service].memory_limit_mib < 4096, service
    # the HA/lab defaults (lab/stack/hacost.py): cron every 5 minutes, celery workers without gossip
    cron = containers.container(docker_client, "pretix-cron").attrs["Config"]["Env"]
    assert "CRON_INTERVAL=300" in cron
    worker = containers.container(docker_client, "pretix-worker-1").attrs["Config"]["Cmd"]
    assert worker[-3:] == ["--without-gossip", "--without-mingle", "--without-heartbeat"], worker


def test_healthcheck_through_the_proxy_over_verified_https(stack):
    access = stack.access
    r = httpx.get(f"{access.base_url}/healthcheck/", verify=access.tls())
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):  # not trusted without the deployment's own CA
        httpx.get(f"{access.base_url}/healthcheck/")


def test_http_redirects_to_https(stack):
    params = deploy.saved_params()
    r = httpx.get(f"http://127.0.0.1:{params.http_port}/healthcheck/", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"].startswith(f"https://127.0.0.1:{params.https_port}/")


def test_both_web_instances_answer(stack):
    served = []
    with httpx.Client(verify=stack.access.tls()) as http:
        for _ in range(12):
            r = http.get(f"{stack.access.base_url}/healthcheck/")
            assert r.status_code == 200
            served.append(r.headers["x-upstream-instance"])
    print("served by:", served)
    assert set(served) == {"web-1", "web-2"}


def test_static_files_are_served_by_the_proxy(stack):
    r = httpx.get(f"{stack.access.base_url}/static/pretixbase/img/pretix-logo.svg", verify=stack.access.tls())
    assert r.status_code == 200
    assert r.headers["x-upstream-instance"] == "nginx"  # answered by the proxy itself, not by pretix


def test_replica_streams_and_sees_primary_writes(stack, docker_client):
    rows = _sql(docker_client, "postgres-primary",
                "select application_name, state from pg_stat_replication")
    assert "streaming" in rows, rows
    marker = uuid.uuid4().hex
    _sql(docker_client, "postgres-primary",
         "create table if not exists lab_replication_probe (marker text primary key)")
    _sql(docker_client, "postgres-primary", f"insert into lab_replication_probe values ('{marker}')")
    deadline = time.monotonic() + 10
    seen = ""
    while time.monotonic() < deadline and seen != "1":
        seen = _sql(docker_client, "postgres-replica",
                    f"select count(*) from lab_replication_probe where marker = '{marker}'")
        time.sleep(0.2)
    assert seen == "1"
    assert _sql(docker_client, "postgres-replica", "select pg_is_in_recovery()") == "t"


# what a pretix process asks each of its redis caches for a read: the role of the node that answers
READ_ROLES = """
from django.core.cache import caches
for name in ("redis", "redis_sessions"):
    print("LAB-READ", name, caches[name].client.get_client(write=False).execute_command("ROLE")[0].decode())
"""


def test_pretix_reads_sessions_and_cache_from_the_redis_master(stack, docker_client):
    """A read from the asynchronous replica can miss the write just before it (a buyer's checkout step, saved by one
    request, unseen by the next): the stack sends pretix's reads to the master (stack parameter redis_reads)."""
    web = containers.container(docker_client, "pretix-web-1")
    result = web.exec_run(["pretix-lab-entrypoint", "shell", "-c", READ_ROLES], demux=True)
    out = (result.output[0] or b"").decode()
    roles = dict(line.split()[1:] for line in out.splitlines() if line.startswith("LAB-READ "))
    assert roles == {"redis": "master", "redis_sessions": "master"}, (out, (result.output[1] or b"")[-2000:])


def test_api_token_works_and_an_order_lands_in_the_primary(stack, docker_client):
    with httpx.Client(verify=stack.access.tls()) as http:
        r = http.get(f"{stack.access.base_url}/api/v1/organizers/",
                     headers={"Authorization": f"Token {stack.access.api_token}"})
        assert r.status_code == 200
        assert stack.access.organizer in [o["slug"] for o in r.json()["results"]]
        bad = http.get(f"{stack.access.base_url}/api/v1/organizers/",
                       headers={"Authorization": "Token not-a-token"})
        assert bad.status_code == 401
    order = place_one_order(stack.access)
    assert order["status"] == "n"
    found = primary_sql(docker_client, f"select count(*) from pretixbase_order where code = '{order['code']}'")
    assert found == "1"


def test_metrics_are_behind_basic_auth(stack):
    import json

    doc = json.loads((deploy_dir() / "secrets.json").read_text())
    url = f"{stack.access.base_url}/metrics"
    assert httpx.get(url, verify=stack.access.tls()).status_code == 401
    r = httpx.get(url, verify=stack.access.tls(), auth=(doc["metrics_user"], doc["metrics_password"]))
    assert r.status_code == 200


def test_default_admin_is_disabled_and_secrets_are_private(stack, docker_client):
    assert primary_sql(docker_client,
                       "select count(*) from pretixbase_user where email='admin@localhost' and is_active") == "0"
    for name in ("secrets.json", "pretix.json", "pretix.env", "postgres.env", "redis.env"):
        assert stat.S_IMODE((deploy_dir() / name).stat().st_mode) == 0o600, name


def test_second_image_build_with_unchanged_inputs_does_nothing(stack, docker_client):
    for spec in images.specs():
        _, built = images.build(docker_client, spec)
        assert not built, spec.tag


def test_status_and_logs_name_each_instance(stack, docker_client):
    rows = deploy.status(docker_client)
    webs = sorted(r.service for r in rows if r.service.startswith("pretix-web"))
    assert webs == ["pretix-web-1", "pretix-web-2"]
    assert all(r.cpu_percent is not None for r in rows)
    assert "GET" in deploy.logs("proxy", tail=50)


# --- teardown and warm redeploy (last: they consume the session's stack) -----------------------------

@pytest.mark.teardown
def test_faults_and_down_volumes_touch_the_project_and_nothing_else(stack, docker_client, tmp_path):
    """Not a bystander volume, network or container, nor a deployment in the default world (the user's, or one made
    here with `lab up`): the test world's faults and `lab down --volumes` used to act on it (one project name)."""
    tag = uuid.uuid4().hex[:8]
    bystanders = [
        docker_client.volumes.create(f"lab-test-bystander-{tag}"),
        docker_client.networks.create(f"lab-test-bystander-{tag}"),
        docker_client.containers.create("pretix-lab/base:bookworm", ["sleep", "1"], name=f"lab-test-bystander-{tag}"),
    ]
    try:
        with default_world_deployment(docker_client) as default:
            ours = default_world.snapshot(docker_client, project())
            assert {f"{project()}_edge", f"{project()}_backend"} <= {name for name, _ in ours["networks"]}
            assert not {c["id"] for c in ours["containers"].values()} & {
                c["id"] for c in default.before["containers"].values()}
            schedule = {"faults": [{"at": 0, "target": "pretix-web-1", "action": "kill", "duration": 2},
                                   {"at": 0, "target": "pretix-web-2", "action": "partition", "duration": 2}],
                        "steady_state": {"health": False, "containers": False, "throughput": False, "shop": False,
                                         "settle": 0}}
            result = asyncio.run(run_schedule(schedule, docker_client, tmp_path, log=print))
            assert result.ok and all(f.undone_at for f in result.faults), result.describe()
            web1 = f"{project()}-pretix-web-1-1"  # the kill acted here: a new start time
            assert default_world.snapshot(docker_client, project())["containers"][web1]["started"] != \
                ours["containers"][web1]["started"]

            down = default_world.lab(dict(os.environ), "down", "--volumes")
            assert down.returncode == 0, down.stderr[-3000:]  # exit 1 and "left behind: ..." when not clean
            assert deploy.leftovers(docker_client) == []
            assert not deploy_dir().exists()  # the deployment's secrets went with it

            after = default_world.snapshot(docker_client)
            assert after == default.before
            assert default_world.digest() == default.secrets
            if default.created:
                assert default_world.healthy(after) and default_world.https_answers()
        for thing in bystanders:
            thing.reload()  # raises NotFound if the teardown touched it
    finally:
        bystanders[2].remove(force=True)
        bystanders[1].remove()
        bystanders[0].remove()


@pytest.mark.teardown
def test_redeploy_reuses_the_migrated_state(docker_client):
    """After a teardown with volumes, a new deployment starts from the migrated template (no cold migrate)."""
    report = deploy.up(StackParams())
    try:
        print(report.describe())
        assert not report.cold and report.migrations == "template"  # migrate skipped, static files copied
        r = httpx.get(f"{report.access.base_url}/healthcheck/", verify=report.access.tls())
        assert r.status_code == 200
        logo = httpx.get(f"{report.access.base_url}/static/pretixbase/img/pretix-logo.svg", verify=report.access.tls())
        assert logo.status_code == 200 and len(logo.content) > 100  # the fresh static volume got pretix's files
        assert deploy.up(StackParams()).migrations == "kept"  # converging: this image migrated this database
        (deploy_dir() / deploy.MIGRATED_STAMP).write_text("another-pretix-image\n")
        assert deploy.up(StackParams()).migrations == "ran"  # a new pretix image: its migrations run
    finally:
        if not os.environ.get("PRETIX_LAB_KEEP_STACK"):
            assert deploy.down(volumes=True) == []
