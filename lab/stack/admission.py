"""Admission control at the proxy: who gets through to pretix when more buyers arrive than it can serve.

Modes (nginx only, no extra service):
- `off`: everything passes (the lab's default).
- `rate`: nginx `limit_req` with a burst; refusals answer 429 with Retry-After. Keyed per client (the
  `X-Lab-Client` header each simulated buyer sends: all load comes from 127.0.0.1, so the address cannot be the
  key) or over `all` requests.
- `conn`: nginx `limit_conn`, requests in progress per client or over all; refusals answer 429 + Retry-After.
- `waiting-room`: new buyers (requests without a cookie: an API order, or a browser's first page) are admitted
  at `rate` per second over all; the rest get a fast 503 page with Retry-After telling them to come back, the way
  a queue page in a browser refreshes. A buyer holding a shop session (any cookie) is inside and is not stopped
  halfway through a checkout. Whoever retries first when a slot frees gets it: not first come, first served.
- `queue`: the waiting room with tickets, first come, first served (nginx's lua module and one shared dict): a new
  buyer draws the next ticket number on arrival (kept per `X-Lab-Client`, or in a `lab_ticket` cookie for a
  client without that header); a timer in one nginx worker moves the queue's head forward at `rate` per second
  (at most `burst` beyond the last ticket drawn, so an idle queue admits a burst at once). Tickets up to the head
  are in; the others get the 503 page with Retry-After = their estimated wait (capped at `retry_after`).
  Not tamper-proof (a browser could forge its cookie): a lab instrument, not a production queue.

The configuration is rendered as three nginx include files into the deployment folder
($PRETIX_LAB_VAR/deploy/nginx-admission, mounted read-only into the proxy at /etc/nginx/admission) and applied
live with `nginx -t` and `nginx -s reload` through docker exec: no redeploy, no dropped connection.
Exempt: /static/, /media/, the proxy's own health and status, /lab-ping, pretix's /healthcheck/ and /metrics.
`/lab-admission-probe` is a file nginx serves under the limit (a cheap path to measure the limit itself), and
`/lab-admission-state` answers the fingerprint of the configuration the running workers hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.common.paths import deploy_dir
from lab.common.validation import problems
from lab.errors import InputError, LabError

MOUNT = "/etc/nginx/admission"  # where stack/compose.yaml mounts the folder in the proxy
FOLDER = "nginx-admission"
FILES = ("http.conf", "server.conf", "location.conf")
ZONE_SIZE = "10m"  # constant: nginx refuses a reload that resizes a live shared zone
RoomMode = Literal["waiting-room", "queue"]  # new buyers admitted at `rate`/s over all: what a capacity sizes
ROOM_MODES: tuple[str, ...] = get_args(RoomMode)
LABELS = {"off": "no control", "waiting-room": "waiting room", "queue": "ticket queue"}  # for tables and figures


class AdmissionApplyError(LabError, RuntimeError):
    """The proxy refused or did not take a valid admission configuration (its previous one stays in force)."""


class AdmissionError(InputError):
    """Admission parameters are wrong, or the proxy refused the configuration (nothing was changed)."""


class Admission(BaseModel):
    """What the proxy admits; validated before anything is written or reloaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["off", "rate", "conn", RoomMode] = "off"
    rate: float | None = Field(default=None, gt=0, le=10_000,
                               description="rate/waiting-room: requests (new buyers) admitted per second")
    burst: int = Field(default=10, ge=0, le=100_000, description="rate/waiting-room: requests above the rate "
                                                                  "admitted at once before refusals start")
    connections: int | None = Field(default=None, ge=1, le=100_000,
                                    description="conn: requests in progress at once")
    per: Literal["client", "all"] | None = Field(
        default=None, description="rate/conn: limit each client (X-Lab-Client) or all requests together "
                                  "(default: rate per client, conn over all; the waiting room is always all)")
    retry_after: int = Field(default=2, ge=1, le=600, description="seconds a refused buyer is told to wait "
                                                                   "(queue: its estimated wait, at most this)")

    @model_validator(mode="after")
    def _needs(self) -> Admission:
        if (self.mode == "rate" or self.mode in ROOM_MODES) and self.rate is None:
            raise ValueError(f"mode {self.mode!r} needs `rate` (requests per second, > 0)")
        if self.mode == "conn" and self.connections is None:
            raise ValueError("mode 'conn' needs `connections` (requests in progress at once, >= 1)")
        if self.mode in ROOM_MODES and self.per == "client":
            raise ValueError(f"per: the {self.mode} admits over all buyers; allowed: all (or leave it out)")
        return self

    @property
    def key_scope(self) -> str:
        if self.mode in ROOM_MODES:
            return "new-buyers"
        return self.per or ("client" if self.mode == "rate" else "all")

    def describe(self) -> str:
        if self.mode == "off":
            return "admission off"
        if self.mode == "conn":
            return f"conn: {self.connections} in progress ({self.key_scope}), Retry-After {self.retry_after}s"
        return (f"{self.mode}: {self.rate:g}/s burst {self.burst} ({self.key_scope}), "
                f"Retry-After {self.retry_after}s")


