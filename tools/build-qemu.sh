#!/usr/bin/env bash
# Builds a qemu-system-x86_64 that has the `nitro-enclave` machine (QEMU >= 9.2 built with libcbor and vhost-user),
# from Debian's own source package, once per machine, into a cache outside the source tree.
#
# Debian's binary QEMU packages (7.2 in bookworm, 10.0 in bookworm-backports) are built without libcbor and so lack
# the machine type; this script takes the backports source (verified by apt against the signed Sources index), the
# build dependencies from Debian (meson >= 1.5 and pycotap from bookworm-backports), and builds only the x86_64
# softmmu target with the nitro-enclave machine and the devices it selects (microvm, vhost-user-vsock, virtio-nsm).
# The firmware (bios-microvm.bin) comes from Debian's qemu-system-data, as in Debian's own build.
#
# Usage: tools/build-qemu.sh [--check] [--print-cache]
#   prints the path of the built qemu-system-x86_64 on stdout (building it first unless --check); progress goes to
#   stderr. Exit 0: built and verified. Exit 77 with one line on stderr: cannot be built here (no apt access, not
#   root with missing packages), or with --check: not built yet. Other non-zero: the build failed (see the log).
# Environment: NITRODIAG_QEMU_CACHE (install prefix; default ~/.cache/nitrodiag/qemu-<version>),
#   NITRODIAG_QEMU_JOBS (parallel compile jobs; default: number of CPUs).
# Idempotent and flock-protected: concurrent callers wait for one build; a finished build is reused.
set -euo pipefail

DEB_VERSION='1:10.0.2+ds-2+deb13u1~bpo12+1'
UPSTREAM='10.0.2'
CACHE="${NITRODIAG_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nitrodiag/qemu-$UPSTREAM}"
BIN="$CACHE/bin/qemu-system-x86_64"
MIRROR="${NITRODIAG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${NITRODIAG_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

skip() { echo "build-qemu: $*" >&2; exit 77; }
say() { echo "build-qemu: $*" >&2; }

# A build counts only when the binary runs and lists the machine type.
built() {
  [ -x "$BIN" ] && [ -f "$CACHE/.nitrodiag-complete" ] || return 1
  local machines
  machines=$("$BIN" -M help 2>/dev/null) || return 1
  grep -q '^nitro-enclave ' <<<"$machines"
}

case "${1:-}" in
  --print-cache) echo "$CACHE"; exit 0 ;;
  --check) if built; then echo "$BIN"; exit 0; fi; skip "no QEMU with nitro-enclave in $CACHE (run tools/build-qemu.sh)" ;;
  -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "build-qemu: unknown option $1 (try --help)" >&2; exit 2 ;;
esac

if built; then echo "$BIN"; exit 0; fi

mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9
if built; then echo "$BIN"; exit 0; fi   # another caller finished it while we waited

command -v apt-get >/dev/null || skip "apt-get not found: build QEMU >= 9.2 with --enable-libcbor --enable-vhost-user by hand"

WORK="$CACHE.work"
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/src"
# A private apt configuration: the system's sources are left alone (they have no deb-src and no backports).
# (bookworm's updates and security suites too: installed libraries may be newer than bookworm's point release, and
# their -dev packages must match them)
cat > "$APT/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
deb $MIRROR bookworm-backports main
deb-src $MIRROR bookworm-backports main
EOF
APTOPTS=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
         -o "Dir::State::lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "APT::Sandbox::User=root" -qq)

say "reading Debian's package indexes (private apt configuration in $APT)"
apt-get "${APTOPTS[@]}" update >"$WORK/apt-update.log" 2>&1 \
  || skip "no access to Debian's archive ($(grep -m1 -E '^(E|W):' "$WORK/apt-update.log" || echo 'apt-get update failed'))"

# Build dependencies: only what the x86_64 softmmu target with the nitro-enclave machine needs.
PKGS=(build-essential pkg-config ninja-build python3-venv flex bison xz-utils
      libglib2.0-dev zlib1g-dev libcbor-dev libfdt-dev libgnutls28-dev qemu-system-data)
