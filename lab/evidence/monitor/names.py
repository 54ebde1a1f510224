"""Which services the samplers look at and what pretix calls its queues: named by role here, checked against
stack/compose.yaml (the one topology) and pretix's settings, so no sampler spells them itself."""

from __future__ import annotations

WEB_PREFIX = "pretix-web-"
POSTGRES_PREFIX = "postgres-"
REDIS_PREFIX = "redis"  # the data nodes: redis (the declared master) and redis-replica
SENTINEL_PREFIX = "redis-sentinel-"
PROXY_SERVICE = "proxy"
MONITOR_SERVICE = "monitor"  # the rows of the monitor's own cost
PRETIX_HOST = "127.0.0.1:8443"  # fallback; the real value is the host of PRETIX_PRETIX_URL in the container
CELERY_QUEUES = ("default", "checkout", "mail", "background", "notifications")  # pretix/settings.py
CELERY_PRIORITY_SUFFIXES = ("", ":4", ":8")  # kombu redis priority_steps [0, 4, 8] with sep ":" (pretix)