OFF = Admission()


def parse_admission(raw: Admission | dict[str, Any] | str | None) -> Admission:
    """A mapping (or a mode name) -> Admission, or AdmissionError naming each bad field and what is allowed."""
    if isinstance(raw, Admission):
        return raw
    if raw is None:
        return OFF
    if isinstance(raw, str):
        raw = {"mode": raw}
    try:
        return Admission.model_validate(raw)
    except ValidationError as error:
        raise AdmissionError("admission parameters", problems(error, Admission)) from None


# --- rendering -----------------------------------------------------------------------------------------

def _per_minute(rate: float) -> str:
    """nginx takes whole requests per second or per minute: 12.5/s is 750r/m."""
    return f"{max(1, round(rate * 60))}r/m"


def _key_map(scope: str) -> str:
    if scope == "client":
        # the buyer's own header; a request without it falls back to the address
        return ('map $http_x_lab_client $lab_admission_key {\n    default $http_x_lab_client;\n'
                '    ""      $binary_remote_addr;\n}\n')
    if scope == "new-buyers":
        # an empty key is not counted: a buyer with a session cookie is already inside
        return 'map $http_cookie $lab_admission_key {\n    ""      "room";\n    default "";\n}\n'
    return 'map $http_x_lab_client $lab_admission_key {\n    default "all";\n}\n'


def _room_page(seconds: str) -> str:
    """The queue page a browser shows (it reloads itself after `seconds`, like Retry-After says)."""
    return (f"<!doctype html><html lang=pt><head><meta charset=utf-8>"
            f"<meta http-equiv=refresh content={seconds}><title>Fila de espera</title></head>"
            f"<body><h1>Está na fila</h1><p>Muitos compradores ao mesmo tempo. Esta página tenta "
            f"de novo dentro de {seconds} s: não feche a janela.</p></body></html>\\n")


def _queued_page(config: Admission) -> str:
    seconds = config.retry_after
    if config.mode == "waiting-room":
        status, body = 503, _room_page(str(seconds))
    else:
        status, body = 429, f"Too many requests: retry after {seconds} s\\n"
    return (f"location @lab_queued {{\n    default_type text/html;\n"
            f"    add_header Retry-After {seconds} always;\n"
            f"    add_header X-Lab-Admission queued always;\n"
            f"    add_header X-Request-ID $request_id always;\n"
            f"    return {status} '{body}';\n}}\n")


def _lua_number(value: float) -> str:
    return repr(float(value))


def _queue_http(config: Admission, zone: str) -> str:
    """The ticket queue's shared dict and the one timer (worker 0) that moves its head forward at `rate`/s."""
    assert config.rate is not None
    return (f"lua_shared_dict {zone} {ZONE_SIZE};\n"
            "init_worker_by_lua_block {\n"
            "    if ngx.worker.id() ~= 0 then return end\n"
            f"    local d, rate, burst = ngx.shared.{zone}, {_lua_number(config.rate)}, {config.burst}\n"
            "    local last = ngx.now()\n"
            "    local function tick(premature)\n"
            "        if premature then return end\n"
            "        ngx.update_time()\n"
            "        local now = ngx.now()\n"
            "        local head = (d:get('head') or 0) + rate * (now - last)\n"
            "        last = now\n"
            "        local cap = (d:get('issued') or 0) + burst\n"
            "        if head > cap then head = cap end\n"
            "        d:set('head', head)\n"
            "    end\n"
            "    local ok, err = ngx.timer.every(0.05, tick)\n"
            "    if not ok then ngx.log(ngx.ERR, 'lab queue timer: ', err) end\n"
            "}\n")


