# A sentinel knows no ECHO (and no password): one redis-cli per tick asks who the master is and what it sees (one
# fork per tick and sentinel, no `timeout` wrapper, to keep the monitor cheap).
sample() {
    echo "#S $1"
    echo "declared ${REDIS_PRIMARY_ADDR:-?}"
    printf 'SENTINEL get-master-addr-by-name %s\nSENTINEL master %s\n' "${REDIS_MASTER_NAME:-lab-redis}" \
        "${REDIS_MASTER_NAME:-lab-redis}" | redis-cli -h 127.0.0.1 -p 26379 --raw 2>&1
    echo "#E"
}
