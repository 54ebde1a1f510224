"""Django settings of the pretix-lab image: pretix's own settings plus lab-specific overrides (mail, redis timeouts).

pretix hard-codes Django's SMTP backend and has no config key to choose another. The lab must never send
real mail, and a refused SMTP connection is not free either (pretix retries each mail five times), so mail
goes to Django's dummy backend unless PRETIX_LAB_EMAIL_BACKEND names another backend (dotted path;
"django.core.mail.backends.smtp.EmailBackend" restores pretix's default and the [mail] host/port apply).
"""

import os

from pretix.settings import *  # noqa: F401,F403

EMAIL_BACKEND = os.environ.get("PRETIX_LAB_EMAIL_BACKEND") or "django.core.mail.backends.dummy.EmailBackend"

# redis through sentinels: pretix sets no socket timeout on the data connections, so when the redis MASTER'S HOST
# dies (a killed container: no RST, its address just stops answering) every request blocks on a half-open socket
# for good, although the sentinels promoted the replica seconds later (measured: pretix hung > 60 s). With a
# timeout the connection fails, redis-py asks the sentinels again and finds the new master. PRETIX_LAB_REDIS_TIMEOUT
# (seconds, default 2; 0 = none, pretix's own behaviour). The celery broker's timeouts come with its transport
# options (PRETIX_CELERY_BROKER_TRANSPORT_OPTIONS); the result backend reads the settings below.
_redis_timeout = float(os.environ.get("PRETIX_LAB_REDIS_TIMEOUT", "2") or 0)
if _redis_timeout > 0:
    for _cache in CACHES.values():  # noqa: F405 - from pretix.settings
        if _cache.get("BACKEND") == "django_redis.cache.RedisCache":
            _cache["OPTIONS"] = {**_cache.get("OPTIONS", {}), "SOCKET_TIMEOUT": _redis_timeout,
                                 "SOCKET_CONNECT_TIMEOUT": min(_redis_timeout, 1.0)}
    CELERY_REDIS_SOCKET_TIMEOUT = _redis_timeout
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = min(_redis_timeout, 1.0)

# redis through sentinels, when the master moves (a failover, or the lab's failback): a pooled connection still
# open to the old master, now a replica, fails its next write, and pretix does not retry. Found in the worker's log
# after the lab's failback: the first task each celery process ran on such a connection failed, in pretix's quota
# cache or, after its body had run, in its own task-duration metric (pretix.base.metrics; the lab enables the
# metrics), so the shop's cart add answered "unexpected error" (`task_failed:cart_poll`), and the web processes'
# session and cache writes answered 500. Retrying alone does not help: redis-py (7.4) reconnects a dropped
# sentinel-managed connection inside a command's retries to the address it had, the demoted node, instead of
# asking the sentinels (redis/redis-py#3874, open). _SentinelReconnect asks them at every (re)connect; with retries
# on ConnectionError the failed command is sent again to the current master. The retries back off for about 3 s in
# all: a sentinel other than the one that made the switch names the old master for a second or two more. Only
# ConnectionError is retried (redis-py turns a READONLY reply into one, and a refused write or connect was not
# applied); a socket timeout may have been applied, so it is not retried.
# PRETIX_LAB_REDIS_RETRIES (default 5; 0 = none, pretix's own behaviour).
_redis_retries = int(os.environ.get("PRETIX_LAB_REDIS_RETRIES", "5") or 0)
if _redis_retries > 0:
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry
    from redis.sentinel import SentinelManagedConnection

    class _SentinelReconnect(SentinelManagedConnection):
        """A sentinel-managed connection that asks the sentinels for the master whenever it (re)connects."""

        def connect_check_health(self, check_health=True, retry_socket_connect=True):
            if not self._sock and self.connection_pool.is_master:
                self.host, self.port = self.connection_pool.get_master_address()
            return super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)

    for _cache in CACHES.values():  # noqa: F405 - from pretix.settings
        if _cache.get("BACKEND") == "django_redis.cache.RedisCache" and _cache.get("OPTIONS", {}).get("SENTINELS"):
            _options = dict(_cache["OPTIONS"])
            _options["CONNECTION_POOL_KWARGS"] = {
                **_options.get("CONNECTION_POOL_KWARGS", {}),
                "connection_class": _SentinelReconnect,
                "retry": Retry(ExponentialBackoff(cap=1.0, base=0.1), _redis_retries),
                "retry_on_error": [RedisConnectionError],
            }
            _cache["OPTIONS"] = _options

# redis reads through sentinels: pretix's sentinel set-up (django-redis' SentinelClient, given one LOCATION) makes two
# pools, writes to the master and every cache and session READ from a replica. Replication is asynchronous, so a
# request right after a write can read the session as it was before it: found by the lab's shop journey, a buyer whose
# customer step had just been saved was sent back to it by the next page.
# PRETIX_LAB_REDIS_READS=primary (default) gives the client the master's URL only (a list: not split into two pools),
# so every read sees the writes before it; "replica" keeps pretix's own behaviour.
if os.environ.get("PRETIX_LAB_REDIS_READS", "primary") == "primary":
    for _cache in CACHES.values():  # noqa: F405 - from pretix.settings
        if _cache.get("BACKEND") == "django_redis.cache.RedisCache" and _cache.get("OPTIONS", {}).get("SENTINELS") \
                and isinstance(_cache.get("LOCATION"), str):
            _cache["LOCATION"] = [_cache["LOCATION"]]

# The lab's tuning knobs for Django's database connections (lab/stack/tuning.py; unset = pretix's own values).
# PRETIX_LAB_DB_CONN_HEALTH_CHECKS off skips Django's per-request ping of a persistent connection (pretix: on);
# a connection a failover broke then fails one request per process instead of being replaced before it.
# PRETIX_LAB_DB_CONN_MAX_AGE: seconds a connection is kept (pretix: 120; 0 = one per request).
for _db in DATABASES.values():  # noqa: F405 - from pretix.settings
    if os.environ.get("PRETIX_LAB_DB_CONN_HEALTH_CHECKS") in ("on", "off"):
        _db["CONN_HEALTH_CHECKS"] = os.environ["PRETIX_LAB_DB_CONN_HEALTH_CHECKS"] == "on"
    if os.environ.get("PRETIX_LAB_DB_CONN_MAX_AGE") and _db.get("CONN_MAX_AGE"):
        _db["CONN_MAX_AGE"] = int(os.environ["PRETIX_LAB_DB_CONN_MAX_AGE"])
