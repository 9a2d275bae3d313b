#!/usr/bin/env bash
# bundle.cli — `nitrodiag bundle FILE` against archives built here with tar(1)/gzip(1), independent of the writer:
# an intact bundle verifies (exit 0, listing and report shown), a member whose bytes were changed, a member removed
# and a member added are each reported (exit 1), and garbage is a clear one-line failure, not a crash.
set -euo pipefail
ND="$1"
SRC="$2"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$T/root/var/log/nitro_enclaves" "$T/out"
printf 'boot\nkey AKIAIOSFODNN7EXAMPLE\n' > "$T/root/var/log/nitro_enclaves/nitro_enclaves.log"
printf '[ E26 ] Insufficient memory\n' > "$T/root/var/log/nitro_enclaves/err2026-11-22T19:00:00.log"
printf 'nothing secret here\n' > "$T/root/secrets.txt"
printf '{"Code": "Success"}\n' > "$T/root/imds.json"
cp "$SRC/tests/lua/runbooks/collect.lua" "$T/collect.lua"
(cd "$T/out" && NITRODIAG_PATH= "$ND" --root "$T/root" run "$T/collect.lua" >/dev/null 2>&1) || true
B="$(ls "$T"/out/*.tar.gz)"
[ "$(ls -A "$T/out" | wc -l)" = 1 ] || fail "expected exactly one file in the output directory"

# one top directory
tops="$(tar -tzf "$B" | cut -d/ -f1 | sort -u)"
[ "$(echo "$tops" | wc -l)" = 1 ] || fail "more than one top directory: $tops"
top="$tops"
[ "$top.tar.gz" = "$(basename "$B")" ] || fail "top directory $top does not match the file name"

out="$("$ND" bundle "$B" 2>&1)" || fail "intact bundle did not verify: $out"
grep -q "verified: all .* members match" <<<"$out" || fail "no verification line: $out"
grep -q "nitro_enclaves.log.tail" <<<"$out" || fail "listing lacks nitro_enclaves.log.tail"
grep -q "^# nitrodiag collect" <<<"$out" || fail "report not shown"

# sha256sum agrees with the manifest for every member it lists (python3 only reads the JSON)
mkdir "$T/x" && tar -xzf "$B" -C "$T/x"
python3 - "$T/x/$top" <<'PY'
import hashlib, json, os, sys
top = sys.argv[1]
m = json.load(open(os.path.join(top, "manifest.json")))
n = 0
for a in m["artifacts"]:
    if a.get("sha256"):
        data = open(os.path.join(os.path.dirname(top), a["path"]), "rb").read()
        assert hashlib.sha256(data).hexdigest() == a["sha256"], a["name"]
        assert len(data) == a["bytes"], a["name"]
        n += 1
assert n >= 5, n
PY

repack() { (cd "$T/x" && tar -czf "$T/bad.tar.gz" "$top"); }

# 1. changed bytes
printf 'tampered\n' >> "$T/x/$top/nitro_enclaves.log.tail"
repack
if out="$("$ND" bundle "$T/bad.tar.gz" 2>&1)"; then fail "a changed member verified"; fi
grep -q "nitro_enclaves.log.tail: size" <<<"$out" || fail "the changed member is not named: $out"

# 2. removed member
rm "$T/x/$top/nitro_enclaves.log.tail"
repack
if out="$("$ND" bundle "$T/bad.tar.gz" 2>&1)"; then fail "a missing member verified"; fi
grep -q "missing from the archive" <<<"$out" || fail "the missing member is not reported: $out"

# 3. added member
tar -xzf "$B" -C "$T/x"
echo extra > "$T/x/$top/extra.txt"
repack
if out="$("$ND" bundle "$T/bad.tar.gz" 2>&1)"; then fail "an unlisted member verified"; fi
grep -q "extra.txt: not listed in the manifest" <<<"$out" || fail "the unlisted member is not reported: $out"

# 4. garbage
head -c 1000 /dev/urandom > "$T/garbage.tar.gz"
set +e
out="$("$ND" bundle "$T/garbage.tar.gz" 2>&1)"
rc=$?
set -e
[ "$rc" = 1 ] || fail "garbage: exit $rc: $out"
grep -q "not a readable tar.gz\|corrupt" <<<"$out" || fail "garbage: unclear message: $out"
echo "bundle.cli: ok"
