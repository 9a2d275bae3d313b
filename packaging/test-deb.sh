#!/bin/sh
# test-deb.sh DEB [CACHE_DIR] — installs the .deb into a fresh Debian 12 root made by mmdebstrap from Debian's
# package registry (only the root is downloaded, once, and cached in CACHE_DIR; it holds minbase, man-db and the
# libraries the .deb's Depends names), then, with no network (its own network namespace), runs there:
#   dpkg -i, nitrodiag --version, --sim healthy diag10, nitrodiag-kms-proxy --config /etc/nitrodiag/kms-proxy.conf
#   --check (with a region; and without one it must say the region comes from IMDSv2), man nitrodiag,
#   man nitrodiag-kms-proxy,
#   bash completion, an edited conffile surviving a reinstall, and dpkg -r keeping / purge removing the conffile.
# Needs root. Exit 0 only when every check passed.
set -eu
deb=$(readlink -f "$1")
cache=${2:-build-pkgtest}
mkdir -p "$cache"
cache=$(readlink -f "$cache")
deps=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/ //g; s/|[^,]*//g')
key=$(printf '%s' "man-db,bash-completion,$deps" | sha256sum | cut -c1-12)
rootfs=$cache/debian12-$key.tar
if [ ! -f "$rootfs" ]; then
    echo "== mmdebstrap bookworm (minbase + man-db,bash-completion,$deps) -> $rootfs"
    mmdebstrap --quiet --format=tar --variant=minbase --include="man-db,bash-completion,$deps" bookworm "$rootfs.part"
    mv "$rootfs.part" "$rootfs"
fi

work=$(mktemp -d /tmp/nd-debroot.XXXXXX)
trap 'umount -R "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/root"
mount -t tmpfs -o size=1g nd-debroot "$work/root"
tar -C "$work/root" -xf "$rootfs"
cp "$deb" "$work/root/tmp/nitrodiag.deb"

fail=0
check() { # name expected-regex shell-command (run by the root's /bin/sh, no network)
    out=$(unshare --mount --pid --net --fork sh -c '
        r=$1; shift
        mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" || exit 125
        exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8 "$(command -v chroot)" "$r" /bin/sh -c "$1"' \
        sh "$work/root" "$3" 2>&1) && rc=0 || rc=$?
    if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -Eq "$2"; then
        echo "ok   $1"
    else
        echo "FAIL $1 (exit $rc)"; printf '%s\n' "$out" | tail -n 15 | sed 's/^/     /'
        fail=1
    fi
}
check "no network in the test"    '^interfaces: lo $' \
      'printf "interfaces: "; sed -n "3,\$p" /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\n" " "'
check "dpkg -i"                    'Setting up nitrodiag'      'dpkg -i /tmp/nitrodiag.deb'
check "nitrodiag --version"        '^nitrodiag [0-9]'          'nitrodiag --version'
check "--sim healthy diag10"       'verdict: PASS'             'cd /tmp && nitrodiag --sim healthy diag10'
check "proxy --check (region set)" 'configuration is valid' \
      'AWS_REGION=eu-west-1 nitrodiag-kms-proxy --config /etc/nitrodiag/kms-proxy.conf --check'
check "proxy --check (no region)"  'exit=0 .*region is read from IMDSv2' \
      'nitrodiag-kms-proxy --config /etc/nitrodiag/kms-proxy.conf --check 2>&1; echo "exit=$? $(nitrodiag-kms-proxy --config /etc/nitrodiag/kms-proxy.conf --check 2>&1)"'
check "man nitrodiag"              'SIMULATOR SCENARIOS' \
      'man -P cat nitrodiag 2>&1 | grep -E "^(NAME|RUNBOOKS|SIMULATOR SCENARIOS)" | tr "\n" " "; man -P cat nitrodiag | grep -q "diag10"'
check "man nitrodiag-kms-proxy"    'metrics_listen' 'man -P cat nitrodiag-kms-proxy 2>&1 | grep -- "--metrics_listen"'
check "bash completion"            'diag10.*memory=' \
      'bash -c ". /usr/share/bash-completion/completions/nitrodiag; COMP_WORDS=(nitrodiag dia); COMP_CWORD=1; _nitrodiag; echo \${COMPREPLY[*]}; COMP_WORDS=(nitrodiag diag10 mem); COMP_CWORD=2; _nitrodiag; echo \${COMPREPLY[*]}" | tr "\n" " "'
check "systemd unit installed"     'ExecStart=/usr/bin/nitrodiag-kms-proxy' 'cat /lib/systemd/system/kms-proxy-host.service'
check "conffile kept on reinstall" '^region = eu-central-1$' \
      'echo "region = eu-central-1" >> /etc/nitrodiag/kms-proxy.conf && dpkg -i /tmp/nitrodiag.deb >/dev/null && grep "^region" /etc/nitrodiag/kms-proxy.conf'
check "remove keeps, purge drops the conffile" '^kept gone$' \
      'dpkg -r nitrodiag >/dev/null && test -f /etc/nitrodiag/kms-proxy.conf && a=kept; dpkg -P nitrodiag >/dev/null; test -e /etc/nitrodiag/kms-proxy.conf || b=gone; echo "$a $b"'
[ $fail -eq 0 ] || exit 1
