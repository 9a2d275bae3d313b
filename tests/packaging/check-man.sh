#!/bin/sh
# check-man.sh MANDIR — nitrodiag.1.gz and nitrodiag-kms-proxy.1.gz render with man(1) without warnings, and say
# what the programs say: every option in --help, every runbook `nitrodiag list` shows (with its key= arguments from
# `nitrodiag help RUNBOOK`), every scenario, every proxy config key, and the version of --version.
set -eu
man=$1
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for page in nitrodiag nitrodiag-kms-proxy; do
    # groff warnings (bad requests, unknown escapes) go to stderr
    MANWIDTH=200 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$man/$page.1.gz" >"$tmp/$page.txt" 2>"$tmp/$page.err" || fail=1
    if [ -s "$tmp/$page.err" ]; then echo "man $page warns:"; cat "$tmp/$page.err"; fail=1; fi
    sed 's/‐//g; s/\xe2\x88\x92/-/g' "$tmp/$page.txt" > "$tmp/$page.flat"
done
need() { # page word what
    if ! grep -qF -- "$2" "$tmp/$1.flat"; then echo "$1(1) lacks $3: $2"; fail=1; fi
}
cd "$tmp"
# Every list is taken first, so a program that fails stops the check (set -e) instead of yielding nothing to check.
version=$("$ND_BIN" --version)
help=$("$ND_BIN" --help)
runbooks=$("$ND_BIN" list | sed -n 's/^\([A-Za-z0-9_.-]*\) .*/\1/p')
scenarios=$("$ND_BIN" -q sim | sed -n 's/^\([A-Za-z0-9_.-]*\) .*/\1/p')
pversion=$("$ND_PROXY" --version)
phelp=$("$ND_PROXY" --help)
[ -n "$runbooks" ] && [ -n "$scenarios" ] || { echo "no runbooks or scenarios listed"; exit 1; }
need nitrodiag "$version" "the version"
for opt in $(printf '%s\n' "$help" | grep -oE -- '(^| )--?[a-z][a-z-]*' | sort -u); do need nitrodiag "$opt" "option"; done
for rb in $runbooks; do
    need nitrodiag "$rb" "runbook"
    args=$("$ND_BIN" help "$rb")
    for a in $(printf '%s\n' "$args" | sed -n 's/^  \([A-Za-z0-9_-]*=\).*/\1/p'); do need nitrodiag "$a" "argument of $rb"; done
done
for sc in $scenarios; do need nitrodiag "$sc" "scenario"; done
need nitrodiag-kms-proxy "$pversion" "the version"
for k in $(printf '%s\n' "$phelp" | grep -oE -- '--[a-z_]+' | sort -u); do need nitrodiag-kms-proxy "$k" "option"; done
[ $fail -eq 0 ] && echo "man pages: ok ($(wc -l < nitrodiag.txt) + $(wc -l < nitrodiag-kms-proxy.txt) lines)"
exit $fail
