#!/bin/sh
# make-packages.sh [OUT] — `make package`: builds the two release trees and writes into OUT (default dist/):
#   nitrodiag_<ver>_<debarch>.deb              ordinary build, /usr, Debian's libraries as dependencies (CPack DEB)
#   nitrodiag-<ver>-1.<arch>.rpm               the portable build, /usr, no dependencies (CPack RPM)
#   nitrodiag-<ver>-linux-<arch>.tar.gz        the same portable tree, relocatable: unpack anywhere, run bin/nitrodiag
# Environment: ND_PKG_CMAKE_FLAGS (e.g. a cross toolchain file), ND_PKG_SUFFIX (build dir suffix, e.g. -arm64),
# ND_PKG_ONLY=portable to skip the .deb. Build type Release; warnings are not errors here (a packager's build).
set -eu
cd "$(dirname "$0")/.."
out=${1:-dist}
sfx=${ND_PKG_SUFFIX:-}
flags=${ND_PKG_CMAKE_FLAGS:-}
jobs=$(nproc)
mkdir -p "$out"
common="-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DND_SOURCE_PATHS=OFF -DND_GIT_VERSION=ON"

if [ "${ND_PKG_ONLY:-}" != portable ]; then
    echo "== .deb (build-pkg$sfx)"
    # shellcheck disable=SC2086
    cmake -S . -B "build-pkg$sfx" $common $flags >/dev/null
    cmake --build "build-pkg$sfx" -j "$jobs" >"build-pkg$sfx/build.log" 2>&1 || { tail -n 40 "build-pkg$sfx/build.log"; exit 1; }
    rm -rf "build-pkg$sfx/cpack"
    (cd "build-pkg$sfx" && cpack -G DEB -B "$PWD/cpack" >cpack.log 2>&1) || { cat "build-pkg$sfx/cpack.log"; exit 1; }
    debarch=$(dpkg-deb -f "build-pkg$sfx"/cpack/nitrodiag_*.deb Architecture)
    rm -f "$out"/nitrodiag_*_"$debarch".deb # one .deb per architecture: the newest
    cp "build-pkg$sfx"/cpack/nitrodiag_*.deb "$out/"
fi

echo "== portable .rpm and .tar.gz (build-portable$sfx)"
b=build-portable$sfx
# shellcheck disable=SC2086
cmake -S . -B "$b" $common -DND_PORTABLE=ON $flags >/dev/null
cmake --build "$b" -j "$jobs" >"$b/build.log" 2>&1 || { tail -n 40 "$b/build.log"; exit 1; }
rm -rf "$b/cpack"
(cd "$b" && cpack -G RPM -B "$PWD/cpack" >cpack.log 2>&1) || { cat "$b/cpack.log"; exit 1; }
arch=$(sed -n 's/^set(CPACK_RPM_PACKAGE_ARCHITECTURE "\(.*\)")$/\1/p' "$b/CPackConfig.cmake" | head -n 1)
rm -f "$out"/nitrodiag-*."$arch".rpm "$out"/nitrodiag-*-linux-"$arch".tar.gz
cp "$b"/cpack/nitrodiag-*."$arch".rpm "$out/"

# The tarball: the same install, with usr/ as the tree's root and etc/ inside it.
ver=$(sed -n 's/^CPACK_PACKAGE_VERSION:.*=//p; s/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$b/CPackConfig.cmake" | head -n 1)
name=nitrodiag-$ver-linux-$arch
stage=$b/tarball
rm -rf "$stage"
DESTDIR="$PWD/$stage/root" cmake --install "$b" >/dev/null
mkdir -p "$stage/$name"
mv "$stage/root/usr/"* "$stage/$name/"
mv "$stage/root/etc" "$stage/$name/etc"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
echo "== $out:"
ls -l "$out"
