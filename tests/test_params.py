"""Stack parameters: bad values are refused with the field and the allowed values named."""

import pytest

from lab.stack import params
from lab.stack.params import ParamsError, parse_memory
from lab.stack.topology import long_running, services


def test_defaults_follow_compose_yaml():
    p = params.validate({"edge_subnet": "10.213.0.0/24"})  # the default subnet is the world's (tests/test_world.py)
    assert p.effective_limits("pretix-web-1").memory == services()["pretix-web-1"].default_memory
    assert p.address(11) == "10.213.0.11"


def test_topology_has_two_of_each_pretix_module_and_replication():
    names = set(long_running())
    assert {"pretix-web-1", "pretix-web-2", "pretix-worker-1", "pretix-worker-2"} <= names
    assert {"postgres-primary", "postgres-replica", "redis", "proxy"} <= names
    assert services()["pretix-migrate"].one_shot


def test_default_memory_is_the_seeds_8_gb_plan():
    total = sum(parse_memory(s.default_memory) for s in services().values() if not s.one_shot)
    assert 6 * 2**30 <= total <= 8 * 2**30


@pytest.mark.parametrize("text,size", [("512M", 512 * 2**20), ("1.5G", 1536 * 2**20), ("2GiB", 2 * 2**30),
                                       ("1024", 1024), (2048, 2048)])
def test_parse_memory(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("raw,words", [
    ({"limits": {"pretix-web-9": {"cpus": 1}}}, ["pretix-web-9", "pretix-web-1", "the services are"]),
    ({"limits": {"pretix-web-1": {"memory": "200M"}}}, ["pretix-web-1", "200M", "at least"]),
    ({"limits": {"pretix-worker-1": {"memory": "lots"}}}, ["memory", "512M"]),
    ({"limits": {"redis": {"cpus": 64}}}, ["redis", "cores"]),
    ({"limits": {"redis": {"cpus": 0}}}, ["cpus", "must be > 0"]),
    ({"replication": "semi"}, ["replication", "'async', 'sync'", "semi"]),
    ({"https_port": 80}, ["https_port", "1024"]),
    ({"https_port": 9000, "http_port": 9000}, ["must differ"]),
    ({"edge_subnet": "8.8.8.0/24"}, ["edge_subnet", "private"]),
    ({"web_workers": 0}, ["web_workers"]),
    ({"colour": "blue"}, ["colour", "allowed", "https_port"]),
    # the backend network holds redis' fixed addresses (tests/test_redis_ha.py)
    ({"backend_subnet": "10.214.0.0/26"}, ["backend_subnet", "/25 or larger"]),
    ({"backend_subnet": "8.8.0.0/24"}, ["backend_subnet", "private"]),
    ({"edge_subnet": "10.213.0.0/24", "backend_subnet": "10.213.0.0/24"}, ["overlap"]),
    ({"redis_down_after_ms": 50}, ["redis_down_after_ms", "must be >= 200"]),
    ({"redis_reads": "nearest"}, ["redis_reads", "'primary', 'replica'"]),
    # the tuning knobs (lab/stack/tuning.py)
    ({"web_worker_class": "gevent"}, ["web_worker_class", "'sync', 'gthread'", "gevent"]),
    ({"web_threads": 4}, ["web_threads", "gthread", "1 with sync"]),
    ({"web_threads": 17, "web_worker_class": "gthread"}, ["web_threads", "<= 16"]),
    ({"web_max_requests": -1}, ["web_max_requests", ">= 0"]),
    ({"pretix_loglevel": "LOUD"}, ["pretix_loglevel", "'DEBUG'", "'WARNING'"]),
    ({"worker_loglevel": "INFO"}, ["worker_loglevel", "'info'"]),
    ({"worker_prefetch_multiplier": 0}, ["worker_prefetch_multiplier", ">= 1"]),
    ({"db_conn_max_age": 7200}, ["db_conn_max_age", "<= 3600"]),
    ({"pretix_metrics": "perhaps"}, ["pretix_metrics"]),
    # what HA and the lab add (lab/stack/hacost.py)
    ({"health_interval": 0}, ["health_interval", ">= 1"]),
    ({"health_interval": 301}, ["health_interval", "<= 300"]),
    ({"cron_interval": 5}, ["cron_interval", ">= 10"]),
    ({"cron_interval": 7200}, ["cron_interval", "<= 3600"]),
    ({"worker_gossip": "perhaps"}, ["worker_gossip"]),
    ({"python": "3.12"}, ["python", "'3.11', '3.13'", "3.12"]),  # lab/stack/pybuild.py
    # the swarm engine (lab/stack/swarm/)
    ({"engine": "kubernetes"}, ["engine", "'compose', 'swarm'", "kubernetes"]),
    ({"engine": "swarm", "nodes": 2}, ["nodes", ">= 3", "got 2"]),
    ({"nodes": 10}, ["nodes", "<= 9"]),
    ({"engine": "swarm", "node_subnet": "10.215.0.0/28"}, ["node_subnet", "/27 or larger"]),
    ({"engine": "swarm", "node_subnet": "10.213.0.0/24", "edge_subnet": "10.213.0.0/24"}, ["node_subnet", "overlap"]),
])
def test_bad_parameters_name_the_field_and_the_allowed_values(raw, words):
    with pytest.raises(ParamsError) as caught:
        params.validate(raw)
    for word in words:
        assert word in str(caught.value)


def test_memory_floor_rises_with_workers():
    params.validate({"web_workers": 2, "limits": {"pretix-web-1": {"memory": "700M"}}})
    with pytest.raises(ParamsError, match="web_workers=4"):
        params.validate({"web_workers": 4, "limits": {"pretix-web-1": {"memory": "700M"}}})


def test_load_merges_file_and_overrides(tmp_path):
    f = tmp_path / "study.yaml"
    f.write_text("stack:\n  https_port: 9443\n  limits:\n    redis: {cpus: 0.5}\n")
    p = params.load(f, {"http_port": 9080, "limits": {"redis": {"memory": "128M"}}})
    assert (p.https_port, p.http_port) == (9443, 9080)
    assert p.effective_limits("redis").cpus == 0.5 and p.effective_limits("redis").memory == "128M"
