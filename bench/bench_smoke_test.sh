#!/bin/bash
# bench_smoke_test: the benchmark programs still run end to end on tiny sizes and print the
# lines scripts/bench parses (no speed is asserted: speed belongs to scripts/bench).
#   bench/bench_smoke_test.sh DUPLEX_BENCH PINGPONG_BENCH
set -u
duplex=$1
pingpong=$2
fail=0
check() {  # $1: what; $2: output; $3: a regex every expected line matches; $4: how many lines
  local n
  n=$(grep -cE "$3" <<<"$2")
  if [ "$n" -ne "$4" ]; then
    echo "FAIL $1: expected $4 lines matching /$3/, got:"; echo "$2"; fail=1
  else
    echo "ok   $1"
  fi
}
out=$(timeout 60 "$duplex" 8388608 65536 30 2>&1); rc=$?
[ $rc -eq 0 ] || { echo "FAIL duplex_bench exit $rc"; fail=1; }
check duplex "$out" '^duplex (client->server|server->client): 8388608 bytes .* [0-9.]+ Gbit/s$' 2
for mode in tcp datalink; do
  out=$(timeout 60 "$pingpong" "$mode" 64 0.2 2>&1); rc=$?
  [ $rc -eq 0 ] || { echo "FAIL pingpong_bench $mode exit $rc"; fail=1; }
  check "pingpong $mode" "$out" "^$mode ping-pong 64 B: [0-9]+ round trips in .* [0-9]+ round trips/s" 1
done
# Usage errors are exit 2, not a crash or a hang.
timeout 10 "$duplex" >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL duplex_bench without arguments"; fail=1; }
timeout 10 "$pingpong" udp >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL pingpong_bench udp"; fail=1; }
timeout 10 "$duplex" 0 >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL duplex_bench 0"; fail=1; }
timeout 10 "$pingpong" tcp 64x >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL pingpong_bench tcp 64x"; fail=1; }
exit $fail
