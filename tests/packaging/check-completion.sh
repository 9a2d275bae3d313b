#!/bin/bash
# check-completion.sh COMPLETION — the bash completion offers what the program itself lists: runbooks (including one
# that only exists on $NITRODIAG_PATH), a runbook's key= arguments, --sim scenarios, and the proxy's --key= options.
set -eu
. "$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
complete_words() { # words... (the last is being completed) -> COMPREPLY, one per line
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
    if [[ "$1" == *kms-proxy ]]; then _nitrodiag_kms_proxy; else _nitrodiag; fi
    printf '%s\n' "${COMPREPLY[@]}" | sort
}
expect() { # what expected actual
    if [ "$2" != "$3" ]; then printf 'FAIL %s\n  want: %s\n  got:  %s\n' "$1" "$(echo $2)" "$(echo $3)"; fail=1
    else echo "ok   $1"; fi
}
cd "$tmp"
# A site runbook on the search path must be offered too.
mkdir site && cat > site/zz-site-check.lua <<'LUA'
return { description = "a site runbook", args = { { name = "depth", type = "integer", help = "how deep" } },
         steps = { { name = "s", run = function(s) s:ok("x") end } } }
LUA
export NITRODIAG_PATH=$tmp/site
want=$("$ND_BIN" list | sed -n 's/^\([A-Za-z0-9_.-]*\) .*/\1/p' | sort)
expect "runbook names = nitrodiag list" "$(printf '%s\n' run list repl spec help $want | sort)" "$(complete_words "$ND_BIN" '')"
expect "site runbook from NITRODIAG_PATH" "zz-site-check" "$(complete_words "$ND_BIN" zz)"
expect "run <runbook> prefix" "diag10" "$(complete_words "$ND_BIN" --json run diag1)"
expect "arguments of diag10" "$("$ND_BIN" help diag10 | sed -n 's/^  \([a-z_]*=\).*/\1/p' | sort)" \
       "$(complete_words "$ND_BIN" --sim healthy diag10 '')"
expect "arguments of a site runbook" "depth=" "$(complete_words "$ND_BIN" zz-site-check d)"
expect "--sim scenarios" "$(ls "$ND_SOURCE_DIR"/sim/scenarios | sed 's/\.lua$//' | sort)" "$(complete_words "$ND_BIN" --sim '')"
expect "--sim=prefix" "--sim=healthy" "$(complete_words "$ND_BIN" --sim=hea)"
expect "options" "--deadline" "$(complete_words "$ND_BIN" --dead)"
expect "proxy keys = --help" "$("$ND_PROXY" --help | sed -n 's/^ *\(--[a-z_]*\)=.*/\1=/p' | grep '^--max_c' | sort)" \
       "$(complete_words "$ND_PROXY" --max_c)"
exit $fail
