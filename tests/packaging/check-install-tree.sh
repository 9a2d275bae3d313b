#!/bin/sh
# check-install-tree.sh — `cmake --install` of this build into a scratch DESTDIR lays out everything the packages
# carry (programs, every runbook in scripts/, every scenario, the image context, rules when present, man pages,
# completion, unit, conffile, docs), and the installed binary, moved away from its prefix, finds its own share dir.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
DESTDIR=$tmp/dest cmake --install "$ND_BUILD_DIR" --prefix /opt/ndtest >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
r=$tmp/dest/opt/ndtest
fail=0
has() { if [ -e "$1" ] || [ -L "$1" ]; then :; else echo "missing: ${1#$tmp/dest}"; fail=1; fi; }
has "$r/bin/nitrodiag"
has "$r/bin/nitrodiag-kms-proxy"
for f in "$ND_SOURCE_DIR"/scripts/*.lua; do
    case "$f" in *_spec.lua) continue ;; esac
    has "$r/share/nitrodiag/runbooks/$(basename "$f")"
done
for f in "$ND_SOURCE_DIR"/sim/scenarios/*.lua; do has "$r/share/nitrodiag/scenarios/$(basename "$f")"; done
if [ -d "$ND_SOURCE_DIR/lua/nd/rules" ]; then
    for f in "$ND_SOURCE_DIR"/lua/nd/rules/*.lua; do [ -e "$f" ] && has "$r/share/nitrodiag/rules/$(basename "$f")"; done
fi
has "$r/share/nitrodiag/image/enclave/Dockerfile"
has "$r/share/nitrodiag/image/core/nd.h"
has "$r/share/bash-completion/completions/nitrodiag"
has "$r/share/bash-completion/completions/nitrodiag-kms-proxy"
has "$r/share/doc/nitrodiag/README.md"
has "$r/share/doc/nitrodiag/copyright"
has "$r/share/doc/nitrodiag/kms-proxy.md"
if grep -q '^ND_MAN:BOOL=ON' "$ND_BUILD_DIR/CMakeCache.txt"; then
    has "$r/share/man/man1/nitrodiag.1.gz"
    has "$r/share/man/man1/nitrodiag-kms-proxy.1.gz"
fi
has "$(find "$tmp/dest" -name kms-proxy-host.service | head -n 1)"
conf=$(find "$tmp/dest" -path '*/etc/nitrodiag/kms-proxy.conf' | head -n 1)
has "$conf"
cmp -s "$conf" "$ND_SOURCE_DIR/proxy/kms-proxy.conf.example" || { echo "kms-proxy.conf is not the shipped default"; fail=1; }
# Relocation: move the tree; the binary must list runbooks from the moved share dir (not only the source tree's).
mv "$r" "$tmp/moved"
got=$(cd "$tmp" && NITRODIAG_PATH= "$tmp/moved/bin/nitrodiag" list | grep -c "$tmp/moved/share/nitrodiag/runbooks/" || true)
[ "$got" -gt 0 ] || { echo "moved tree: nitrodiag list does not use $tmp/moved/share/nitrodiag"; fail=1; }
[ $fail -eq 0 ] && echo "install tree: ok"
exit $fail
