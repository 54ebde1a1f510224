"""pretix alone on the host itself, no containers: the check that pretix alone in containers costs what it costs here.

The efficiency benches compare the stack with pretix alone in containers (lab.stack.alone). Issue 12 lets that side
run in containers if it is shown once to match pretix on the host within 10%; this module is the host side of that
check. It runs what the image runs, as the image runs it: the image's wheelhouse in a venv of Debian's python3.11
(the image's Python build), the image's pretix.cfg and settings module, gunicorn and celery with the entrypoint's
flags, Debian's PostgreSQL 15 with the image's settings and redis-server with the image's; a copy of the stack's
database, as the container side gets. Every process sits in its own cgroup (v1 cpuacct) so its CPU is read the way a
container's is; everything listens on 127.0.0.1 only, on free ports; all state lives under <var>/alone-host and is
removed by stop().
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lab.common.paths import IMAGES_DIR, cache_dir, deploy_dir, var_dir
from lab.stack.alone import POSTGRES, REDIS, WEB, WORKER, free_port
from lab.stack.containers import DeployError, container
from lab.stack.topology import project

PYTHON = Path("/usr/bin/python3.11")  # Debian's build: the one the pretix image runs
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = Path("/usr/bin/redis-server")
PACKAGES = {PYTHON: "python3-venv", PG_BIN / "postgres": "postgresql-15", REDIS_SERVER: "redis-server"}
WHEELHOUSE = IMAGES_DIR / "pretix" / "wheelhouse"
RUN_AS = "nobody"  # PostgreSQL refuses root; pretix need not have it either
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
# the image's PostgreSQL settings (stack/images/postgres/pg-entrypoint, primary, async) that cost per order
PG_SETTINGS = {"max_connections": "200", "shared_buffers": "256MB", "password_encryption": "scram-sha-256",
               "timezone": "UTC", "wal_level": "replica", "max_wal_senders": "10", "max_replication_slots": "10",
               "wal_keep_size": "256MB", "hot_standby": "on", "synchronous_commit": "on",
               "logging_collector": "off"}


def home() -> Path:
    return var_dir() / "alone-host"


def cgroup_dir(service: str) -> Path:
    return CPUACCT / f"{project()}-alone-host" / service


def missing_packages() -> list[str]:
    return sorted({pkg for path, pkg in PACKAGES.items() if not path.exists()})


def ensure_packages(log=print) -> None:
    """Debian's packages the host side needs, installed when missing (root on Debian only); their services are not
    started (a policy-rc.d says no for the install's length), so nothing else listens afterwards."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DeployError(f"pretix alone on the host needs {', '.join(missing)}: apt-get install {' '.join(missing)}")
    log(f"installing {', '.join(missing)} (Debian packages, their services not started) ...")
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    if not had_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True, env=env)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, capture_output=True, env=env)
    finally:
        if not had_policy:
            policy.unlink(missing_ok=True)


