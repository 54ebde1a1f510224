# psql repeats the query ($LAB_QUERY, postgres.sql) itself (\watch); the bash around it only waits for stdin EOF
# (or psql's end, or the maximum duration), reports psql's CPU and its own, and ends psql.
set -u
end=$(( SECONDS + ${2%.*} ))
psql -X -q -At -F'|' -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d "${LAB_PG_DB:-pretix}" \
    <<< "$LAB_QUERY"$'\n'"\\watch $1" &
pid=$!
cpu() {
    local st me
    read -r -a st < "/proc/$pid/stat" 2>/dev/null || st=(0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)
    read -r -a me < /proc/$$/stat && echo "#CPU $(( st[13] + st[14] + me[13] + me[14] + me[15] + me[16] ))"
}
n=0
while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
    read -r -t 1 _; rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then break; fi   # EOF on stdin: the monitor stopped
    n=$(( n + 1 ))
    [ $(( n % 10 )) -eq 1 ] && cpu
done
cpu
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0
