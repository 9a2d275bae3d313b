#!/bin/sh
# check-packages.sh DIR — the metadata of the packages `make package` wrote into DIR, read with the packaging tools
# themselves (dpkg-deb -I/-c, rpm -qip/-qlp/-qRp/--scripts/--configfiles), against what docs/packaging.md promises.
set -eu
dir=$1
fail=0
no() { echo "FAIL $*"; fail=1; }
for deb in "$dir"/nitrodiag_*.deb; do
    [ -f "$deb" ] || { no "no .deb in $dir"; break; }
    echo "== $(basename "$deb")"
    files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||')
    for f in /usr/bin/nitrodiag /usr/bin/nitrodiag-kms-proxy /etc/nitrodiag/kms-proxy.conf \
             /usr/share/man/man1/nitrodiag.1.gz /usr/share/man/man1/nitrodiag-kms-proxy.1.gz \
             /usr/share/bash-completion/completions/nitrodiag /usr/share/nitrodiag/runbooks/diag10.lua \
             /usr/share/nitrodiag/scenarios/healthy.lua /usr/share/nitrodiag/image/enclave/Dockerfile \
             /usr/share/doc/nitrodiag/copyright /usr/share/doc/nitrodiag/README.md; do
        printf '%s\n' "$files" | grep -qx "$f" || no "$f not in the .deb"
    done
    printf '%s\n' "$files" | grep -q '/systemd/system/kms-proxy-host.service$' || no "unit not in the .deb"
    printf '%s\n' "$files" | grep -q '^/usr/libexec/nitrodiag/lib/' && no "the .deb carries libraries"
    dpkg-deb -f "$deb" Depends | grep -q 'libc6' || no "Depends names no Debian library: $(dpkg-deb -f "$deb" Depends)"
    dpkg-deb -f "$deb" Depends | grep -q 'libuv1' || no "Depends lacks libuv1"
    dpkg-deb -I "$deb" conffiles | grep -qx /etc/nitrodiag/kms-proxy.conf || no "kms-proxy.conf is not a conffile"
    echo "   Depends: $(dpkg-deb -f "$deb" Depends)"
    echo "   conffiles: $(dpkg-deb -I "$deb" conffiles | tr '\n' ' ')"
done
for rpm in "$dir"/nitrodiag-*.rpm; do
    [ -f "$rpm" ] || { no "no .rpm in $dir"; break; }
    echo "== $(basename "$rpm")"
    files=$(rpm -qlp "$rpm" 2>/dev/null)
    for f in /usr/bin/nitrodiag /usr/bin/nitrodiag-kms-proxy /usr/libexec/nitrodiag/bin/nitrodiag \
             /etc/nitrodiag/kms-proxy.conf /usr/lib/systemd/system/kms-proxy-host.service \
             /usr/share/nitrodiag/runbooks/diag10.lua /usr/share/bash-completion/completions/nitrodiag \
             /usr/share/doc/nitrodiag/copyright /usr/share/man/man1/nitrodiag.1.gz \
             /usr/share/man/man1/nitrodiag-kms-proxy.1.gz; do
        printf '%s\n' "$files" | grep -qx "$f" || no "$f not in the .rpm"
    done
    printf '%s\n' "$files" | grep -q '^/usr/libexec/nitrodiag/lib/ld-linux' || no "the .rpm carries no loader"
    printf '%s\n' "$files" | grep -q '^/usr/libexec/nitrodiag/lib/libc.so.6$' || no "the .rpm carries no libc"
    # Installs on Amazon Linux 2 and 2023 from their own repositories: no requirement but /bin/sh (scriptlets)
    # and rpmlib features rpm 4.11 (AL2) has; no automatic Provides of the carried libraries.
    reqs=$(rpm -qRp "$rpm" 2>/dev/null)
    other=$(printf '%s\n' "$reqs" | grep -v '^/bin/sh$' | grep -v '^rpmlib(\(CompressedFileNames\|FileDigests\|PayloadFilesHavePrefix\|PayloadIsXz\)) <= ' || true)
    [ -z "$other" ] || no "unexpected requirements: $other"
    rpm -qp --provides "$rpm" 2>/dev/null | grep -q '\.so' && no "the .rpm provides shared libraries"
    rpm -qp --configfiles "$rpm" 2>/dev/null | grep -qx /etc/nitrodiag/kms-proxy.conf || no "kms-proxy.conf is not %config"
    [ "$(rpm -qp --configfiles "$rpm" 2>/dev/null | wc -l)" -eq 1 ] || no "other %config files: $(rpm -qp --configfiles "$rpm")"
    rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null | grep -q '^cn /etc/nitrodiag/kms-proxy.conf$' ||
        no "kms-proxy.conf is not %config(noreplace)"
    rpm -qp --scripts "$rpm" 2>/dev/null | grep -q 'daemon-reload' || no "no scriptlets"
    rpm -qp --scripts "$rpm" 2>/dev/null | grep -q 'systemctl enable' && no "the .rpm enables the unit"
    echo "   Requires: $(printf '%s' "$reqs" | tr '\n' ' ')"
    echo "   %config: $(rpm -qp --configfiles "$rpm" 2>/dev/null | tr '\n' ' ')  payload: $(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$rpm" 2>/dev/null)"
done
[ $fail -eq 0 ] && echo "packages: ok"
exit $fail
