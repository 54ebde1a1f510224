"""pretix alone on the host runs what the image runs: the entrypoint's flags, pretix.cfg, the settings module, the
container side's environment; and the bench's last line says whether containers match the host within 10%."""

from __future__ import annotations

import re

import pytest

from lab.analysis import tuning as tun
from lab.analysis.efficiency import spread
from lab.common.paths import IMAGES_DIR
from lab.experiments.bench_alone_host import SIDES, verdict_line
from lab.stack import alone_host
from lab.stack.alone import POSTGRES, REDIS, WEB

ENTRYPOINT = (IMAGES_DIR / "pretix" / "pretix-lab-entrypoint").read_text()
SECRETS = {"django_secret": "d", "pretix_db_password": "p", "redis_password": "r", "postgres_password": "s"}


def _role(name: str) -> str:
    """The text of one role's case branch in the entrypoint."""
    return ENTRYPOINT.split(f"    {name})", 1)[1].split(";;", 1)[0]


@pytest.mark.parametrize("env", [{}, {"WEB_MAX_REQUESTS": "0", "WEB_ACCESS_LOG": "off", "WEB_WORKER_CLASS": "gthread",
                                      "WEB_THREADS": "4"}])
def test_the_host_gunicorn_takes_every_flag_of_the_images_web_role(env):
    command = alone_host.gunicorn_command(8123, 3, env)
    flags = set(re.findall(r"(--[a-z-]+)", _role("web")))
    flags -= {"--bind", "--control-socket"}  # the host binds 127.0.0.1 on a free port; no control socket needed
    if env.get("WEB_MAX_REQUESTS") == "0":
        flags -= {"--max-requests", "--max-requests-jitter"}
    if env.get("WEB_ACCESS_LOG") == "off":
        flags -= {"--access-logfile"}
    assert flags <= set(command), flags - set(command)
    assert command[command.index("--bind") + 1] == "127.0.0.1:8123"
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--worker-class") + 1] == env.get("WEB_WORKER_CLASS", "sync")
    assert ("--max-requests" in command) == (env.get("WEB_MAX_REQUESTS") != "0")


def test_the_host_celery_takes_every_flag_of_the_images_worker_role():
    command = alone_host.celery_command(2, {"WORKER_PREFETCH_MULTIPLIER": "1"})
    assert set(re.findall(r"(--[a-z-]+)", _role("worker"))) <= set(command)
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert command[command.index("--concurrency") + 1] == "2"


def test_the_host_pretix_env_is_the_container_sides_with_loopback_addresses(tmp_path):
    ports = {WEB: 8001, POSTGRES: 8002, REDIS: 8003}
    env = alone_host.pretix_env(tmp_path, SECRETS, ports, {"WEB_THREADS": "2"})
    assert env["PRETIX_DATABASE_HOST"] == "127.0.0.1" and env["PRETIX_DATABASE_PORT"] == "8002"
    assert env["PRETIX_REDIS_LOCATION"] == "redis://:r@127.0.0.1:8003/0"
    assert env["PRETIX_CELERY_BROKER"].endswith("@127.0.0.1:8003/1")
    assert env["PRETIX_PRETIX_URL"] == "http://127.0.0.1:8001"
    assert env["DJANGO_SETTINGS_MODULE"] == "pretix_lab_settings"  # the image's settings module
    assert env["PRETIX_CONFIG_FILE"].endswith("stack/images/pretix/pretix.cfg")  # the image's pretix.cfg
    assert env["WEB_THREADS"] == "2"  # the deployed stack's knobs, alike on both sides


def test_the_host_postgresql_takes_the_images_settings():
    conf = (IMAGES_DIR / "postgres" / "pg-entrypoint").read_text()
    for key, value in alone_host.PG_SETTINGS.items():
        if key in ("max_connections", "shared_buffers"):
            assert re.search(rf"{key}_?.*:-{value}", conf.replace("PG_MAX_CONNECTIONS", "max_connections_")
                             .replace("PG_SHARED_BUFFERS", "shared_buffers_")), key
        else:
            assert re.search(rf"{key} = '?{value}'?", conf), key


def _row(rate: float, ratios: list[float]) -> tun.RateSummary:
    return tun.RateSummary(rate, {}, {}, {}, {}, spread(ratios))


@pytest.mark.parametrize(("ratios", "expect"), [
    ([1.0, 1.05, 0.97], "containers/host = 3/s 1.00; within 10%: yes"),
    ([0.8, 0.8, 0.8], "containers/host = 3/s 1.25; within 10%: no"),  # the host needs less: containers cost more
    ([1.2, 1.25, 1.3], "containers/host = 3/s 0.80; within 10%: no"),
])
def test_the_last_line_says_whether_the_containers_match_the_host(ratios, expect):
    assert verdict_line([_row(3, ratios)]).endswith(expect)


def test_no_paired_rate_is_said_so():
    assert verdict_line([_row(3, [])]) == "alone-host: no rate measured both sides"


def test_the_sides_table_is_labelled_by_their_names():
    points = [tun.TuningPoint(side, 1, 3.0, 10, 60.0, 0.2, True, {"web": 0.1, "pg primary": 0.02}) for side in SIDES]
    lines = tun.table(tun.summarise(points, SIDES), SIDES)
    assert "containers" in lines[0] and "host" in lines[0]
    assert lines[-1].strip().startswith("host/containers (paired per repeat): 1.00")