def _queue_access(config: Admission, zone: str) -> str:
    """Per request: a shop session passes; else the buyer's ticket (drawn on first sight) must be at the head."""
    assert config.rate is not None
    page = _room_page("' .. wait .. '")  # a Lua string: the wait is spliced in
    return ("access_by_lua_block {\n"
            f"    local d, rate, cap = ngx.shared.{zone}, {_lua_number(config.rate)}, {config.retry_after}\n"
            "    local cookie = ngx.var.http_cookie or ''\n"
            "    if cookie:gsub('lab_ticket=[^;]*;?', ''):find('[^%s;]') then return end  -- a shop session: inside\n"
            "    local key = ngx.var.http_x_lab_client\n"
            "    if key == nil or key == '' then\n"
            "        local held = ngx.var.cookie_lab_ticket\n"
            "        key = held and ('c:' .. held) or nil\n"
            "    end\n"
            "    local ticket = key and d:get('t:' .. key)\n"
            "    if not ticket then\n"
            "        ticket = d:incr('issued', 1, 0)\n"
            "        if not key then\n"
            "            key = 'c:' .. ticket\n"
            "            ngx.header['Set-Cookie'] = 'lab_ticket=' .. ticket .. '; Path=/; Secure; HttpOnly; '\n"
            "                                       .. 'SameSite=Lax'\n"
            "        end\n"
            "        d:set('t:' .. key, ticket, 3600)\n"
            "    end\n"
            "    local head = d:get('head') or 0\n"
            "    if ticket <= head then return end\n"
            "    local wait = math.ceil((ticket - head) / rate)\n"
            "    if wait < 1 then wait = 1 elseif wait > cap then wait = cap end\n"
            "    ngx.status = 503\n"
            "    ngx.header['Content-Type'] = 'text/html; charset=utf-8'\n"
            "    ngx.header['Retry-After'] = wait\n"
            "    ngx.header['X-Lab-Admission'] = 'queued'\n"
            "    ngx.header['X-Lab-Ticket'] = ticket\n"
            "    ngx.header['X-Request-ID'] = ngx.var.request_id\n"
            f"    ngx.print('{page}')\n"
            "    return ngx.exit(ngx.HTTP_OK)\n"
            "}\n")


def render(config: Admission) -> dict[str, str]:
    """The three include files (http, server and location context) for one configuration."""
    head = f"# rendered by lab.stack.admission: {config.describe()}\n"
    http, server, location = head, head, head
    fingerprint = fingerprint_of(config)
    server += (f"location = /lab-admission-state {{\n    access_log off;\n    default_type text/plain;\n"
               f"    return 200 '{config.mode} {fingerprint}\\n';\n}}\n")
    # pretix's own health and metrics stay reachable whatever the limit (and logged as before: the access log
    # is the run's independent count of requests)
    server += ("location = /healthcheck/ {\n    proxy_pass http://pretix;\n}\n"
               "location /metrics {\n    proxy_pass http://pretix;\n}\n")
    limit = ""
    if config.mode == "queue":  # tickets in Lua: its own key, refusal page and Retry-After
        zone = f"lab_queue_{fingerprint[:8]}"  # a new configuration starts an empty queue
        http += _queue_http(config, zone)
        limit = _queue_access(config, zone)
    elif config.mode != "off":
        http += _key_map(config.key_scope)
        if config.mode == "conn":
            http += f"limit_conn_zone $lab_admission_key zone=lab_conn:{ZONE_SIZE};\n"
            limit = (f"limit_conn lab_conn {config.connections};\nlimit_conn_status 429;\n"
                     "limit_conn_log_level info;\n")
        else:
            assert config.rate is not None
            http += f"limit_req_zone $lab_admission_key zone=lab_rate:{ZONE_SIZE} rate={_per_minute(config.rate)};\n"
            burst = f" burst={config.burst} nodelay" if config.burst else ""  # nginx refuses burst=0
            limit = (f"limit_req zone=lab_rate{burst};\nlimit_req_status 429;\n"
                     "limit_req_log_level info;\n")
        limit += "error_page 429 = @lab_queued;\n"
        server += _queued_page(config)
    location += limit
    # served by nginx from a file (a `return` would answer before the limit is checked)
    probe = "\n".join("    " + line for line in limit.splitlines())
    server += (f"location = /lab-admission-probe {{\n    access_log off;\n{probe}\n"
               f"    default_type text/plain;\n    alias {MOUNT}/probe.txt;\n}}\n")
    return {"http.conf": http, "server.conf": server, "location.conf": location, "probe.txt": "admitted\n",
            "state.json": json.dumps({"config": config.model_dump(), "fingerprint": fingerprint}) + "\n"}


