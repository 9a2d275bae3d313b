#!/usr/bin/env bash
# Fetches the kernel that nitrodiag puts in the EIFs it boots for real under QEMU's nitro-enclave machine
# (sim/backend_qemu.lua, `nitrodiag boot`, tests/realboot): Debian's cloud kernel from bookworm-backports (6.12: it
# has the NSM driver, nsm.ko, that bookworm's 6.1 lacks), downloaded — not installed — through a private apt
# configuration (the system's sources are left alone). Keeps only:
#   CACHE/vmlinuz, CACHE/modules/{virtio_mmio,vsock,vmw_vsock_virtio_transport_common,vmw_vsock_virtio_transport,
#   nsm}.ko (uncompressed), CACHE/VERSION
# Idempotent, flock-protected; prints CACHE. Exit 77 with one line on stderr when it cannot (no apt access).
# Usage: tools/fetch-enclave-kernel.sh [--check]   CACHE: $NITRODIAG_KERNEL_CACHE or ~/.cache/nitrodiag/enclave-kernel
set -euo pipefail

CACHE="${NITRODIAG_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nitrodiag/enclave-kernel}"
MIRROR="${NITRODIAG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MODS=(virtio_mmio vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport nsm)
skip() { echo "fetch-enclave-kernel: $*" >&2; exit 77; }

complete() {
  [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/VERSION" ] || return 1
  for m in "${MODS[@]}"; do [ -s "$CACHE/modules/$m.ko" ] || return 1; done
}

if [ "${1:-}" = "--check" ]; then
  complete && { echo "$CACHE"; exit 0; }
  skip "no enclave kernel in $CACHE (run tools/fetch-enclave-kernel.sh)"
fi
complete && { echo "$CACHE"; exit 0; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
complete && { echo "$CACHE"; exit 0; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "apt-get/dpkg-deb not available (not a Debian system)"

scratch="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch"
mkdir -p "$scratch/apt/lists/partial" "$scratch/apt/cache/archives/partial"
printf 'deb %s bookworm main\ndeb %s bookworm-backports main\n' "$MIRROR" "$MIRROR" >"$scratch/apt/sources.list"
APTOPTS=(-o "Dir::Etc::sourcelist=$scratch/apt/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
         -o "Dir::State::lists=$scratch/apt/lists" -o "Dir::Cache=$scratch/apt/cache" -o "APT::Sandbox::User=root"
         -o Acquire::Retries=1 -o Acquire::http::Timeout=30 -qq)
apt-get "${APTOPTS[@]}" update >"$scratch/apt.log" 2>&1 || skip "no access to Debian's archive ($(grep -m1 -E '^(E|W):' "$scratch/apt.log" || echo 'apt-get update failed'))"
pkg="$(apt-cache "${APTOPTS[@]}" depends -t bookworm-backports linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[ -n "$pkg" ] || skip "apt cannot resolve linux-image-cloud-amd64 in bookworm-backports"
(cd "$scratch" && apt-get "${APTOPTS[@]}" download "$pkg" >"$scratch/dl.log" 2>&1) || skip "apt-get download $pkg failed: $(tail -n 1 "$scratch/dl.log")"
deb="$(ls "$scratch"/*.deb | head -n 1)"
dpkg-deb -x "$deb" "$scratch/x"
ver="$(ls "$scratch/x/lib/modules" | head -n 1)"
mkdir -p "$scratch/modules"
for m in "${MODS[@]}"; do
  src="$(find "$scratch/x/lib/modules/$ver" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)"
  [ -n "$src" ] || { echo "fetch-enclave-kernel: $m.ko not found in $pkg" >&2; exit 1; }
  case "$src" in
    *.xz) xz -dc "$src" >"$scratch/modules/$m.ko" ;;
    *.zst) zstd -dcq "$src" >"$scratch/modules/$m.ko" ;;
    *) cp "$src" "$scratch/modules/$m.ko" ;;
  esac
done
rm -rf "$CACHE/modules"
mv "$scratch/modules" "$CACHE/modules"
cp "$scratch/x/boot/vmlinuz-$ver" "$CACHE/vmlinuz.new" && mv "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
echo "$pkg $ver" >"$CACHE/VERSION"
echo "$CACHE"
