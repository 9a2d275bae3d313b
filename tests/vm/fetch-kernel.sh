#!/usr/bin/env bash
# Fetches Debian's cloud kernel for the enclave real-kernel test WITHOUT installing it: `apt-get download` of the
# current linux-image-*-cloud-amd64, `dpkg-deb -x` into a scratch dir, and only what the test needs is kept:
#   CACHE/vmlinuz, CACHE/modules/<the modules in mods below>.ko (xz/zstd unpacked),
#   CACHE/VERSION.
# Idempotent (a complete cache is reused), safe to run concurrently (flock). Prints CACHE on success.
# Exit 77 (ctest's skip code) with the reason on stderr when the package cannot be fetched (no apt access).
# Usage: tests/vm/fetch-kernel.sh [CACHE_DIR]     (default: tests/vm/cache, git-ignored)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${1:-$here/cache}"
# vsock_loopback for tests/vm; the virtio ring, PCI transport and virtio vsock transport for tests/vhost (a real
# virtio-vsock device served by nd-vhost-vsock)
mods=(vsock vmw_vsock_virtio_transport_common vsock_loopback virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
      virtio_pci vmw_vsock_virtio_transport)
skip() { echo "fetch-kernel: SKIP: $*" >&2; exit 77; }

complete() {
  [ -s "$cache/vmlinuz" ] && [ -s "$cache/VERSION" ] || return 1
  for m in "${mods[@]}"; do [ -s "$cache/modules/$m.ko" ] || return 1; done
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if complete; then echo "$cache"; exit 0; fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "apt-get/dpkg-deb not available (not a Debian system)"

# The meta package names the current versioned kernel package.
resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg="$(resolve || true)"
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq -o Acquire::Retries=0 -o Acquire::http::Timeout=15 >/dev/null 2>&1 || true
  pkg="$(resolve || true)"
fi
[ -n "$pkg" ] || skip "apt cannot resolve linux-image-cloud-amd64 (no package lists: run apt-get update, or no apt access)"

scratch="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
chmod 755 "$scratch" # so apt's unprivileged _apt user may write there
get() { (cd "$scratch" && apt-get download -qq -o Acquire::Retries=0 -o Acquire::http::Timeout=15 "$pkg" >/dev/null 2>"$scratch/apt.err"); }
if ! get; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq -o Acquire::Retries=0 -o Acquire::http::Timeout=15 >/dev/null 2>&1 || true; pkg="$(resolve || echo "$pkg")"; fi
  get || skip "apt-get download $pkg failed: $(tail -n 1 "$scratch/apt.err" 2>/dev/null)"
fi
deb="$(ls "$scratch"/*.deb 2>/dev/null | head -n 1)"
[ -n "$deb" ] || skip "apt-get download $pkg produced no .deb"
dpkg-deb -x "$deb" "$scratch/x"

ver="$(ls "$scratch/x/lib/modules" | head -n 1)"
[ -n "$ver" ] || { echo "fetch-kernel: $pkg has no /lib/modules" >&2; exit 1; }
mkdir -p "$cache/modules.new"
for m in "${mods[@]}"; do
  src="$(find "$scratch/x/lib/modules/$ver" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)"
  [ -n "$src" ] || { echo "fetch-kernel: $m.ko not found in $pkg" >&2; exit 1; }
  case "$src" in
    *.xz)  xz -dc "$src" >"$cache/modules.new/$m.ko" ;;
    *.zst) zstd -dcq "$src" >"$cache/modules.new/$m.ko" ;;
    *.gz)  gzip -dc "$src" >"$cache/modules.new/$m.ko" ;;
    *)     cp "$src" "$cache/modules.new/$m.ko" ;;
  esac
done
cp "$scratch/x/boot/vmlinuz-$ver" "$cache/vmlinuz.new"
rm -rf "$cache/modules"
mv "$cache/modules.new" "$cache/modules"
mv "$cache/vmlinuz.new" "$cache/vmlinuz"
echo "$pkg $ver" >"$cache/VERSION"
echo "$cache"
