-- One sample of a PostgreSQL node, repeated by psql's \watch (postgres.sh). Works on a primary and on a standby
-- (primary-only functions are guarded by pg_is_in_recovery()). The first and last rows ('#S' with the sample's
-- time, '#E') frame one sample. Rows are metric|labels|value. Whole-line comments only (they are dropped before
-- the query is folded onto one line).
SELECT k, l, v FROM (
  SELECT 0 AS o, '#S' AS k, '' AS l, extract(epoch FROM clock_timestamp())::float8 AS v
  UNION ALL SELECT 1, 'in_recovery', '', pg_is_in_recovery()::int::float8
  UNION ALL SELECT 1, 'xact_commit', '', xact_commit::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 1, 'xact_rollback', '', xact_rollback::float8 FROM pg_stat_database
    WHERE datname = current_database()
  UNION ALL SELECT 1, 'deadlocks', '', deadlocks::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 1, 'conflicts', '', conflicts::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 1, 'temp_bytes', '', temp_bytes::float8 FROM pg_stat_database WHERE datname = current_database()
  UNION ALL SELECT 2, 'connections', 'state=' || s.state, count(a.pid)::float8
    FROM unnest(ARRAY['active', 'idle', 'idle in transaction', 'idle in transaction (aborted)']) AS s(state)
    LEFT JOIN pg_stat_activity a ON a.state = s.state AND a.backend_type = 'client backend' GROUP BY s.state
  UNION ALL SELECT 2, 'connections_total', '', count(*)::float8 FROM pg_stat_activity
    WHERE backend_type = 'client backend'
  UNION ALL SELECT 2, 'lock_waits', '', count(*)::float8 FROM pg_locks WHERE NOT granted
  UNION ALL SELECT 2, 'lock_waits_advisory', '', count(*)::float8 FROM pg_locks
    WHERE NOT granted AND locktype = 'advisory'
  UNION ALL SELECT 2, 'oldest_xact_seconds', '',
    coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8 FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
  UNION ALL SELECT 3, 'replicas_streaming', '', count(*) FILTER (WHERE state = 'streaming')::float8
    FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_streaming',
    'application_name=' || application_name || ',state=' || state || ',sync_state=' || sync_state,
    (state = 'streaming')::int::float8 FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_lag_bytes', 'application_name=' || application_name,
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END::float8
    FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_replay_lag_seconds', 'application_name=' || application_name,
    CASE WHEN state = 'streaming' THEN coalesce(extract(epoch FROM replay_lag), 0) END::float8
    FROM pg_stat_replication
  UNION ALL SELECT 3, 'replication_flush_lag_seconds', 'application_name=' || application_name,
    CASE WHEN state = 'streaming' THEN coalesce(extract(epoch FROM flush_lag), 0) END::float8
    FROM pg_stat_replication
  UNION ALL SELECT 4, 'replay_delay_seconds', '', CASE WHEN pg_is_in_recovery() THEN
    extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) END::float8
  UNION ALL SELECT 4, 'replay_backlog_bytes', '', CASE WHEN pg_is_in_recovery() THEN
    pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END::float8
  UNION ALL SELECT 4, 'wal_receiver_streaming', '', (status = 'streaming')::int::float8 FROM pg_stat_wal_receiver
  UNION ALL SELECT 9, '#E', '', NULL
) q ORDER BY o
