# ONE redis-cli for the whole run, fed through a pipe: each tick sends INFO (a few sections) and the celery queue
# lengths (broker db 1; the queues marker becomes one LLEN per queue and priority); the frame lines come back through redis'
# ECHO, so they stay in order with the replies. The password is the container's own REDIS_PASSWORD, handed over as
# REDISCLI_AUTH (environment, never argv: no command line shows it). If redis-cli ends (redis restarted), the next
# write kills the loop: the monitor restarts it.
export REDISCLI_AUTH="${REDIS_PASSWORD:-}"
exec 5> >(exec redis-cli -h 127.0.0.1 -p 6379 -n 1 2>&1)
cpu_pids=$!
unset REDISCLI_AUTH
sample() {
    printf 'ECHO "#S %s"\nINFO clients memory stats cpu keyspace replication\nECHO #Q\n@QUEUES@ECHO #E\n' "$1" >&5
}
