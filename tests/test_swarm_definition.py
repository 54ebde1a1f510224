"""The swarm definition generated from stack/compose.yaml (through compose's own `config`): what `docker stack
deploy` gets, the placement rules held for 3 to 5 nodes, and the node containers' published ports."""

from __future__ import annotations

import itertools

import pytest

from lab.stack import secrets
from lab.stack.params import StackParams
from lab.stack.swarm import nodes
from lab.stack.swarm.definition import LABEL_PROJECT, LABEL_SERVICE, generate, module_of, node_labels
from lab.stack.swarm.deploy import names_topology, plan_of, resolved_config
from lab.stack.topology import long_running, project


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    directory = tmp_path_factory.mktemp("deploy")
    params = StackParams(engine="swarm")
    secrets.write_env_files(secrets.load_or_create(directory), directory, names_topology(params))
    return resolved_config(params, directory, "")


def eligible(constraints: list[str], nodes_count: int) -> set[int]:
    """The nodes whose labels satisfy every `node.labels.K == V` constraint."""
    found = set()
    for index in range(1, nodes_count + 1):
        labels = node_labels(index, nodes_count)
        ok = True
        for rule in constraints:
            key, _, value = rule.removeprefix("node.labels.").partition(" == ")
            ok = ok and labels.get(key) == value
        if ok:
            found.add(index)
    return found


def test_module_of():
    assert [module_of(s) for s in ("pretix-web-2", "postgres-replica", "redis", "redis-replica",
                                   "redis-sentinel-3", "proxy")] == \
        ["pretix-web", "postgres", "redis", "redis", "redis-sentinel", "proxy"]


def test_every_long_running_service_and_no_one_shot_job(config):
    definition = generate(config, project="p", nodes=3)
    assert list(definition["services"]) == long_running()
    assert "pretix-migrate" not in definition["services"]


def test_nothing_swarm_cannot_do(config):
    for name, svc in generate(config, project="p", nodes=3)["services"].items():
        for key in ("build", "depends_on", "profiles", "restart", "pull_policy", "env_file", "container_name"):
            assert key not in svc, (name, key)
        assert isinstance(svc["networks"], list), name  # no fixed addresses
        assert svc["deploy"]["endpoint_mode"] == "dnsrr"  # no IPVS on this kernel


def test_containers_carry_the_compose_labels(config):
    for name, svc in generate(config, project="proj", nodes=3)["services"].items():
        assert svc["labels"] == {LABEL_PROJECT: "proj", LABEL_SERVICE: name}


def test_staged_deployment_creates_every_service(config):
    definition = generate(config, project="p", nodes=3, running={"redis"})
    assert {n: s["deploy"]["replicas"] for n, s in definition["services"].items() if s["deploy"]["replicas"]} == \
        {"redis": 1}


def test_services_find_redis_and_web_by_name(config):
    services = generate(config, project="p", nodes=3)["services"]
    assert services["proxy"]["environment"]["WEB_1_ADDR"] == "pretix-web-1:8000"
    assert services["redis-replica"]["environment"]["REDIS_PRIMARY_ADDR"] == "redis"
    assert "redis-sentinel-1:26379" in services["pretix-web-1"]["environment"]["PRETIX_REDIS_SENTINELS"].replace(
        '", ', ":").replace('["', "").replace("[", "")


@pytest.mark.parametrize("count", [3, 4, 5])
def test_instances_of_a_module_never_share_a_node(config, count):
    services = generate(config, project="p", nodes=count)["services"]
    modules: dict[str, list[str]] = {}
    for name in services:
        modules.setdefault(module_of(name), []).append(name)
    for members in modules.values():
        sets = [eligible(services[m]["deploy"]["placement"]["constraints"], count) for m in members]
        assert all(sets), members  # each can run somewhere
        for a, b in itertools.combinations(sets, 2):
            assert not a & b, members


@pytest.mark.parametrize("count", [3, 4, 5])
def test_postgres_pinned_to_two_nodes_with_own_volumes(config, count):
    services = generate(config, project="p", nodes=count)["services"]
    primary = eligible(services["postgres-primary"]["deploy"]["placement"]["constraints"], count)
    replica = eligible(services["postgres-replica"]["deploy"]["placement"]["constraints"], count)
    assert len(primary) == len(replica) == 1 and primary != replica
    assert [v["source"] for v in services["postgres-primary"]["volumes"] if v["type"] == "volume"] == ["pg-primary"]
    assert [v["source"] for v in services["postgres-replica"]["volumes"] if v["type"] == "volume"] == ["pg-replica"]


@pytest.mark.parametrize("count", [3, 4, 5])
def test_losing_any_node_keeps_a_sentinel_quorum_and_a_redis(config, count):
    services = generate(config, project="p", nodes=count)["services"]
    where = {name: eligible(services[name]["deploy"]["placement"]["constraints"], count)
             for name in ("redis", "redis-replica", "redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")}
    for lost in range(1, count + 1):
        sentinels_left = sum(1 for n, s in where.items() if n.startswith("redis-sentinel") and s - {lost})
        assert sentinels_left >= 2
        assert where["redis"] - {lost} or where["redis-replica"] - {lost}


def test_only_the_proxy_publishes_in_host_mode_on_node_1(config):
    services = generate(config, project="p", nodes=3)["services"]
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"proxy"}
    assert {p["mode"] for p in services["proxy"]["ports"]} == {"host"}
    assert eligible(services["proxy"]["deploy"]["placement"]["constraints"], 3) == {1}


def test_node_containers_publish_only_on_loopback(tmp_path):
    plan = plan_of(StackParams(engine="swarm", nodes=4), tmp_path)
    for index in range(1, 5):
        argv = nodes.run_command(plan, index)
        ports = [argv[i + 1] for i, a in enumerate(argv) if a in ("-p", "--publish")]
        if index == 1:
            assert ports and all(p.startswith("127.0.0.1:") for p in ports)
        else:
            assert ports == []
        assert "--privileged" not in argv
        assert f"{nodes.OWNER_LABEL}={project()}" in argv


def test_node_faults_are_in_the_catalogue_and_target_nodes():
    import lab.faults  # noqa: F401 - registers the built-ins
    from lab.faults.catalogue import faults

    for action in ("node-kill", "node-partition", "node-drain"):
        fault = faults.get(action)
        assert "node-3" in fault.allowed_targets() and "pretix-web-1" not in fault.allowed_targets()
        assert fault.services_of("node-2") == ["node-2"]
