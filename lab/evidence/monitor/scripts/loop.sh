# Shared by the exec'd bash loops (appended to nginx.sh, redis.sh, sentinel.sh): "$1" = interval (s), "$2" =
# maximum duration (s). Calls `sample <epoch>` once per tick (it prints `#S <epoch>`, the sample's lines, `#E`),
# prints `#CPU <clock ticks>` (this shell, its waited-for children and the pids in $cpu_pids) now and then, and
# waits for the next tick with `read -t` on stdin: no `sleep` fork, and stdin EOF (the monitor's stop) ends the loop.
set -u
cpu_pids=${cpu_pids:-}
cpu() {
    local st total=0 p
    read -r -a st < /proc/$$/stat && total=$(( st[13] + st[14] + st[15] + st[16] ))
    for p in $cpu_pids; do read -r -a st < "/proc/$p/stat" 2>/dev/null && total=$(( total + st[13] + st[14] )); done
    echo "#CPU $total"
}
whole=${1%.*}; frac=000000; case "$1" in *.*) frac=${1#*.}000000;; esac
interval_us=$(( 10#${whole:-0} * 1000000 + 10#${frac:0:6} ))
[ "$interval_us" -ge 100000 ] || interval_us=100000
end=$(( SECONDS + ${2%.*} ))
t=${EPOCHREALTIME/[.,]/}; next=$(( 10#$t ))
n=0
while [ "$SECONDS" -lt "$end" ]; do
    sample "$EPOCHREALTIME"
    n=$(( n + 1 ))
    [ $(( n % 10 )) -eq 1 ] && cpu
    next=$(( next + interval_us ))
    t=${EPOCHREALTIME/[.,]/}; wait_us=$(( next - 10#$t ))
    if [ "$wait_us" -le 0 ]; then next=$(( 10#$t )); wait_us=1000; fi
    printf -v w '%d.%06d' $(( wait_us / 1000000 )) $(( wait_us % 1000000 ))
    read -r -t "$w" _; rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then break; fi   # EOF on stdin: the monitor stopped
done
cpu
