#!/bin/sh
# portable-tree.sh ROOT LAUNCHER LOADER READELF DIR... — turns an installed nitrodiag tree (ROOT = $DESTDIR$prefix,
# holding bin/nitrodiag, bin/nitrodiag-kms-proxy, ...) into the portable one (docs/packaging.md):
#   bin/<prog>                        the static launcher (packaging/launcher.c)
#   libexec/nitrodiag/bin/<prog>      the real programs, unchanged
#   libexec/nitrodiag/lib/            every shared library they need (found with READELF in DIR..., the
#                                     compiler's library directories) and the loader LOADER
#   share/doc/nitrodiag/third-party/  the copyright file of each Debian package a carried library comes from
# Run by `cmake --install` (and so by CPack) when ND_PORTABLE is on. Fails, naming it, on a library it cannot find.
set -eu
root=$1 launcher=$2 loader=$3 readelf=$4
shift 4
dirs="$*"
px=$root/libexec/nitrodiag
mkdir -p "$px/bin" "$px/lib"

find_lib() { # soname -> path in the first dir that has it
    for d in $dirs; do
        if [ -e "$d/$1" ]; then echo "$d/$1"; return 0; fi
    done
    return 1
}
needed() { "$readelf" -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# Every dynamically linked program in bin/ (nitrodiag, nitrodiag-kms-proxy, and any program added later) moves to
# libexec/nitrodiag/bin and gets the launcher in its place. Run again on the same tree, it changes nothing.
todo=""
for f in "$root"/bin/*; do
    [ -f "$f" ] || continue
    prog=$(basename "$f")
    if "$readelf" -l "$f" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        mv -f "$f" "$px/bin/$prog"
    elif ! cmp -s "$f" "$launcher"; then
        continue # a script or a static program: it runs as it is
    fi
    cp -f "$launcher" "$root/bin/$prog"
    chmod 755 "$root/bin/$prog"
    todo="$todo $px/bin/$prog"
done
[ -n "$todo" ] || { echo "portable-tree: no program in $root/bin" >&2; exit 1; }

# The transitive closure of DT_NEEDED, breadth first, starting from the programs and from the libraries
# core/lazylib.c loads with dlopen on first use (readelf cannot see those: keep this list equal to its sonames).
seen=" "
for so in libcurl.so.4 libarchive.so.13; do
    seen="$seen$so "
    p=$(find_lib "$so") || { echo "portable-tree: $so (loaded with dlopen by nitrodiag) not found in: $dirs" >&2; exit 1; }
    cp -fL "$p" "$px/lib/$so"
    chmod 644 "$px/lib/$so"
    todo="$todo $px/lib/$so"
done
while [ -n "$(echo $todo)" ]; do
    next=""
    for f in $todo; do
        for so in $(needed "$f"); do
            case "$seen" in *" $so "*) continue ;; esac
            seen="$seen$so "
            p=$(find_lib "$so") || { echo "portable-tree: $so (needed by $(basename "$f")) not found in: $dirs" >&2; exit 1; }
            cp -fL "$p" "$px/lib/$so"
            chmod 644 "$px/lib/$so"
            next="$next $px/lib/$so"
        done
    done
    todo=$next
done
p=$(find_lib "$loader") || { echo "portable-tree: loader $loader not found in: $dirs" >&2; exit 1; }
cp -fL "$p" "$px/lib/$loader"
chmod 755 "$px/lib/$loader"
case "$seen" in *" $loader "*) ;; *) seen="$seen$loader " ;; esac

# Licences of what is carried: each library's Debian package's copyright file (when built on Debian).
doc=$root/share/doc/nitrodiag/third-party
mkdir -p "$doc"
: > "$doc/SOURCES"
if command -v dpkg-query >/dev/null 2>&1; then
    for so in $seen; do
        p=$(find_lib "$so") || continue
        real=$(readlink -f "$p")
        pkg=""
        for c in "$real" "$p" "$(echo "$real" | sed 's|^/usr/lib/|/lib/|')"; do # dpkg may know the pre-usrmerge path
            # "pkg:arch: /path" (or "pkg: /path"): keep the arch, several may be installed (multiarch)
            [ -n "$pkg" ] || pkg=$(dpkg-query -S "$c" 2>/dev/null | head -n 1 | sed 's/: .*//') || true
        done
        [ -n "$pkg" ] || continue
        ver=$(dpkg-query -W -f '${Version}\n' "$pkg" 2>/dev/null | head -n 1) || true
        name=${pkg%%:*}
        echo "$so $name $ver" >> "$doc/SOURCES"
        [ -f "/usr/share/doc/$name/copyright" ] && cp -f "/usr/share/doc/$name/copyright" "$doc/$name.copyright"
    done
fi
echo "portable-tree: $(ls "$px/lib" | wc -l) files in libexec/nitrodiag/lib, $(du -sk "$root" | cut -f1) KiB in all"
