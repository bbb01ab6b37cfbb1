#!/usr/bin/env bash
# Runs every test that involves threads, processes, sockets or timing many
# times, and reports the failures (and hangs: nextest kills a test past its
# deadline, see .config/nextest.toml) per test.
#
#   scripts/stress.sh [--count N] [--busy] [--quick]
#
#   --count N  runs of each test (default 30)
#   --busy     keep both cores busy with two spinning processes meanwhile
#   --quick    leave out the long system tests (over about 5 s each); the
#              README's test command runs this with --count 2 --busy
#
# Exits 1 if any run of any test failed. The tests left out entirely are
# single-threaded and deterministic: the corruption and bad-input tables
# (both formats), the fault-injection tests, the proptest model, the
# crash-state checker's enumerations (tests/crash.rs `*survives_every*`;
# its tests with a second thread stay in); and the shuttle model, which
# explores schedules itself.
set -euo pipefail
cd "$(dirname "$0")/.."

count=30
busy=0
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --busy) busy=1; shift ;;
    --quick) quick=1; shift ;;
    *) echo "usage: scripts/stress.sh [--count N] [--busy] [--quick]" >&2; exit 2 ;;
  esac
done

filter='not (binary(corrupt) | binary(corrupt2) | binary(bad_input) | binary(faults) | binary(model) | (binary(crash) & test(/survives_every/)))'
if [ "$quick" = 1 ]; then
  filter="$filter & not (test(/100k_items/) | test(/killed_and_restarted/) | binary(two_processes) | binary(torture))"
fi

spinners=()
stop_spinners() {
  for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_spinners EXIT
if [ "$busy" = 1 ]; then
  for _ in 1 2; do
    (while :; do :; done) &
    spinners+=($!)
  done
fi

mkdir -p target
log=target/stress.log
started=$(date +%s)
set +e
cargo nextest run --workspace --features shared-block-ring/tokio --no-fail-fast --stress-count "$count" -E "$filter" >"$log" 2>&1
status=$?
set -e
elapsed=$(( $(date +%s) - started ))

# Outcome lines look like "        PASS [   0.1s] [2/30] (3/9) crate::binary test";
# nextest prints a failed one again at the end, so each (test, iteration)
# counts once. nextest's own exit status does not say whether a stress
# iteration failed, so the counts decide.
summary=$(mktemp)
set +e
awk -v count="$count" '
  /\] \[ *[0-9]+\/[0-9]+\] \( *[0-9]+\/ *[0-9]+\) / {
    status = $1
    name = $NF
    bin = $(NF-1)
    key = bin " " name
    match($0, /\] \[ *[0-9]+\/[0-9]+\]/)
    run = key substr($0, RSTART, RLENGTH)
    if (run in seen) next
    seen[run] = 1
    runs[key]++
    if (status != "PASS") { failed[key]++; total_failed++ }
    total++
  }
  END {
    n = 0
    for (k in runs) n++
    printf "stress: %d tests, %d runs, %d failed\n", n, total, total_failed
    for (k in runs) if (failed[k] > 0) printf "  FAILED %d of %d: %s\n", failed[k], runs[k], k
    for (k in runs) if (runs[k] < count) printf "  only %d of %d runs: %s\n", runs[k], count, k
    exit (total_failed > 0 || total == 0) ? 1 : 0
  }' "$log" >"$summary"
counted=$?
set -e
sort "$summary"
rm -f "$summary"
echo "stress: $count runs each, busy cores: $([ "$busy" = 1 ] && echo yes || echo no), ${elapsed}s (log: $log)"
if [ "$status" -ne 0 ] || [ "$counted" -ne 0 ]; then
  grep -E "^\s+(FAIL|TIMEOUT|SIG[A-Z]+|ABORT|LEAK)" "$log" | head -n 20 >&2 || true
  echo "stress: failures (see $log)" >&2
  exit 1
fi