BPO_PKGS=(meson python3-pycotap)   # QEMU 10 needs meson >= 1.5 (bookworm has 1.0); its venv wants pycotap
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
meson_ok() { command -v meson >/dev/null && dpkg --compare-versions "$(meson --version 2>/dev/null || echo 0)" ge 1.5.0; }
meson_ok && dpkg-query -W -f='${Status}' python3-pycotap 2>/dev/null | grep -q "install ok installed" || missing+=("${BPO_PKGS[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || skip "missing build dependencies and not root: ${missing[*]}"
  say "installing build dependencies: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get "${APTOPTS[@]}" install -y --no-install-recommends \
    "${PKGS[@]}" >"$WORK/apt-install.log" 2>&1 || { tail -5 "$WORK/apt-install.log" >&2; skip "could not install the build dependencies"; }
  DEBIAN_FRONTEND=noninteractive apt-get "${APTOPTS[@]}" install -y --no-install-recommends -t bookworm-backports \
    "${BPO_PKGS[@]}" >>"$WORK/apt-install.log" 2>&1 || { tail -5 "$WORK/apt-install.log" >&2; skip "could not install meson/pycotap from bookworm-backports"; }
fi
meson_ok || skip "meson >= 1.5.0 is needed (found $(meson --version 2>/dev/null || echo none))"

# The source: Debian's orig tarball of the backports version; apt checks its hash against the signed Sources index.
# (The .dsc and Debian's patches are fetched when the mirror has them; the upstream tarball alone builds.)
SRC="$WORK/src/qemu-$UPSTREAM"
if [ ! -f "$SRC/.nitrodiag-unpacked" ]; then
  rm -rf "$WORK/src" && mkdir -p "$WORK/src"
  say "downloading Debian's source of qemu $DEB_VERSION"
  ( cd "$WORK/src" && apt-get "${APTOPTS[@]}" source --download-only "qemu=$DEB_VERSION" >"$WORK/apt-source.log" 2>&1 ) || true
  ORIG=$(ls "$WORK"/src/qemu_"$UPSTREAM"+ds.orig.tar.xz 2>/dev/null || true)
  [ -n "$ORIG" ] || skip "could not download qemu_$UPSTREAM+ds.orig.tar.xz ($(grep -m1 '^E:' "$WORK/apt-source.log" || echo 'apt-get source failed'))"
  say "unpacking $(basename "$ORIG")"
  tar -C "$WORK/src" -xJf "$ORIG"
  DEBTAR=$(ls "$WORK"/src/qemu_*.debian.tar.xz 2>/dev/null || true)
  if [ -n "$DEBTAR" ]; then
    tar -C "$SRC" -xJf "$DEBTAR"
    if [ -f "$SRC/debian/patches/series" ]; then
      while read -r p _; do
        case "$p" in ''|'#'*) continue ;; esac
        if patch -d "$SRC" -p1 -s -N --dry-run <"$SRC/debian/patches/$p" >/dev/null 2>&1; then
          patch -d "$SRC" -p1 -s -N <"$SRC/debian/patches/$p" >/dev/null
        else
          say "Debian patch $p does not apply here; building without it"
        fi
      done <"$SRC/debian/patches/series"
    fi
  fi
  touch "$SRC/.nitrodiag-unpacked"
fi

# Debian's python3 (not one earlier in PATH, e.g. pyenv) is the one that sees Debian's meson.
# Only the nitro-enclave machine: it selects microvm, vhost-user-vsock and virtio-nsm by itself (hw/i386/Kconfig).
printf 'CONFIG_NITRO_ENCLAVE=y\n' > "$SRC/configs/devices/x86_64-softmmu/nitrodiag.mak"
# Debian's +ds tarball drops the prebuilt firmware (edk2 *.fd.bz2, bios-*.bin): install no blobs and unpack none.
sed -i 's/^\( *unpack_edk2_blobs = \)bzip2.found()$/\1false/' "$SRC/meson.build"

BUILD="$WORK/build"
JOBS="${NITRODIAG_QEMU_JOBS:-$(nproc 2>/dev/null || echo 2)}"
if [ ! -f "$BUILD/build.ninja" ]; then
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  say "configuring (log: $BUILD/configure.log)"
  ( cd "$BUILD" && "$SRC/configure" --prefix="$CACHE" --python=/usr/bin/python3 \
      --target-list=x86_64-softmmu --without-default-features --without-default-devices \
      --with-devices-x86_64=nitrodiag \
      --enable-kvm --enable-tcg --enable-libcbor --enable-vhost-user --enable-gnutls --enable-fdt=system \
      --disable-install-blobs --disable-docs --disable-tools --disable-guest-agent --disable-user --disable-werror \
      --disable-download --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu \
      >configure.log 2>&1 ) || { tail -20 "$BUILD/configure.log" >&2; rm -f "$BUILD/build.ninja"; echo "build-qemu: configure failed (log: $BUILD/configure.log)" >&2; exit 1; }
fi
say "compiling with $JOBS jobs (log: $BUILD/build.log); about 2 min on a quiet 2-CPU machine, longer under load"
( cd "$BUILD" && ninja -j "$JOBS" qemu-system-x86_64 >build.log 2>&1 ) \
  || { tail -20 "$BUILD/build.log" >&2; echo "build-qemu: compile failed (log: $BUILD/build.log)" >&2; exit 1; }

# Install only the emulator (firmware comes from qemu-system-data, see --firmwarepath).
mkdir -p "$CACHE/bin"
install -m 0755 "$BUILD/qemu-system-x86_64" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
printf '%s\n' "$DEB_VERSION" > "$CACHE/.nitrodiag-complete"
if ! built; then
  rm -f "$CACHE/.nitrodiag-complete"
  echo "build-qemu: the built $BIN does not list the nitro-enclave machine" >&2
  exit 1
fi
rm -rf "$WORK"
say "done"
echo "$BIN"
