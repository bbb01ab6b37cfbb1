#!/usr/bin/env bash
# Every test of the project: what the README's test command runs and what
# .ci/run calls after installing the tools.
#   1. cargo test --workspace: the library and sbr tests, and the system tests
#      (root for loop devices; qemu-nbd and nbdkit, which the tests start).
#   2. Each fuzz target for FUZZ_SECONDS (default 60), failing on any crash,
#      panic, hang or memory-bound breach (crates/shared-block-ring/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace

seconds="${FUZZ_SECONDS:-60}"
mkdir -p target/fuzz-logs
for target in format attach model; do
  log="target/fuzz-logs/$target.log"
  if ! fuzz/run.sh "$target" "$seconds" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
done
