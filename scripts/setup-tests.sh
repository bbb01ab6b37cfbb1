#!/usr/bin/env bash
# Installs what the tests need, or says exactly what is missing.
#
# As root (the tests need root anyway: they attach loop devices), missing
# Debian packages are installed with apt-get and missing cargo tools with
# cargo install. As another user nothing is installed: the script lists
# what to install and fails.
#
#   tool        package / crate    used by
#   losetup     mount              loop-device system tests
#   qemu-nbd    qemu-utils         NBD system tests (a real NBD server)
#   nbdkit      nbdkit             NBD system tests (error filter, plugins)
#   g++         g++                cargo-fuzz (libFuzzer is C++)
#   man         man-db             sbr's man page test (man -l renders it; pulls in groff)
#   nextest     cargo-nextest      every test, with a per-test deadline
#   cargo fuzz  cargo-fuzz         the fuzz targets (fuzz/run.sh)
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "error: cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

packages=()
command -v losetup >/dev/null || packages+=(mount)
command -v qemu-nbd >/dev/null || packages+=(qemu-utils)
command -v nbdkit >/dev/null || packages+=(nbdkit)
command -v g++ >/dev/null || packages+=(g++)
command -v man >/dev/null || packages+=(man-db)
command -v sha256sum >/dev/null || packages+=(coreutils)
crates=()
cargo nextest --version >/dev/null 2>&1 || crates+=(cargo-nextest)
cargo fuzz --version >/dev/null 2>&1 || crates+=(cargo-fuzz)

if [ "$(id -u)" -ne 0 ]; then
  if [ ${#packages[@]} -gt 0 ]; then
    echo "error: missing Debian packages: ${packages[*]} (as root: apt-get install -y ${packages[*]})" >&2
  fi
  if [ ${#crates[@]} -gt 0 ]; then
    echo "error: missing cargo tools: ${crates[*]} (cargo install --locked ${crates[*]})" >&2
  fi
  echo "error: the tests must run as root: the system tests attach loop devices" >&2
  exit 1
fi

if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: installing ${packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
for crate in "${crates[@]}"; do
  echo "setup: cargo install --locked $crate"
  cargo install --locked --quiet "$crate"
done
# Loop devices need the loop module's device nodes (built in on some
# kernels, where this does nothing).
modprobe loop 2>/dev/null || true
if ! losetup -f >/dev/null 2>&1; then
  echo "error: no free loop device (losetup -f failed): the system tests need one" >&2
  exit 1
fi
