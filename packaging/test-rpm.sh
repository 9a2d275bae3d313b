#!/bin/sh
# test-rpm.sh RPM — installs the .rpm with rpm itself (rpm --root, its own database) into an empty tmpfs root and
# runs the installed programs there in a private mount/pid/net namespace: what `yum install` puts on an Amazon Linux
# host, minus the host. The root has no /bin/sh, so the scriptlets (systemctl daemon-reload) are skipped (--noscripts)
# and the /bin/sh requirement is not checked (--nodeps); check-packages.sh checks both. An aarch64 .rpm is installed
# with --ignorearch and run under packaging/with-qemu-binfmt.sh. Needs root.
set -eu
rpmf=$(readlink -f "$1")
work=$(mktemp -d /tmp/nd-rpmroot.XXXXXX)
trap 'umount -R "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/root"
mount -t tmpfs -o size=512m nd-rpmroot "$work/root"
# (Debian's rpm warns that it is not Debian's package manager: that line is dropped.)
rpm --root "$work/root" --initdb 2>&1 | grep -v -e 'use Alien' -e 'assuming you know' || true
rpm --root "$work/root" -i --nodeps --noscripts --ignorearch "$rpmf" 2>&1 | grep -v -e 'use Alien' -e 'assuming you know' || true
q=$(rpm --root "$work/root" -q nitrodiag 2>/dev/null) || { echo "FAIL rpm -i: $q"; exit 1; }
echo "installed: $q"
fail=0
if v=$(rpm --root "$work/root" -V --nodeps nitrodiag 2>/dev/null); then
    echo "ok   rpm -V: every installed file matches the package"
else
    echo "FAIL rpm -V"; printf '%s\n' "$v" | head -n 10; fail=1
fi
mkdir -p "$work/root/proc" "$work/root/dev" "$work/root/tmp"
check() { # name regex command...
    name=$1 want=$2
    shift 2
    out=$(unshare --mount --pid --net --fork sh -c '
        r=$1; shift
        mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && mount -t tmpfs tmp "$r/tmp" || exit 125
        exec env -i PATH=/usr/bin HOME=/tmp AWS_REGION=us-west-2 "$(command -v chroot)" "$r" "$@"' sh "$work/root" "$@" 2>&1) &&
        rc=0 || rc=$?
    if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -Eq "$want"; then echo "ok   $name"; else
        echo "FAIL $name (exit $rc)"; printf '%s\n' "$out" | tail -n 15 | sed 's/^/     /'; fail=1; fi
}
check "nitrodiag --version"    '^nitrodiag [0-9]'       /usr/bin/nitrodiag --version
check "runbooks from /usr/share/nitrodiag" '/usr/share/nitrodiag/runbooks/diag10.lua' /usr/bin/nitrodiag list
check "--sim healthy diag10"   'verdict: PASS'          /usr/bin/nitrodiag --out /tmp --sim healthy diag10 run_seconds=2
check "proxy --check with /etc/nitrodiag/kms-proxy.conf" 'configuration is valid' \
      /usr/bin/nitrodiag-kms-proxy --config /etc/nitrodiag/kms-proxy.conf --check
exit $fail
