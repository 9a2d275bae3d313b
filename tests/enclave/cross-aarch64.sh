#!/usr/bin/env bash
# The enclave programs cross-build for aarch64 (Graviton parents run aarch64 enclaves): nitrodiag-init and
# vsock-pingpong (without its kms mode, which needs OpenSSL and jansson for arm64) compile with Debian's
# aarch64-linux-gnu-gcc (crossbuild-essential-arm64), statically, warnings as errors, and come out as AArch64 ELF
# executables. Exit 0 pass, 1 fail, 77 skip (no cross compiler).
# Usage: cross-aarch64.sh SOURCE_DIR
set -uo pipefail
src="$1"
cc="$(command -v aarch64-linux-gnu-gcc || true)"
readelf="$(command -v aarch64-linux-gnu-readelf || command -v readelf || true)"
[ -n "$cc" ] || { echo "SKIP: aarch64-linux-gnu-gcc is not installed (crossbuild-essential-arm64)"; exit 77; }
[ -n "$readelf" ] || { echo "SKIP: no readelf"; exit 77; }
out="$(mktemp -d "${TMPDIR:-/tmp}/nd-cross.XXXXXX")"
trap 'rm -rf "$out"' EXIT
flags=(-std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -I"$src/core" -static)
fails=0
build() {
  local name="$1"; shift
  if ! "$cc" "${flags[@]}" -o "$out/$name" "$@" 2>"$out/$name.err"; then
    echo "FAIL: $name does not cross-build:"; sed 's/^/    /' "$out/$name.err"; fails=$((fails + 1)); return
  fi
  local machine
  machine="$("$readelf" -h "$out/$name" | sed -n 's/^ *Machine: *//p')"
  local type
  type="$("$readelf" -h "$out/$name" | sed -n 's/^ *Type: *//p')"
  if [ "$machine" != "AArch64" ] || [[ "$type" != EXEC* ]]; then
    echo "FAIL: $name is '$machine' '$type', expected an AArch64 executable"; fails=$((fails + 1)); return
  fi
  if "$readelf" -l "$out/$name" | grep -q 'Requesting program interpreter'; then
    echo "FAIL: $name is dynamically linked"; fails=$((fails + 1)); return
  fi
  echo "ok: $name: static AArch64 executable, $(stat -c %s "$out/$name") bytes"
}
e="$src/enclave" c="$src/core"
build nitrodiag-init "$e/init.c" "$e/errname.c" "$c/logchan.c" "$c/vsock.c" "$c/nd.c"
build vsock-pingpong "$e/pingpong.c" "$e/errname.c" "$c/vsock.c" "$c/nd.c"
[ $fails -eq 0 ] && echo "enclave.cross_aarch64: PASS"
[ $fails -eq 0 ]
