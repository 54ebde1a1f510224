"""pg-failover: kill the PostgreSQL primary and promote the standby; the undo rebuilds and (by default) fails back.

Inject (each step one row in faults.parquet):
  check     the target is the read-write primary and the other node a standby (its replication lag is recorded)
  kill      restart policy "no" first (docker must not bring the old primary back), then SIGKILL
  promote   `docker exec <standby> pg-promote`; pretix follows by itself (libpq multi-host, read-write only)
  fence     a throw-away helper container writes standby.signal into the old primary's volume, so whatever
            starts it later (`lab up`, `docker start`) gets a read-only node, never a second writable primary

Undo:
  not promoted (the promote step failed): un-fence and start the old primary again (it is still the primary)
  rebuild   wipe the old primary's volume, pg_basebackup it from the new primary (slot, -X stream -c fast),
            standby.signal + primary_conninfo (the replicator's password in a passfile in the container's own
            layer, never in the volume), restore the restart policy, start it, wait until it streams
  failback  (option, default on) switch the roles back so the stack ends as deployed: wait until the rebuilt
            standby has replayed everything, stop the new primary cleanly (its walsender waits for the standby),
            check with pg_controldata that the standby received the shutdown checkpoint (else abort: restart the
            new primary, keep the rebuilt standby), promote the old primary, drop its primary_conninfo, wipe the
            other node's volume and start it: its entrypoint makes it a standby again (pg_basebackup).
Replication is asynchronous by default: a kill may lose the last transactions the standby had not received.
Synchronous mode (`lab up --replication sync`) degrades to asynchronous while no standby exists (between the
failback's promotion and the rebuilt replica streaming), then is restored: otherwise every commit would wait.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lab.faults.catalogue import faults, image_role, long_running_specs
from lab.faults.failover import PrimaryFailover, wait_for
from lab.stack.containers import LABEL_FAULT_HELPER, LABEL_PROJECT
from lab.stack.sql import SOCKET, psql  # noqa: F401 - psql is part of this module's API
from lab.stack.topology import project

PGDATA = "/var/lib/postgresql/data"
PG_HOME = "/var/lib/postgresql"

FENCE_SCRIPT = r"""
set -euo pipefail
D=/var/lib/postgresql/data
if [ -f "$D/PG_VERSION" ]; then
    touch "$D/standby.signal"
    chown postgres:postgres "$D/standby.signal"
    echo fenced
else
    echo "no cluster to fence"
fi
"""

UNFENCE_SCRIPT = r"""
set -euo pipefail
rm -f /var/lib/postgresql/data/standby.signal
echo unfenced
"""

WIPE_SCRIPT = r"""
set -euo pipefail
find /var/lib/postgresql/data -mindepth 1 -delete
echo wiped
"""

CONTROLDATA_SCRIPT = r"""
set -euo pipefail
setpriv --reuid=postgres --regid=postgres --init-groups pg_controldata -D /var/lib/postgresql/data \
    | grep -E '^(Database cluster state|Latest checkpoint location|Latest checkpoint.s TimeLineID):'
