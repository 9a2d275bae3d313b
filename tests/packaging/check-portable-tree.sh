#!/bin/sh
# check-portable-tree.sh LAUNCHER LOADER READELF DIRS — the portable tree, made from this build by the same
# packaging/portable-tree.sh the .rpm and tarball use, then moved: its launchers start the programs with the tree's
# own loader and libraries only (LD_DEBUG=libs shows every library loaded from the tree, none from the host), and
# nitrodiag finds its runbooks in the moved tree. (The empty-root proof is `make package-test`.)
set -eu
launcher=$1 loader=$2 readelf=$3 dirs=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
DESTDIR=$tmp/dest cmake --install "$ND_BUILD_DIR" --prefix /usr >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
# shellcheck disable=SC2046
sh "$ND_SOURCE_DIR/packaging/portable-tree.sh" "$tmp/dest/usr" "$launcher" "$loader" "$readelf" $(echo "$dirs" | tr ':' ' ') \
    >"$tmp/tree.log" 2>&1 || { cat "$tmp/tree.log"; exit 1; }
mv "$tmp/dest/usr" "$tmp/moved"
t=$tmp/moved
fail=0
no() { echo "FAIL $*"; fail=1; }
for p in nitrodiag nitrodiag-kms-proxy; do
    cmp -s "$t/bin/$p" "$launcher" || no "bin/$p is not the launcher"
    [ -x "$t/libexec/nitrodiag/bin/$p" ] || no "libexec/nitrodiag/bin/$p missing"
    v=$(cd "$tmp" && env -i "$t/bin/$p" --version) || no "$p --version failed"
    echo "$v" | grep -q "^$p [0-9]" || no "$p --version said: $v"
    # every object the loader maps comes from the tree
    loaded=$(cd "$tmp" && env -i LD_DEBUG=libs "$t/bin/$p" --version 2>&1 >/dev/null | sed -n 's/.*calling init: //p')
    [ -n "$loaded" ] || no "$p: LD_DEBUG shows no library"
    outside=$(printf '%s\n' "$loaded" | grep -v "^$t/libexec/nitrodiag/lib/" || true)
    [ -z "$outside" ] || no "$p loads libraries from outside the tree: $outside"
done
# the libraries nitrodiag loads with dlopen on first use (core/lazylib.c) come from the tree too: libarchive for a
# bundle (a --sim diag10 that collects), libcurl for HTTP (the proxy asking an IMDS that is not there for a region)
mkdir -p "$tmp/out"
lazy=$(cd "$tmp/out" && env -i LD_DEBUG=libs "$t/bin/nitrodiag" --sim healthy --out "$tmp/out" diag10 runs= 2>&1 >/dev/null |
    sed -n 's/.*calling init: //p' | grep 'libarchive\.so\.13' || true)
case "$lazy" in "$t/libexec/nitrodiag/lib/libarchive.so.13") ;; *) no "libarchive for the bundle: '$lazy'" ;; esac
ls "$tmp/out"/nitrodiag-diag10-*.tar.gz >/dev/null 2>&1 || no "no bundle written by the moved tree's nitrodiag"
lazy=$(cd "$tmp" && env -i LD_DEBUG=libs "$t/bin/nitrodiag-kms-proxy" --listen="unix:$tmp/p.sock" --metrics_listen=off \
    --imds_endpoint=http://127.0.0.1:9 2>&1 >/dev/null | sed -n 's/.*calling init: //p' | grep 'libcurl\.so\.4' || true)
case "$lazy" in "$t/libexec/nitrodiag/lib/libcurl.so.4") ;; *) no "libcurl for the proxy: '$lazy'" ;; esac
n=$(cd "$tmp" && env -i "$t/bin/nitrodiag" list | grep -c "$t/share/nitrodiag/runbooks/") || true
[ "$n" -gt 0 ] || no "the moved tree's nitrodiag does not list its own runbooks"
# a simulator stand-in called through a link to the launcher runs as that program (--argv0)
ln -s "$t/bin/nitrodiag" "$tmp/nitro-cli"
out=$(cd "$tmp" && env -i "$tmp/nitro-cli" --version 2>&1) || true
echo "$out" | grep -qi "nitro" || no "nitro-cli link: $out"
echo "$out" | grep -q "^nitrodiag " && no "nitro-cli link ran nitrodiag's CLI: $out"
# the licences of what is carried: one "library package version" line per library, the copyright file beside it
src=$t/share/doc/nitrodiag/third-party/SOURCES
if command -v dpkg-query >/dev/null 2>&1; then
    for so in $(ls "$t/libexec/nitrodiag/lib"); do
        line=$(grep "^$so " "$src" || true)
        [ "$(echo "$line" | wc -w)" -eq 3 ] || no "third-party/SOURCES for $so: '$line'"
        pkg=$(echo "$line" | cut -d' ' -f2)
        [ -z "$pkg" ] || [ -f "$t/share/doc/nitrodiag/third-party/$pkg.copyright" ] || no "no copyright file for $pkg"
    done
    [ "$(grep -c . "$src")" -eq "$(ls "$t/libexec/nitrodiag/lib" | wc -l)" ] || no "third-party/SOURCES: not one line per library"
    want=$(dpkg-query -W -f '${Version}' "libc6:$(dpkg --print-architecture)")
    grep -qx "libc.so.6 libc6 $want" "$src" || no "third-party/SOURCES: libc6 is not $want: $(grep '^libc.so.6 ' "$src")"
fi
[ $fail -eq 0 ] && echo "portable tree: ok ($(du -sk "$t" | cut -f1) KiB; $(printf '%s\n' "$loaded" | wc -l) objects, all from the tree)"
exit $fail
