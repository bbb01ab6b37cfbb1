#!/usr/bin/env bash
# Runs one fuzz target for a bounded time and fails on any crash, hang,
# panic or memory-bound breach.
#
#   fuzz/run.sh TARGET SECONDS [more libFuzzer flags]
#
# FUZZ_SANITIZER=none runs without AddressSanitizer (about three times
# faster; used for the long runs recorded in RELIABILITY.md). The default is
# address, as in cargo fuzz.
#
# Targets: format, attach, model, format2, scan2, attach2. Works on the stable toolchain through
# RUSTC_BOOTSTRAP=1 (cargo fuzz passes -Z flags to rustc); see
# crates/shared-block-ring/RELIABILITY.md. New inputs go to
# fuzz/corpus/TARGET (not committed); fuzz/seeds/TARGET is the committed
# seed corpus. A crashing input is saved under fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: fuzz/run.sh TARGET SECONDS [libFuzzer flags]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# AddressSanitizer keeps freed memory in a quarantine (256 MiB by default)
# to catch use-after-free, and the resident set grows to several times the
# quarantine: 670-1036 MiB peak under the default against 35-49 MiB without
# it, for the same targets (measured in December 2026; the live heap at the
# out-of-memory report was 25 MiB). That came within reach of -rss_limit_mb
# and made a passing run fail at random. A 64 MiB quarantine still delays
# reuse across hundreds of inputs and keeps the peak near 500 MiB, so the
# RSS limit below catches real growth again. Options the caller sets win.
export ASAN_OPTIONS="quarantine_size_mb=64${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
# -timeout: one input taking more than 10 s is a hang.
# -rss_limit_mb / -malloc_limit_mb: gross memory abuse (an allocation sized
#   by a hostile length). The tight per-ring bound is enforced inside the
#   targets (fuzz/src/lib.rs).
exec cargo fuzz run --fuzz-dir fuzz --sanitizer "${FUZZ_SANITIZER:-address}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=1024 \
  -malloc_limit_mb=64 \
  -print_final_stats=1 \
  "$@"