"""

# Root part wipes and prepares; every file in the data dir is made by the postgres user.
REBUILD_SCRIPT = r"""
set -euo pipefail
D=/var/lib/postgresql/data
find "$D" -mindepth 1 -delete
chown postgres:postgres "$D"
chmod 0700 "$D"
pw=${REPLICATION_PASSWORD//\\/\\\\}
pw=${pw//:/\\:}
install -o postgres -g postgres -m 0600 /dev/null /tmp/pgpass
printf '*:*:*:replicator:%s\n' "$pw" >/tmp/pgpass
as_pg() {
    setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME=/var/lib/postgresql PGPASSFILE=/tmp/pgpass "$@"
}
bb=(pg_basebackup -h "$SOURCE" -p 5432 -U replicator -w -D "$D" -X stream -c fast -S "$SLOT")
if ! as_pg "${bb[@]}" >&2; then
    echo "pg_basebackup failed; once more, creating slot $SLOT" >&2
    find "$D" -mindepth 1 -delete
    as_pg "${bb[@]}" --create-slot >&2
fi
as_pg touch "$D/standby.signal"
# the source's own ALTER SYSTEM choices are not this node's: a degraded (asynchronous) primary's override would
# otherwise outlive the failback here and win over the lab.conf the entrypoint writes
as_pg sed -i '/^synchronous_standby_names/d' "$D/postgresql.auto.conf"
conninfo="host=$SOURCE port=5432 user=replicator passfile=/var/lib/postgresql/.pgpass"
conninfo="$conninfo application_name=$SLOT connect_timeout=5"
as_pg tee -a "$D/postgresql.auto.conf" >/dev/null <<EOF
# pretix-lab pg-failover undo: a standby of $SOURCE (reset on failback)
primary_conninfo = '$conninfo'
primary_slot_name = '$SLOT'
EOF
echo "LAB-IDS $(id -u postgres) $(id -g postgres)"
"""


class FailoverOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    failback: bool = Field(default=True, description="the undo also switches the roles back (the stack ends as "
                                                      "deployed); false: the old primary stays a standby")
    timeout: float = Field(default=180, ge=30, le=900, description="seconds each wait of the undo may take")


def in_recovery(container: Any) -> bool:
    return psql(container, "select pg_is_in_recovery()") == "t"


def _env(container: Any, name: str, default: str | None = None) -> str | None:
    for item in container.attrs["Config"].get("Env") or []:
        key, _, value = item.partition("=")
        if key == name:
            return value
    return default


def _synchronous(node: Any) -> bool:
    """The deployment's replication mode (the container's environment), not what the node's settings show now:
    a data directory copied from a degraded primary can carry its `synchronous_standby_names = ''` override."""
    return _env(node, "PG_REPLICATION_MODE", "async") == "sync"


def _lsn(text: str) -> int:
    high, _, low = text.strip().partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@faults.register("pg-failover")
class PgFailover(PrimaryFailover):
    summary = ("kill the PostgreSQL primary and promote the standby; undo: rebuild the old primary as a standby "
               "of the new one, then (failback) switch the roles back")
    Options = FailoverOptions

    @classmethod
    def allowed_targets(cls, topology=None) -> list[str]:
        return [name for name, spec in long_running_specs(topology).items() if image_role(spec) == "postgres"]

    node_kind = "PostgreSQL node"

    # -- helpers ------------------------------------------------------------------------------------------------
    def _nodes(self) -> tuple[Any, Any, str]:
        from lab.stack.containers import container

        other = self._other_service()
        return container(self.ctx.docker, self.instance.target), container(self.ctx.docker, other), other

    def _helper(self, image: str, volume: str, script: str, *, network: str | None = None,
                environment: dict[str, str] | None = None, timeout: float = 300) -> str:
        """Run a script as root in a throw-away container of the postgres image with a node's data volume."""
        client = self.ctx.docker
        helper = client.containers.run(
            image, ["bash", "-c", script], name=f"{project()}-fault-helper-{uuid.uuid4().hex[:8]}", detach=True,
            environment=environment or {}, volumes={volume: {"bind": PGDATA, "mode": "rw"}},
            network=network, network_mode=None if network else "none",
            labels={LABEL_PROJECT: project(), LABEL_FAULT_HELPER: self.instance.fault_id})
        try:
            status = helper.wait(timeout=timeout)
            output = helper.logs().decode(errors="replace")
            if status.get("StatusCode") != 0:
                raise RuntimeError(f"helper script failed ({status.get('StatusCode')}): {output[-1500:]}")
            return output
        finally:
            helper.remove(force=True)

    @staticmethod
    def _volume(node: Any) -> str:
        for mount in node.attrs.get("Mounts") or []:
            if mount.get("Destination") == PGDATA and mount.get("Type") == "volume":
                return mount["Name"]
        raise LookupError(f"{node.name} has no data volume at {PGDATA}")

    @staticmethod
    def _network(node: Any) -> str:
        networks = list(node.attrs["NetworkSettings"]["Networks"] or {})
        if not networks:
            raise LookupError(f"{node.name} is on no network")
        return networks[0]

    # -- inject ---------------------------------------------------------------------------------------------------
    def inject(self) -> None:
        with self._lock:
            nodes = self._start_inject(self._nodes)
            if nodes is None:
                return
            old, new, new_service = nodes
            st = self.state
            st.update(new_service=new_service, image=old.attrs["Config"]["Image"],
                      old_volume=self._volume(old), new_volume=self._volume(new), network=self._network(new),
                      slot=_env(new, "PG_REPLICA_NAME", "replica"))

            def check() -> dict[str, Any]:
                if in_recovery(old):
                    raise ValueError(f"{old.name} is not the read-write primary (it is in recovery)")
                if not in_recovery(new):
                    raise ValueError(f"{new.name} is not a standby (it is read-write already)")
                rows = psql(old, "select application_name, state, "
                                 "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) from pg_stat_replication")
                return {"replication": rows}

            self._step("inject", "check", old, check)

            self._step("inject", "kill", old, lambda: self._kill(old))

            def promote() -> dict[str, Any]:
                result = new.exec_run(["pg-promote"])
                text = (result.output or b"").decode(errors="replace").strip()
                if result.exit_code != 0:
                    raise RuntimeError(f"pg-promote exited {result.exit_code}: {text}")
                st["promoted"] = True
                return {"output": text}

            self._step("inject", "promote", new, promote)

            def fence() -> dict[str, Any]:
                self._journal_save(fenced=True)  # an unfence of a volume never fenced is harmless
                out = self._helper(st["image"], st["old_volume"], FENCE_SCRIPT, timeout=60)
                st["fenced"] = "fenced" in out
                return {"output": out.strip()}

            self._step("inject", "fence", old, fence)

    # -- undo -----------------------------------------------------------------------------------------------------
    def _bring_back(self, old: Any, new: Any, timeout: float, reason: str) -> None:
        promoted = self.state.get("promoted") or not self._still_standby(new)
        if not promoted:
            self._step("undo", "restart-old-primary", old, lambda: self._restart_old(reason), reason=reason)
            return
        self._step("undo", "rebuild-standby", old, lambda: self._rebuild(old, new, timeout), reason=reason)
        if self.options.failback:
            self._step("undo", "switchover", old, lambda: self._switchover(old, new, timeout), reason=reason)
            self._step("undo", "rebuild-replica", new, lambda: self._rebuild_replica(old, new, timeout),
                       reason=reason)

    @staticmethod
    def _still_standby(new: Any) -> bool:
        try:
            return in_recovery(new)
        except Exception:  # noqa: BLE001 - cannot tell: assume the worst (promoted), never start a second primary
            return False

    def _restart_old(self, reason: str) -> dict[str, Any]:
        st = self.state
        old = st["old"]
        if st.get("fenced"):
            self._helper(st["image"], st["old_volume"], UNFENCE_SCRIPT, timeout=60)
        old.reload()
        if old.status != "running":
            old.start()
        old.update(restart_policy=st["policy"])
        wait_for(lambda: not in_recovery(old), self.options.timeout, f"{old.name} to accept writes again")
        return {"reason": reason}

    def _rebuild(self, old: Any, new: Any, timeout: float) -> dict[str, Any]:
        """The old primary becomes a streaming standby of the new one."""
        st = self.state
        began = time.monotonic()
        old.reload()
        if old.status == "running":  # someone started it: stop it before its data is replaced
            old.stop(timeout=30)
        password = _env(old, "REPLICATION_PASSWORD")
        if not password:
            raise LookupError(f"{old.name} has no REPLICATION_PASSWORD in its environment")
        source = st["new_service"]
        out = self._helper(st["image"], st["old_volume"], REBUILD_SCRIPT, network=st["network"], timeout=timeout,
                           environment={"REPLICATION_PASSWORD": password, "SOURCE": source, "SLOT": st["slot"]})
        ids = re.search(r"LAB-IDS (\d+) (\d+)", out)
        if not ids:
            raise RuntimeError(f"the rebuild helper did not report the postgres user's ids: {out[-500:]}")
        self._put_passfile(old, password, int(ids.group(1)), int(ids.group(2)))
        basebackup = time.monotonic() - began
        old.update(restart_policy=st["policy"])
        old.start()
        wait_for(lambda: in_recovery(old), timeout, f"{old.name} to run as a standby")
        slot = st["slot"]
        wait_for(lambda: psql(new, f"select state from pg_stat_replication where application_name = '{slot}'")
                 == "streaming", timeout, f"{old.name} to stream from {new.name}")
        return {"standby_of": source, "basebackup_seconds": round(basebackup, 2),
                "seconds": round(time.monotonic() - began, 2)}

    @staticmethod
    def _put_passfile(node: Any, password: str, uid: int, gid: int) -> None:
        """The replicator's passfile in the container's own layer (outside the data volume, like pg-entrypoint)."""
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        data = f"*:*:*:replicator:{escaped}\n".encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(".pgpass")
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o600, uid, gid, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not node.put_archive(PG_HOME, buffer.getvalue()):
            raise RuntimeError(f"could not write the passfile into {node.name}")

    def _switchover(self, old: Any, new: Any, timeout: float) -> dict[str, Any]:
        """Controlled switch back: the rebuilt standby (old) becomes the primary again; `new` is stopped."""
        st = self.state
        began = time.monotonic()
        target = psql(new, "select pg_current_wal_lsn()")
        wait_for(lambda: psql(old, f"select pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t", timeout,
                 f"{old.name} to replay up to {target}")
        stop_began = time.monotonic()
        new.stop(timeout=30)  # SIGINT (the image's STOPSIGNAL): fast, clean; the walsender waits for the standby
        try:  # any doubt (or error) here: the stopped node is restarted as the primary it still is
            control = self._helper(st["image"], st["new_volume"], CONTROLDATA_SCRIPT, timeout=60)
            checkpoint = re.search(r"Latest checkpoint location:\s*([0-9A-F]+/[0-9A-F]+)", control)
            state_line = re.search(r"Database cluster state:\s*(.+)", control)
            received = psql(old, "select coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")
            safe = bool(checkpoint and state_line and "shut down" in state_line.group(1)
                        and _lsn(received) > _lsn(checkpoint.group(1)))
            why = (f"standby received {received}, shutdown checkpoint {checkpoint.group(1) if checkpoint else '?'}, "
                   f"state {state_line.group(1) if state_line else '?'}")
        except Exception as error:  # noqa: BLE001 - decided below
            safe, why, checkpoint, received = False, f"{type(error).__name__}: {error}", None, ""
        if not safe:
            new.start()  # still a valid primary (clean shutdown): keep it; the rebuilt standby follows it
            raise RuntimeError(f"failback aborted, {new.name} restarted as the primary: {why}")
        result = old.exec_run(["pg-promote"])
        if result.exit_code != 0:
            raise RuntimeError(f"pg-promote on {old.name} exited {result.exit_code}: {result.output.decode()}")
        write_outage = time.monotonic() - stop_began
        for setting in ("primary_conninfo", "primary_slot_name"):
            psql(old, f"alter system reset {setting}")
        # Synchronous mode with its only standby gone would block every commit until the replica is rebuilt:
        # degrade to asynchronous until it streams again (what Patroni's non-strict synchronous mode does).
        if _synchronous(old):
            psql(old, "alter system set synchronous_standby_names = ''")
        psql(old, "select pg_reload_conf()")
        return {"replayed_up_to": target, "shutdown_checkpoint": checkpoint.group(1) if checkpoint else None,
                "received": received,
                "write_outage_seconds": round(write_outage, 2), "seconds": round(time.monotonic() - began, 2)}

    def _rebuild_replica(self, old: Any, new: Any, timeout: float) -> dict[str, Any]:
        """The other node gets an empty volume; its entrypoint makes it a standby of the primary again."""
        st = self.state
        began = time.monotonic()
        self._helper(st["image"], st["new_volume"], WIPE_SCRIPT, timeout=120)
        new.start()
        slot = st["slot"]
        wait_for(lambda: psql(old, f"select state from pg_stat_replication where application_name = '{slot}'")
                 == "streaming", timeout, f"{new.name} to stream from {old.name}", pause=1.0)
        wait_for(lambda: in_recovery(new), 30, f"{new.name} to be a standby")
        restored = {}
        if _synchronous(old):  # synchronous again, now that its standby streams
            psql(old, "alter system reset synchronous_standby_names")
            psql(old, "select pg_reload_conf()")
            wait_for(lambda: psql(old, "select sync_state from pg_stat_replication where application_name = "
                                       f"'{slot}'") == "sync", 30, f"{new.name} to be a synchronous standby")
            restored = {"synchronous_standby_names": psql(old, "show synchronous_standby_names")}
        return {"seconds": round(time.monotonic() - began, 2), **restored}

    def health_services(self) -> list[str]:
        return self.allowed_targets(self.ctx.topology)


__all__ = ["FailoverOptions", "PgFailover", "in_recovery", "psql", "wait_for"]