def fingerprint_of(config: Admission) -> str:
    """Names one configuration: the proxy's state location answers it once its workers hold that configuration."""
    return hashlib.sha256(json.dumps(config.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


# --- the folder and the live proxy ------------------------------------------------------------------------

def folder(directory: Path | None = None) -> Path:
    return (directory or deploy_dir()) / FOLDER


def write(config: Admission, directory: Path | None = None) -> Path:
    """Write the include files atomically (each appears complete or not at all)."""
    target = folder(directory)
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render(config).items():
        temporary = target / f".{name}.tmp"
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, target / name)
    return target


def ensure(directory: Path | None = None) -> Path:
    """Before the proxy starts: the folder exists (as `off` unless a configuration is already there)."""
    target = folder(directory)
    if not (target / "state.json").exists():
        write(OFF, directory)
    return target


def current(directory: Path | None = None) -> Admission:
    """The configuration written for the deployment (off when none was)."""
    state = folder(directory) / "state.json"
    if not state.exists():
        return OFF
    return Admission.model_validate(json.loads(state.read_text())["config"])


def _exec(container, *command: str) -> subprocess.CompletedProcess:
    from lab.stack.containers import docker_cli

    return subprocess.run([*docker_cli(container), "exec", container.id, *command], capture_output=True, text=True,
                          timeout=30)


def _state_url(access) -> str:
    return f"{access.base_url}/lab-admission-state"


def holds(config: Admission, access, directory: Path | None = None) -> bool:
    """Whether `config` is both what is written for the deployment and what the proxy's workers answer (an
    interrupted apply can leave the two apart: then the answer is False and apply is needed)."""
    import httpx

    if current(directory) != config:
        return False
    try:
        seen = httpx.get(_state_url(access), verify=access.tls(), timeout=3).text.strip()
    except httpx.HTTPError:
        return False
    return seen == f"{config.mode} {fingerprint_of(config)}"


def apply(config: Admission | dict[str, Any] | str | None, *, docker_client, access=None,
          directory: Path | None = None, log=print, timeout: float = 15.0, if_changed: bool = False) -> Admission:
    """Render, check with `nginx -t`, reload; wait until the proxy answers with the new fingerprint.

    A configuration nginx refuses is rolled back before the reload (the proxy keeps what it had). With
    `if_changed`, nothing is done when the proxy already holds `config` (see holds).
    """
    from lab.stack.containers import container

    config = parse_admission(config)
    if access is None:
        from lab.pretix.bootstrap import PretixAccess

        access = PretixAccess.load(directory)
    if if_changed and holds(config, access, directory):
        return config
    proxy = container(docker_client, "proxy")
    mounted = _exec(proxy, "test", "-r", f"{MOUNT}/state.json")
    if mounted.returncode != 0:
        raise AdmissionApplyError(f"the proxy has no {MOUNT} mount: it was deployed without admission support; "
                             "deploy again with `lab up` from this checkout")
    previous = current(directory)
    write(config, directory)
    checked = _exec(proxy, "nginx", "-t", "-q")
    if checked.returncode != 0:
        write(previous, directory)
        raise AdmissionApplyError(f"nginx refused the admission configuration ({config.describe()}): "
                             f"{checked.stderr.strip()}")
    reloaded = _exec(proxy, "nginx", "-s", "reload")
    if reloaded.returncode != 0:
        write(previous, directory)
        raise AdmissionApplyError(f"nginx -s reload failed: {reloaded.stderr.strip()}")
    _wait_state(config, access, timeout)
    log(f"admission: {config.describe()}")
    return config


def _wait_state(config: Admission, access, timeout: float) -> None:
    """New connections reach workers with the new configuration once the state location answers with it on
    several fresh connections in a row (just after a reload an old worker can still take one new connection)."""
    import httpx

    want = f"{config.mode} {fingerprint_of(config)}"
    deadline = time.monotonic() + timeout
    seen, agreed = "", 0
    while time.monotonic() < deadline:
        try:
            seen = httpx.get(_state_url(access), verify=access.tls(), timeout=3).text
            agreed = agreed + 1 if seen.strip() == want else 0
            if agreed >= 5:
                return
        except httpx.HTTPError as error:
            seen, agreed = repr(error), 0
        time.sleep(0.2)
    raise AdmissionApplyError(f"the proxy did not take the new admission configuration within {timeout:.0f}s "
                         f"(wanted {want!r}, saw {seen.strip()!r})")


@contextmanager
def applied(config: Admission | dict[str, Any] | str | None, *, docker_client, access,
            log=print) -> Iterator[Admission]:
    """`config` at the proxy for the block, then what was written before it (each step skipped when the proxy
    holds that already): a run or a capacity search changes admission for its own time only."""
    config = parse_admission(config)
    before = current()
    apply(config, docker_client=docker_client, access=access, log=log, if_changed=True)
    try:
        yield config
    finally:
        apply(before, docker_client=docker_client, access=access, log=log, if_changed=True)


__all__ = ["LABELS", "ROOM_MODES", "Admission", "RoomMode", "AdmissionError", "AdmissionApplyError",
           "OFF", "applied", "apply", "current",
           "ensure", "holds", "parse_admission", "render", "write"]
