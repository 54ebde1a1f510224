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
