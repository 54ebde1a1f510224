"""redis through sentinels, as pure logic: addresses, pretix/celery settings, replies parsed (no docker)."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import pytest

from lab.evidence.monitor import parsers
from lab.evidence.monitor.base import StreamEnded
from lab.faults import FaultScheduleError, parse_schedule
from lab.faults.redis import data_nodes, follows, is_good_replica, parse_info, parse_sentinel_replicas
from lab.stack import params
from lab.stack.redis_ha import MASTER_NAME, SENTINEL_SERVICES, RedisTopology, parse_master_addr
from lab.stack.secrets import Secrets, write_env_files
from lab.stack.topology import long_running

TOPOLOGY = RedisTopology.of(params.validate({}))


def test_the_topology_has_a_replica_and_three_sentinels():
    assert {"redis", "redis-replica", *SENTINEL_SERVICES} <= set(long_running())
    assert data_nodes() == ["redis", "redis-replica"]


def test_fixed_addresses_sit_below_dockers_dynamic_range():
    p = params.validate({"backend_subnet": "10.50.0.0/24", "redis_down_after_ms": 900})
    topo = RedisTopology.of(p)
    assert (topo.primary, topo.replica) == ("10.50.0.21", "10.50.0.22")
    assert topo.sentinels == ("10.50.0.31", "10.50.0.32", "10.50.0.33")
    assert p.backend_dynamic_range() == "10.50.0.128/25"
    env = topo.compose_env()
    assert env["LAB_REDIS_SENTINELS"] == "10.50.0.31:26379 10.50.0.32:26379 10.50.0.33:26379"
    assert env["LAB_REDIS_DOWN_AFTER_MS"] == "900" and env["LAB_REDIS_SENTINEL_3_ADDR"] == "10.50.0.33"


def test_pretix_and_celery_are_configured_through_the_sentinels():
    env = TOPOLOGY.pretix_env("s3cret/with:odd@chars")
    assert json.loads(env["PRETIX_REDIS_SENTINELS"]) == [[a, 26379] for a in TOPOLOGY.sentinels]
    location = urlsplit(env["PRETIX_REDIS_LOCATION"])
    assert location.hostname == MASTER_NAME and location.path == "/0"  # django-redis: the host is the master name
    assert unquote(location.password) == "s3cret/with:odd@chars"
    for key, db in (("PRETIX_CELERY_BROKER", 1), ("PRETIX_CELERY_BACKEND", 2)):
        parts = env[key].split(";")
        assert len(parts) == 3
        for part, address in zip(parts, TOPOLOGY.sentinels, strict=True):
            url = urlsplit(part)
            assert (url.scheme, url.hostname, url.port, url.path) == ("sentinel", address, 26379, f"/{db}")
            assert unquote(url.password) == "s3cret/with:odd@chars"
    broker = json.loads(env["PRETIX_CELERY_BROKER_TRANSPORT_OPTIONS"])
    assert broker["master_name"] == MASTER_NAME and 0 < broker["socket_timeout"] <= 5  # never block on a dead host
    assert json.loads(env["PRETIX_CELERY_BACKEND_TRANSPORT_OPTIONS"]) == {"master_name": MASTER_NAME}
    assert 0 < float(env["PRETIX_LAB_REDIS_TIMEOUT"]) <= 5  # django-redis and the result backend (settings)
    assert env["PRETIX_REDIS_SESSIONS"] == "true"
    assert env["PRETIX_LAB_REDIS_READS"] == "primary"  # read-your-writes: the image's settings read from the master
    replica_reads = RedisTopology.of(params.StackParams(redis_reads="replica")).pretix_env("p")
    assert replica_reads["PRETIX_LAB_REDIS_READS"] == "replica"


def test_env_files_carry_the_sentinel_settings_and_nothing_by_name(tmp_path):
    made = Secrets("d", "p", "pd", "r", "redispw", "metrics", "m")
    write_env_files(made, tmp_path, TOPOLOGY)
    text = (tmp_path / "pretix.env").read_text()
    assert "PRETIX_REDIS_SENTINELS=" in text and "@redis:" not in text and "redispw" in text
    assert (tmp_path / "redis.env").read_text() == "REDIS_PASSWORD=redispw\n"


def test_sentinel_replies_are_read():
    assert parse_master_addr("10.214.0.22\n6379\n") == "10.214.0.22"
    assert parse_master_addr("") is None and parse_master_addr("ERR No such master with that name") is None
    replicas = parse_sentinel_replicas("name\n10.214.0.21:6379\nip\n10.214.0.21\nflags\nslave\nmaster-link-status\n"
                                       "ok\nname\n10.214.0.9:6379\nip\n10.214.0.9\nflags\ns_down,slave\n")
    assert [r["ip"] for r in replicas] == ["10.214.0.21", "10.214.0.9"]
    assert is_good_replica(replicas[0], "10.214.0.21")
    assert not is_good_replica(replicas[1], "10.214.0.9")  # down: SENTINEL FAILOVER would answer NOGOODSLAVE
    info = parse_info("# Replication\r\nrole:slave\r\nmaster_host:10.214.0.22\r\nmaster_link_status:up\r\n")
    assert info == {"role": "slave", "master_host": "10.214.0.22", "master_link_status": "up"}
    assert follows(info) and follows(info, "10.214.0.22") and not follows(info, "10.214.0.21")
    assert not follows({**info, "master_link_status": "down"}) and not follows({"role": "master"})


def test_the_monitor_reads_roles_and_the_sentinels_view():
    rows = {(m, lab): v for m, lab, v in parsers.parse_redis_info(
        "role:slave\nmaster_link_status:up\nconnected_slaves:0\nmaster_repl_offset:1234\n")}
    assert rows[("is_master", "")] == 0 and rows[("master_link_up", "")] == 1 and rows[("repl_offset", "")] == 1234
    block = ["declared 10.214.0.21", "10.214.0.22", "6379", "name", "lab-redis", "flags", "master",
             "num-slaves", "1", "num-other-sentinels", "2", "config-epoch", "3"]
    rows = {(m, lab): v for m, lab, v in parsers.parse_sentinel_block(block)}
    assert rows[("master", "addr=10.214.0.22")] == 1 and rows[("master_is_declared", "")] == 0
    assert rows[("replicas_known", "")] == 1 and rows[("other_sentinels", "")] == 2
    assert rows[("master_down", "")] == 0
    with pytest.raises(StreamEnded, match="Connection refused"):
        parsers.parse_sentinel_block(["declared 10.214.0.21", "Could not connect: Connection refused"])


def test_redis_failover_targets_only_the_data_nodes():
    plan = parse_schedule([{"at": 5, "target": "redis", "action": "redis-failover", "duration": 5}])
    assert plan.fault_ids() == ["f1-redis-failover"]
    with pytest.raises(FaultScheduleError, match=r"'redis-sentinel-1' is not a target of 'redis-failover'; "
                                                 r"allowed: redis, redis-replica"):
        parse_schedule([{"at": 5, "target": "redis-sentinel-1", "action": "redis-failover", "duration": 5}])
    with pytest.raises(FaultScheduleError, match="failback"):
        parse_schedule([{"at": 5, "target": "redis", "action": "redis-failover", "duration": 5,
                         "options": {"failback": "maybe"}}])
