#!/usr/bin/env bash
# Every test of the project: the README's test command, and what .ci/run
# calls on a fresh machine. Run it as root; it installs what it needs.
#   1. scripts/setup-tests.sh: installs the tools the tests use (or, as
#      another user, says exactly what is missing and fails).
#   2. Every unit, integration and system test through cargo-nextest, each
#      with a deadline (.config/nextest.toml): a hang is a failure naming
#      the test, never a stuck run; twice, on io_uring (where the kernel has
#      it) and on the synchronous path. Then the documentation examples.
#   3. The concurrency model checker (shuttle): the journal's threads and a
#      producer and consumer waking each other (tests/concurrency_model.rs),
#      and sbr produce's reader/feeder hand-over; prints the number of
#      schedules it explored.
#   4. A short stress run: the tests that involve threads, processes,
#      sockets or timing, several times, with both cores kept busy
#      (scripts/stress.sh; STRESS_COUNT runs each, default 2).
#   5. Each fuzz target for FUZZ_SECONDS (default 60), failing on any crash,
#      panic, hang or memory-bound breach (crates/shared-block-ring/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-tests.sh

cargo nextest run --workspace --features shared-block-ring/tokio --profile ci
SHARED_BLOCK_RING_IO=sync cargo nextest run --workspace --features shared-block-ring/tokio --profile ci
cargo test --workspace --features shared-block-ring/tokio --doc

mkdir -p target
log=target/concurrency-model.log
if ! { cargo nextest run -p shared-block-ring --features shuttle --profile ci \
         --test concurrency_model --no-capture &&
       cargo nextest run -p sbr --features shuttle --profile ci \
         -E 'test(/produce::model/)' --no-capture; } >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "the concurrency model checker failed (log: $log)" >&2
  exit 1
fi
grep -E "(concurrency|produce) model" "$log"

scripts/stress.sh --count "${STRESS_COUNT:-2}" --busy --quick

seconds="${FUZZ_SECONDS:-60}"
mkdir -p target/fuzz-logs
for target in format attach model format2 scan2 attach2; do
  log="target/fuzz-logs/$target.log"
  if ! fuzz/run.sh "$target" "$seconds" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
done
echo "all tests passed"
