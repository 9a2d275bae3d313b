#!/usr/bin/env bash
# Installs the Debian 12 packages nitrodiag needs to build and test, and only those that are missing.
# Called by `make deps` (and so by `make demo` and `make test`). Safe to run again: it does nothing when all are there.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  liblua5.4-dev lua-luv-dev lua-cjson-dev libuv1-dev
  libarchive-dev libssl-dev libedit-dev libjansson-dev libcurl4-openssl-dev zlib1g-dev
  python3 python3-botocore
  openssl util-linux   # tests/bundle/faults.sh: openssl dgst/pkeyutl check signatures, unshare makes a tiny tmpfs
  libcbor-dev
  qemu-system-x86 cpio kmod xz-utils
)
# The enclave real-kernel test needs a Debian cloud kernel; it is fetched (not installed) by tests/vm/fetch-kernel.sh.

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages and not root: run 'sudo apt-get install ${missing[*]}'" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