def ensure_venv(log=print) -> Path:
    """A venv of Debian's python3.11 with the image's wheelhouse, kept in the cache under the wheelhouse's hash."""
    requirements = WHEELHOUSE / "requirements.txt"
    if not requirements.exists():
        raise DeployError(f"no wheelhouse at {WHEELHOUSE}: deploy the stack first (`lab up` builds it)")
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = cache_dir() / f"alone-host-venv-{digest}"
    if (venv / ".complete").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    log(f"making the host venv {venv} from the wheelhouse ...")
    subprocess.run([str(PYTHON), "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--no-index",
                    "--find-links", str(WHEELHOUSE), "-r", str(requirements)], check=True, capture_output=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    shutil.copy(IMAGES_DIR / "pretix" / "pretix_lab_settings.py", site / "pretix_lab_settings.py")
    (venv / ".complete").write_text("ok\n")
    return venv


@dataclass
class HostSide:
    """The running host side: where gunicorn answers, and its processes by service (each in its own cgroup)."""

    base_url: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per service from the services' cgroups (children and exited children included)."""
        out = {}
        for service in self.processes:
            usage = cgroup_dir(service) / "cpuacct.usage"
            if usage.exists():
                out[service] = int(usage.read_text()) / 1e9
        return out


def _user() -> tuple[int, int]:
    entry = pwd.getpwnam(RUN_AS)
    return entry.pw_uid, entry.pw_gid


def _spawn(side: HostSide, service: str, command: list[str], env: dict[str, str], cwd: Path) -> None:
    """Start one service as RUN_AS in its own cgroup; its output goes to <home>/<service>.log."""
    group = cgroup_dir(service)
    group.mkdir(parents=True, exist_ok=True)
    uid, gid = _user()
    log_file = (home() / f"{service}.log").open("ab")

    def enter() -> None:  # runs in the child before exec: its cgroup first, then drop root
        (group / "cgroup.procs").write_text(str(os.getpid()))
        os.setsid()
        os.setgid(gid)
        os.setuid(uid)

    side.processes[service] = subprocess.Popen(command, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                                               preexec_fn=enter)


def _wait(check, what: str, timeout: float, side: HostSide) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [s for s, p in side.processes.items() if p.poll() is not None]
        if dead:
            tail = (home() / f"{dead[0]}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise DeployError(f"pretix alone on the host: {dead[0]} exited: {' | '.join(tail)}")
        time.sleep(0.5)
    raise DeployError(f"pretix alone on the host: {what} was not ready within {timeout:.0f}s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _start_postgres(side: HostSide, secrets: dict[str, str], port: int) -> None:
    data = home() / "pgdata"
    data.mkdir(parents=True)
    uid, gid = _user()
    pwfile = home() / "pgpass"
    pwfile.write_text(secrets["postgres_password"] + "\n")
    for path in (home(), data, pwfile):
        os.chown(path, uid, gid)
    subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", str(PG_BIN / "initdb"), "-D",
                    str(data), "-U", "postgres", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C.UTF-8"],
                   check=True, capture_output=True, env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})
    pwfile.unlink()
    options = [arg for k, v in PG_SETTINGS.items() for arg in ("-c", f"{k}={v}")]
    _spawn(side, POSTGRES, [str(PG_BIN / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                            "-c", f"port={port}", "-c", f"unix_socket_directories={home()}", *options],
           {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}, home())


def _psql(port: int, password: str, *args: str, stdin=None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "PGPASSWORD": password}
    return subprocess.run([*args, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"], env=env, stdin=stdin,
                          capture_output=True, timeout=timeout)


def _copy_database(client, secrets: dict[str, str], port: int) -> None:
    """The stack primary's pretix database into the host's PostgreSQL (pg_dump | pg_restore, nothing on disk)."""
    pw = secrets["postgres_password"]
    role = f"CREATE ROLE pretix LOGIN PASSWORD '{secrets['pretix_db_password']}'"
    made = _psql(port, pw, str(PG_BIN / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-c", role,  # each -c on its own:
                 "-c", "CREATE DATABASE pretix OWNER pretix", "-d", "postgres")  # CREATE DATABASE refuses a block
    if made.returncode != 0:
        raise DeployError(f"pretix alone on the host: creating the database failed: {made.stderr.decode()[-300:]}")
    primary = container(client, "postgres-primary")
    dump = subprocess.Popen(["docker", "exec", primary.id, "pg_dump", "-Fc", "-U", "postgres", "pretix"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    restore = _psql(port, pw, str(PG_BIN / "pg_restore"), "--no-owner", "--no-acl", "--role=pretix",
                    "--exit-on-error", "--single-transaction", "-d", "pretix", stdin=dump.stdout)
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait(timeout=60) != 0 or restore.returncode != 0:
        why = (restore.stderr or b"").decode(errors="replace").strip().splitlines()
        raise DeployError(f"pretix alone on the host: copying the database failed: {why[-1] if why else '?'}")
    analyze = _psql(port, pw, str(PG_BIN / "vacuumdb"), "--analyze-only", "--quiet", "-d", "pretix")
    if analyze.returncode != 0:
        raise DeployError(f"pretix alone on the host: ANALYZE failed: {analyze.stderr.decode()[-300:]}")


def pretix_env(venv: Path, secrets: dict[str, str], ports: dict[str, int], tuning_env: dict[str, str]) -> dict:
    """The pretix processes' environment: the container side's (lab.stack.alone.start) with host addresses."""
    redis_url = f"redis://:{secrets['redis_password']}@127.0.0.1:{ports[REDIS]}"
    return {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "LANG": "C.UTF-8", "HOME": str(home()),
            "PYTHONUNBUFFERED": "1", "PRETIX_CONFIG_FILE": str(IMAGES_DIR / "pretix" / "pretix.cfg"),
            "DJANGO_SETTINGS_MODULE": "pretix_lab_settings", "PRETIX_PRETIX_DATADIR": str(home() / "data"),
            "PRETIX_DJANGO_SECRET": secrets["django_secret"], "PRETIX_PRETIX_URL": f"http://127.0.0.1:{ports[WEB]}",
            "PRETIX_DATABASE_BACKEND": "postgresql", "PRETIX_DATABASE_NAME": "pretix",
            "PRETIX_DATABASE_USER": "pretix", "PRETIX_DATABASE_PASSWORD": secrets["pretix_db_password"],
            "PRETIX_DATABASE_HOST": "127.0.0.1", "PRETIX_DATABASE_PORT": str(ports[POSTGRES]),
            "PRETIX_REDIS_LOCATION": f"{redis_url}/0", "PRETIX_REDIS_SESSIONS": "true",
            "PRETIX_CELERY_BROKER": f"{redis_url}/1", "PRETIX_CELERY_BACKEND": f"{redis_url}/2",
            "PRETIX_LAB_REDIS_TIMEOUT": "0", **tuning_env}


def gunicorn_command(port: int, workers: int, env: dict[str, str]) -> list[str]:
    """The entrypoint's `web` role (stack/images/pretix/pretix-lab-entrypoint), bound to 127.0.0.1."""
    cmd = ["gunicorn", "pretix.wsgi", "--name", "pretix-web", "--bind", f"127.0.0.1:{port}", "--workers",
           str(workers), "--worker-class", env.get("WEB_WORKER_CLASS", "sync"), "--threads",
           env.get("WEB_THREADS", "1")]
    if env.get("WEB_MAX_REQUESTS", "1200") != "0":
        cmd += ["--max-requests", env.get("WEB_MAX_REQUESTS", "1200"), "--max-requests-jitter", "50"]
    if env.get("WEB_ACCESS_LOG", "on") != "off":
        cmd += ["--access-logfile", "-"]
    return cmd + ["--timeout", "60", "--graceful-timeout", "20", "--worker-tmp-dir", "/dev/shm",
                  "--forwarded-allow-ips", "*", "--error-logfile", "-"]


def celery_command(concurrency: int, env: dict[str, str]) -> list[str]:
    """The entrypoint's `worker` role."""
    return ["celery", "-A", "pretix.celery_app", "worker", "-l", env.get("WORKER_LOGLEVEL", "info"),
            "--concurrency", str(concurrency), "--prefetch-multiplier", env.get("WORKER_PREFETCH_MULTIPLIER", "4"),
            "--hostname", "pretix-worker@alone-host"]


def start(client, web_workers: int, worker_concurrency: int, *, tuning_env: dict[str, str] | None = None,
          log=print) -> HostSide:
    """Start the host side and wait until gunicorn answers and celery is ready. On failure call stop()."""
    stop()
    if not CPUACCT.is_dir():
        raise DeployError(f"pretix alone on the host needs cgroup v1 cpuacct at {CPUACCT} to count its CPU")
    ensure_packages(log)
    venv = ensure_venv(log)
    secrets_file = deploy_dir() / "secrets.json"
    if not secrets_file.exists():
        raise DeployError(f"no deployment secrets in {secrets_file}: deploy the stack first (`lab up`)")
    secrets = json.loads(secrets_file.read_text())
    home().mkdir(parents=True)
    ports = {WEB: free_port(), POSTGRES: free_port(), REDIS: free_port()}
    side = HostSide(base_url=f"http://127.0.0.1:{ports[WEB]}")
    _start_postgres(side, secrets, ports[POSTGRES])
    conf = home() / "redis.conf"
    conf.write_text(f"bind 127.0.0.1\nport {ports[REDIS]}\nrequirepass \"{secrets['redis_password']}\"\n"
                    f"save \"\"\nappendonly no\nmaxmemory 160mb\nmaxmemory-policy volatile-lru\ndir {home()}\n"
                    "tcp-keepalive 60\ntimeout 0\nlogfile \"\"\n")
    conf.chmod(0o644)
    _spawn(side, REDIS, [str(REDIS_SERVER), str(conf)], {"PATH": os.environ["PATH"]}, home())
    pg_ready = [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(ports[POSTGRES])]
    _wait(lambda: subprocess.run(pg_ready).returncode == 0, "PostgreSQL", 60, side)
    started = time.monotonic()
    _copy_database(client, secrets, ports[POSTGRES])
    log(f"pretix alone on the host: the stack's database copied in {time.monotonic() - started:.1f}s")
    (home() / "data").mkdir()
    uid, gid = _user()
    os.chown(home() / "data", uid, gid)
    env = pretix_env(venv, secrets, ports, tuning_env or {})
    _spawn(side, WEB, gunicorn_command(ports[WEB], web_workers, env), env, home())
    _spawn(side, WORKER, celery_command(worker_concurrency, env), env, home())
    _wait(lambda: _answers(f"{side.base_url}/healthcheck/"), "gunicorn /healthcheck/", 120, side)
    _wait(lambda: b" ready." in (home() / f"{WORKER}.log").read_bytes(), "celery", 90, side)
    return side


def _pids(group: Path) -> list[int]:
    procs = group / "cgroup.procs"
    return [int(p) for p in procs.read_text().split()] if procs.exists() else []


def stop(side: HostSide | None = None) -> list[str]:
    """Stop every process of the host side (by its cgroups, so children go too), remove its cgroups and its state
    folder. Returns what could not be removed."""
    root = CPUACCT / f"{project()}-alone-host"
    groups = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for group in groups:
            for pid in _pids(group):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline and any(_pids(g) for g in groups):
            time.sleep(0.2)
    for p in (side.processes.values() if side else []):
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    left = []
    for group in groups:
        try:
            group.rmdir()
        except OSError:
            left.append(f"cgroup {group}")
    if root.is_dir() and not left:
        root.rmdir()
    shutil.rmtree(home(), ignore_errors=True)
    if home().exists():
        left.append(f"folder {home()}")
    return left


__all__ = ["HostSide", "celery_command", "ensure_packages", "ensure_venv", "gunicorn_command", "home",
           "missing_packages", "pretix_env", "start", "stop"]
