#!/bin/sh
# test-portable.sh TARBALL — proves the portable build in an empty root: a private mount namespace (no network)
# whose root holds only the unpacked tree (/opt/nitrodiag), /proc, /dev and a tmpfs /tmp — no shell, no libc, no
# /etc. Runs there: --version, list, explain E26, --sim healthy diag10, and the proxy's --check; then prints the
# tree's size and the start time of `--version` against the dynamic build's (ND_DYNAMIC, default build/nitrodiag).
# Needs root (unshare, mount, chroot). For qemu-user (aarch64), set ND_EMU=qemu-aarch64-static: it is copied into the
# root and runs the launcher. Exit 0 only when every check passed.
set -eu
tarball=$(readlink -f "$1")
work=$(mktemp -d /tmp/nd-portable.XXXXXX)
trap 'umount -R "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/root"
mount -t tmpfs -o size=512m nd-root "$work/root"
mkdir -p "$work/root/opt" "$work/root/proc" "$work/root/dev" "$work/root/tmp"
tar -C "$work/root/opt" -xzf "$tarball"
mv "$work/root/opt/"nitrodiag-* "$work/root/opt/nitrodiag"
echo "root holds: $(cd "$work/root" && ls -A | tr '\n' ' ')(opt/nitrodiag: $(du -sh "$work/root/opt/nitrodiag" | cut -f1))"

fail=0
check() { # name expected-regex command... (run in the empty root)
    name=$1 want=$2
    shift 2
    out=$(unshare --mount --pid --net --fork sh -c '
        r=$1; shift
        mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && mount -t tmpfs tmp "$r/tmp" || exit 125
        exec env -i PATH=/opt/nitrodiag/bin HOME=/tmp TMPDIR=/tmp AWS_REGION=eu-west-1 "$(command -v chroot)" "$r" "$@"' \
        sh "$work/root" "$@" 2>&1) && rc=0 || rc=$?
    if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -Eq "$want"; then
        echo "ok   $name"
    else
        echo "FAIL $name (exit $rc)"; printf '%s\n' "$out" | tail -n 15 | sed 's/^/     /'
        fail=1
    fi
}
# The environment is set outside (env -i, then chroot execs the command): the root has no env, no shell.
check "--version"           '^nitrodiag [0-9]'                  /opt/nitrodiag/bin/nitrodiag --version
check "list"                '^diag10 '                          /opt/nitrodiag/bin/nitrodiag list
check "explain E26"         'E26 +Insufficient memory requested'                             /opt/nitrodiag/bin/nitrodiag explain E26
check "--sim healthy diag10" 'verdict: PASS'                    /opt/nitrodiag/bin/nitrodiag --out /tmp --sim healthy diag10
check "proxy --check"       'configuration is valid'            /opt/nitrodiag/bin/nitrodiag-kms-proxy --config /opt/nitrodiag/etc/nitrodiag/kms-proxy.conf --check
check "proxy --version"     '^nitrodiag-kms-proxy [0-9]'        /opt/nitrodiag/bin/nitrodiag-kms-proxy --version
[ $fail -eq 0 ] || exit 1
echo "portable tree: $(du -sk "$work/root/opt/nitrodiag" | cut -f1) KiB unpacked, $(du -k "$tarball" | cut -f1) KiB packed"

# Start time: the median of 41 runs of `--version`, portable launcher vs the dynamic build (host, warm cache).
median_ms() {
    i=0
    while [ $i -lt 41 ]; do
        t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 ))
        i=$((i + 1))
    done | sort -n | sed -n 21p | awk '{printf "%.2f", $1 / 1000}'
}
dyn=${ND_DYNAMIC:-build/nitrodiag}
p=$(median_ms "$work/root/opt/nitrodiag/bin/nitrodiag" --version)
tree_arch=$(readelf -h "$work/root/opt/nitrodiag/libexec/nitrodiag/bin/nitrodiag" | sed -n 's/^ *Machine: *//p')
dyn_arch=$(readelf -h "$dyn" 2>/dev/null | sed -n 's/^ *Machine: *//p')
if [ -x "$dyn" ] && [ "$tree_arch" = "$dyn_arch" ]; then
    d=$(median_ms "$dyn" --version)
    echo "start time (--version, median of 41): portable $p ms, dynamic ($dyn) $d ms"
else
    echo "start time (--version, median of 41): portable $p ms ($tree_arch; under qemu-user when not native)"
fi
