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
  libcbor-dev python3-cbor2 python3-cryptography
  qemu-system-x86 cpio kmod xz-utils
  procps               # tests/realboot/run.sh: pgrep finds what a real boot might leave (tools/build-qemu.sh installs QEMU's own build deps)
  help2man man-db rpm clang
  libclang-rt-14-dev
)
# `make package-test` and `make cross-test` (not `make test`) need more: a Debian root maker, and the aarch64 cross
# toolchain, Debian's arm64 library packages (multiarch) and qemu-user to run what it builds.
case "${1:-}" in
  --package) PKGS+=(mmdebstrap bash-completion) ;;
  --bench) PKGS+=(hyperfine jq lua5.4) ;; # `make bench`: the start-up timer and the peers measured beside nitrodiag
  --cross)
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      if [ "$(id -u)" -ne 0 ]; then echo "install-deps: run as root to add the arm64 architecture" >&2; exit 1; fi
      dpkg --add-architecture arm64
      apt-get update -qq
    fi
    PKGS+=(crossbuild-essential-arm64 qemu-user-static
      liblua5.4-dev:arm64 lua-luv-dev:arm64 lua-cjson-dev:arm64 libuv1-dev:arm64 libarchive-dev:arm64 libssl-dev:arm64
      libedit-dev:arm64 libjansson-dev:arm64 libcurl4-openssl-dev:arm64 zlib1g-dev:arm64 libcbor-dev:arm64) ;;
esac
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
