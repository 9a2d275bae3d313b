#!/usr/bin/env bash
# bundle.faults.* — collection under fault injection, checked from outside (python3's tarfile/zlib/hashlib/hmac and
# the openssl CLI read what nitrodiag wrote; nothing here trusts nitrodiag's own reader):
#   odd_names    err*.log names with control characters, invalid UTF-8, a C1 control, '%', a secret: every artifact
#                is collected on its own, member names and manifest entries agree, `nitrodiag bundle` verifies
#   enospc       --out on a 64 KiB tmpfs (a private mount namespace; skipped where none can be made): the run FAILS
#                (terminal, --json, exit status) and leaves no temporary file; --out /proc/nope fails before running
#   sigkill      SIGKILL at several points of a --sim diag10 run: no child survives, the temporaries are named with
#                the dead pid and the next run cleans them, a half-written bundle is kept readable (.partial.tar.gz);
#                a live run's temporaries are never touched
#   interrupted  SIGTERM before collection: the manifest lists the artifacts of the steps that never ran, and why
#   no_libarchive  libarchive.so.13 hidden (a bind mount in a private mount namespace): the run fails with one line
#                naming the library and the package, runs nothing and leaves nothing; --version still works
#   signature    --sign-key with an HMAC secret, an EC and an Ed25519 key: checked by python3 hmac / openssl dgst,
#                by `nitrodiag bundle key=`, and a re-hashed tampered bundle passes integrity but fails the signature
# usage: faults.sh CASE NITRODIAG SOURCE_DIR
set -uo pipefail
CASE="$1"
ND="$2"
SRC="$3"
T="$(mktemp -d)"
KILLPIDS=()
cleanup() {
  for p in "${KILLPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
LOGF=""  # the output of the run being waited for, shown when a case fails
fail() { echo "FAIL: $*" >&2; [ -n "$LOGF" ] && [ -f "$LOGF" ] && { echo "--- $LOGF:" >&2; tail -n 30 "$LOGF" >&2; }; exit 1; }
export TMPDIR="$T/tmp" PATH="/usr/local/bin:/usr/bin:/bin" NITRODIAG_PATH=
unset NITRODIAG_SIGN_KEY
mkdir -p "$TMPDIR" "$T/out"

# Waits (bounded, by polling a condition, never a fixed sleep as the check) until "$@" succeeds.
wait_for() {
  local what="$1"; shift
  for _ in $(seq 1 1200); do "$@" && return 0; sleep 0.05; done
  fail "timed out waiting for: $what"
}

# The live (not zombie) processes whose environment carries ND_FAULT_TAG=$1 and whose command line holds $2 (if
# given): "pid cmdline" lines. python3 reads /proc in one process (a shell loop over /proc is slow on a busy host).
tagged() {
  python3 - "$1" "${2:-}" <<'PY'
import os, sys
tag, want = ("ND_FAULT_TAG=" + sys.argv[1]).encode(), sys.argv[2].encode()
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        env = open("/proc/%s/environ" % p, "rb").read().split(b"\0")
        cmd = open("/proc/%s/cmdline" % p, "rb").read().replace(b"\0", b" ")
        state = [l for l in open("/proc/%s/status" % p) if l.startswith("State:")][0]
    except (OSError, IndexError):
        continue
    if tag in env and want in cmd and "Z" not in state.split()[1]:
        print(p, cmd.decode(errors="replace"))
PY
}
has_tagged() { [ -n "$(tagged "$1" "$2")" ]; }
none_tagged() { [ -z "$(tagged "$1")" ]; }

case "$CASE" in
odd_names)
  mkdir -p "$T/root/var/log/nitro_enclaves"
  python3 - "$T/root/var/log/nitro_enclaves" <<'PY'
import os, sys
d = os.fsencode(sys.argv[1]) + b"/"
names = [b"err\x01ctl.log", b"err\nnewline.log", b"err\xff\xfeinvalid.log", b"err-AKIAIOSFODNN7EXAMPLE.log",
         b"err%41pct.log", b"err\xc2\x9bcsi.log", b"err\x1b[31mred.log", b"err-2026-12-06.log"]
for n in names:
    open(d + n, "wb").write(b"Action: Run Enclave\nError code: E26\n")
open(d + b"nitro_enclaves.log", "wb").write(b"boot\n")
PY
  # no nitro-cli here: the required first step fails, and the always-run collect step still collects everything
  (cd "$T/out" && ND_FAULT_TAG=odd "$ND" --root "$T/root" --out "$T/out" diag10 >"$T/run.txt" 2>&1)
  B="$(ls "$T"/out/*.tar.gz 2>/dev/null)" || fail "no bundle written: $(cat "$T/run.txt")"
  "$ND" bundle "$B" report=false >"$T/verify.txt" 2>&1 || fail "the fresh bundle fails its own verification: $(cat "$T/verify.txt")"
  python3 - "$B" <<'PY' || fail "odd names"
import hashlib, json, sys, tarfile
t = tarfile.open(sys.argv[1])
members = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
top = next(iter(members)).split("/")[0]
man = json.loads(members[top + "/manifest.json"])
arts = man["artifacts"]
errs = []
listed = {a["path"] for a in arts if a.get("sha256")}
inarchive = {n for n in members if not n.endswith(("/manifest.json", "/manifest.sig"))}
if listed != inarchive:
    errs.append("members and manifest differ: only in archive %s, only in manifest %s" % (inarchive - listed, listed - inarchive))
for a in arts:
    if a.get("sha256") and hashlib.sha256(members[a["path"]]).hexdigest() != a["sha256"]:
        errs.append("sha256 mismatch for " + a["name"])
for n in members:
    for ch in n:
        if ord(ch) < 32 or 127 <= ord(ch) < 160:
            errs.append("control character in member name %r" % n)
    if "AKIAIOSFODNN7EXAMPLE" in n:
        errs.append("secret in member name %r" % n)
globbed = [a for a in arts if a.get("glob") == "/var/log/nitro_enclaves/err*.log"]
if len(globbed) != 8 or any(a["status"] != "ok" for a in globbed):
    errs.append("expected 8 err logs collected, got %s" % [(a["name"], a["status"]) for a in globbed])
names = {a["name"] for a in arts}
for want in ["err%01ctl.log", "err%0Anewline.log", "err%FF%FEinvalid.log", "err%2541pct.log", "err%C2%9Bcsi.log",
             "err%1B[31mred.log", "err-2026-12-06.log", "nitro_enclaves.log.tail", "dmesg.tail",
             "journal_kms-proxy-host.log", "describe_enclaves.json", "err_logs.list"]:
    if want not in names:
        errs.append("no manifest entry " + want)
if not any(n.startswith("err-AKIA") and "[REDACTED]" in n for n in names):
    errs.append("the secret in a file name was not redacted: %s" % sorted(names))
for a in arts:
    if a["status"] != "ok":
        if not isinstance(a.get("error"), str) or not a["error"]:
            errs.append("not-ok item without a reason: " + a["name"])
        if a["name"] not in man["not_ok"]:
            errs.append("not-ok item missing from not_ok: " + a["name"])
d = next((a for a in arts if a["name"] == "describe_enclaves.json"), None)
if d is None or d["status"] == "ok" or "nitro-cli" not in d["error"]:
    errs.append("describe_enclaves.json should record why it failed: %r" % d)
if errs:
    print("\n".join(errs)); sys.exit(1)
PY
  ;;

enospc)
  # /proc/nope: nothing is run, the run fails on the terminal, in --json and in its exit status
  out="$(cd "$T/out" && "$ND" --out /proc/nope/x --sim diag10 run_seconds=1 2>&1)"; rc=$?
  [ "$rc" = 1 ] || fail "--out /proc/nope: exit $rc, want 1: $out"
  grep -q "^bundle: not written: " <<<"$out" || fail "--out /proc/nope: no 'bundle: not written' line: $out"
  grep -q "nothing was run" <<<"$out" || fail "--out /proc/nope: should say nothing was run: $out"
  js="$("$ND" --json --out /proc/nope/x --sim diag10 run_seconds=1 2>/dev/null)"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["verdict"]=="error" and r["exit_code"]==1 and r.get("bundle") is None and "cannot write" in r["bundle_error"], r' "$js" \
    || fail "--out /proc/nope --json: $js"

  # a full filesystem: a 64 KiB tmpfs in a private mount namespace, and a log of incompressible data to collect
  if [ "$(id -u)" = 0 ]; then US=(unshare -m); else US=(unshare -Urm); fi
  "${US[@]}" true 2>/dev/null || { echo "SKIP: cannot make a mount namespace here"; exit 77; }
  mkdir -p "$T/root/var/log/nitro_enclaves" "$T/full"
  head -c 400000 /dev/urandom | base64 >"$T/root/var/log/nitro_enclaves/err-big.log"
  cat >"$T/inner.sh" <<EOF
set -u
mount -t tmpfs -o size=64k tmpfs "$T/full" || exit 77
cd "$T/full"
"$ND" --root "$T/root" --out "$T/full" diag10 >"$T/term.txt" 2>&1; echo \$? >"$T/term.rc"
"$ND" --json --root "$T/root" --out "$T/full" diag10 >"$T/json.txt" 2>/dev/null; echo \$? >"$T/json.rc"
ls -A "$T/full" >"$T/left.txt"
EOF
  "${US[@]}" bash "$T/inner.sh"; rc=$?
  [ "$rc" = 77 ] && { echo "SKIP: cannot mount a tmpfs here"; exit 77; }
  [ "$(cat "$T/term.rc")" = 1 ] || fail "full disk: exit $(cat "$T/term.rc"), want 1: $(cat "$T/term.txt")"
  grep -q "^verdict: FAIL" "$T/term.txt" || fail "full disk: verdict is not FAIL: $(cat "$T/term.txt")"
  grep -q "^bundle: not written: .*No space left on device" "$T/term.txt" || fail "full disk: no ENOSPC line: $(cat "$T/term.txt")"
  grep -q "BUNDLE_NOT_WRITTEN" "$T/term.txt" || fail "full disk: no BUNDLE_NOT_WRITTEN finding: $(cat "$T/term.txt")"
  [ "$(cat "$T/json.rc")" = 1 ] || fail "full disk --json: exit $(cat "$T/json.rc")"
  python3 - "$T/json.txt" <<'PY' || fail "full disk --json: $(cat "$T/json.txt")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verdict"] == "fail" and r["exit_code"] == 1, (r["verdict"], r["exit_code"])
assert r.get("bundle") is None and "No space left on device" in r["bundle_error"], r.get("bundle_error")
assert any(f.get("code") == "BUNDLE_NOT_WRITTEN" and f["severity"] == "fail" for f in r["findings"]), r["findings"]
PY
  [ -s "$T/left.txt" ] && fail "full disk: files left behind: $(cat "$T/left.txt")"
  ;;

sigkill)
  # one run per kill point; each is checked, then swept by the next run
  check_after_kill() { # $1 tag, $2 pid, $3 label
    local tag="$1" pid="$2" label="$3"
    wait_for "no process of the killed run ($label) left" none_tagged "$tag"
    # its temporaries are recognisable: they carry the dead pid
    ls -A "$TMPDIR" "$T/out" | grep -q -- "-p$pid-" || fail "$label: no temporary named with pid $pid: $(ls -A "$TMPDIR" "$T/out")"
    # the next run (any runbook that collects) sweeps them
    (cd "$T/out" && "$ND" --root "$T/empty" --out "$T/out" run "$SRC/tests/lua/runbooks/collect.lua" >"$T/next.txt" 2>&1)
    if ls -A "$TMPDIR" "$T/out" | grep -q -- "-p$pid-"; then
      fail "$label: the next run left the killed run's temporaries: $(ls -A "$TMPDIR" "$T/out")"
    fi
    grep -q "left by a killed earlier run\|partial bundle" "$T/next.txt" || fail "$label: the next run did not say what it cleaned: $(cat "$T/next.txt")"
  }
  mkdir -p "$T/empty"

  # a live run's temporaries are never swept: start one, sweep from another process, then kill it
  (cd "$T/out" && ND_FAULT_TAG=live exec "$ND" --sim --sim-realtime --out "$T/out" diag10 run_seconds=30 runs=basic >"$T/live.txt" 2>&1) &
  LIVE=$!; KILLPIDS+=("$LIVE")
  wait_for "the live run's artifacts dir" sh -c "ls '$TMPDIR' | grep -q 'nitrodiag-artifacts-p$LIVE-'"
  (cd "$T/out" && "$ND" --root "$T/empty" --out "$T/out" run "$SRC/tests/lua/runbooks/collect.lua" >/dev/null 2>&1)
  ls "$TMPDIR" | grep -q "nitrodiag-artifacts-p$LIVE-" || fail "a live run's temporary directory was swept"
  ls -A "$T/out" | grep -q "p$LIVE-" || fail "a live run's temporary bundle was swept"

  # point 1: with `nitro-cli run-enclave --attach-console` running (the child that used to survive)
  wait_for "run-enclave --attach-console" has_tagged live --attach-console
  kill -9 "$LIVE"; wait "$LIVE" 2>/dev/null
  check_after_kill live "$LIVE" "during run-enclave"
  P="$(ls "$T"/out/*.partial.tar.gz 2>/dev/null | head -n 1)"
  [ -n "$P" ] || fail "during run-enclave: the half-written bundle was not kept as .partial.tar.gz: $(ls -A "$T/out")"
  # readable by an independent reader up to where it ends, and by nitrodiag bundle
  python3 - "$P" <<'PY' || fail "the partial bundle is not readable"
import io, sys, tarfile, zlib
raw = zlib.decompressobj(31).decompress(open(sys.argv[1], "rb").read())
names = []
try:
    for m in tarfile.open(fileobj=io.BytesIO(raw), mode="r|"):
        names.append(m.name)
except tarfile.TarError:
    pass
assert any(n.endswith("/nitro_cli_version.txt") for n in names), names
assert any(n.endswith("/build_basic.eif.log") for n in names), names
PY
  out="$("$ND" bundle "$P" report=false 2>&1)"
  grep -q "nitro_cli_version.txt" <<<"$out" || fail "nitrodiag bundle cannot list the partial bundle: $out"
  grep -q "partial" <<<"$out" || fail "nitrodiag bundle does not say the bundle is partial: $out"
  rm -f "$T"/out/*.tar.gz

  # point 2: early, as soon as the first step has run (before anything was collected but the version)
  (cd "$T/out" && ND_FAULT_TAG=early exec "$ND" -v --sim --sim-realtime --out "$T/out" diag10 run_seconds=30 runs=basic >"$T/early.txt" 2>&1) &
  EARLY=$!; KILLPIDS+=("$EARLY")
  wait_for "the first step line" grep -q "nitro-cli  " "$T/early.txt"
  kill -9 "$EARLY"; wait "$EARLY" 2>/dev/null
  check_after_kill early "$EARLY" "after the first step"

  # point 3: during collection (runs=basic with 1 s: the collect step starts right after "hello control")
  rm -f "$T"/out/*.tar.gz
  (cd "$T/out" && ND_FAULT_TAG=late exec "$ND" --sim --out "$T/out" diag10 run_seconds=1 runs=basic >"$T/late.txt" 2>&1) &
  LATE=$!; KILLPIDS+=("$LATE")
  wait_for "the collect step" grep -q "hello control" "$T/late.txt"
  kill -9 "$LATE"; wait "$LATE" 2>/dev/null
  wait_for "no process of the killed run (collect)" none_tagged late
  if ls -A "$TMPDIR" "$T/out" | grep -q -- "-p$LATE-"; then
    check_after_kill late "$LATE" "during collect"
  fi
  ;;

interrupted)
  # SIGTERM while the images are built: the steps after it never run, the collect step (always) still runs
  (cd "$T/out" && ND_FAULT_TAG=term exec "$ND" --sim --sim-realtime --out "$T/out" diag10 run_seconds=30 runs=basic >"$T/term.txt" 2>&1) &
  PID=$!; KILLPIDS+=("$PID"); LOGF="$T/term.txt"
  wait_for "run-enclave started" has_tagged term --attach-console
  kill -TERM "$PID"; wait "$PID"; rc=$?
  [ "$rc" = 1 ] || fail "interrupted run: exit $rc, want 1: $(cat "$T/term.txt")"
  wait_for "no process of the interrupted run left" none_tagged term
  B="$(ls "$T"/out/*.tar.gz 2>/dev/null)" || fail "no bundle after SIGTERM: $(cat "$T/term.txt")"
  python3 - "$B" <<'PY' || fail "interrupted manifest"
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
man = json.loads(next(t.extractfile(m).read() for m in t.getmembers() if m.name.endswith("/manifest.json")))
assert man["interrupted"] is True and "SIGTERM" in man["interrupt_reason"], (man["interrupted"], man["interrupt_reason"])
by = {a["name"]: a for a in man["artifacts"]}
errs = []
# the run step was stopped: what it had not collected yet is listed with why
for n in ["run_basic.console.log", "run_basic.log"]:
    a = by.get(n)
    if a is None or a["status"] == "ok" and a.get("sha256") is None:
        errs.append("%s not listed: %s" % (n, a))
    elif a["status"] != "ok" and ("SIGTERM" not in (a.get("error") or "") and "interrupted" not in (a.get("error") or "")):
        errs.append("%s listed without why: %s" % (n, a))
# the collect step (always) ran: its artifacts are there
for n in ["nitro_enclaves.log.tail", "dmesg.tail", "describe_enclaves.json"]:
    if n not in by:
        errs.append("collect artifact missing: " + n)
for a in man["artifacts"]:
    if a["status"] != "ok" and not a.get("error"):
        errs.append("not-ok without a reason: " + a["name"])
if errs:
    print("\n".join(errs)); sys.exit(1)
PY
  "$ND" bundle "$B" report=false >/dev/null 2>&1 || fail "the interrupted bundle does not verify"

  # SIGTERM during the very first step: every later step's artifacts are listed as skipped, with the reason
  rm -f "$T"/out/*.tar.gz
  mkdir -p "$T/bin" "$T/empty0"
  # a nitro-cli that hangs on --version (the first step) and answers the rest at once
  printf '#!/bin/sh\n[ "$1" = --version ] && exec sleep 60\necho "[]"\n' >"$T/bin/nitro-cli"; chmod +x "$T/bin/nitro-cli"
  (cd "$T/out" && ND_FAULT_TAG=first NITRODIAG_NITRO_CLI="$T/bin/nitro-cli" exec "$ND" --root "$T/empty0" --out "$T/out" diag10 >"$T/first.txt" 2>&1) &
  PID=$!; KILLPIDS+=("$PID")
  wait_for "the stub nitro-cli runs" has_tagged first "sleep 60"
  kill -TERM "$PID"; wait "$PID"
  wait_for "no process of the interrupted run left" none_tagged first
  B="$(ls "$T"/out/*.tar.gz 2>/dev/null)" || fail "no bundle after SIGTERM in the first step: $(cat "$T/first.txt")"
  python3 - "$B" <<'PY' || fail "interrupted before collection"
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
man = json.loads(next(t.extractfile(m).read() for m in t.getmembers() if m.name.endswith("/manifest.json")))
by = {a["name"]: a for a in man["artifacts"]}
want = ["nitro_cli_version.txt", "allocator.yaml", "describe_enclaves.before.json", "build_basic.docker.log",
        "eif_vsock.measurements.json", "run_basic.console.log", "run_hello.log"]
errs = []
for n in want:
    a = by.get(n)
    if not a:
        errs.append("not listed: " + n)
    elif a["status"] not in ("skipped", "error") or "SIGTERM" not in (a.get("error") or ""):
        errs.append("%s: %s / %s" % (n, a["status"], a.get("error")))
    elif n not in man["not_ok"]:
        errs.append("not in not_ok: " + n)
if errs:
    print("\n".join(errs)); sys.exit(1)
PY
  ;;

signature)
  mkdir -p "$T/k" "$T/root/var/log/nitro_enclaves"
  printf 'boot\n' >"$T/root/var/log/nitro_enclaves/nitro_enclaves.log"
  head -c 32 /dev/urandom | base64 >"$T/k/hmac.key"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/k/ec.pem" 2>/dev/null || fail "openssl genpkey EC"
  openssl pkey -in "$T/k/ec.pem" -pubout -out "$T/k/ec.pub" 2>/dev/null
  openssl genpkey -algorithm ed25519 -out "$T/k/ed.pem" 2>/dev/null || fail "openssl genpkey ed25519"
  openssl pkey -in "$T/k/ed.pem" -pubout -out "$T/k/ed.pub" 2>/dev/null
  printf 'short\n' >"$T/k/short.key"
  # a key that cannot be used stops the run before it starts
  out="$(cd "$T/out" && "$ND" --sign-key "$T/k/short.key" --root "$T/root" --out "$T/out" run "$SRC/tests/lua/runbooks/collect.lua" 2>&1)"
  [ $? = 1 ] || fail "a too-short HMAC key should fail the run: $out"
  grep -q "at least 16 bytes" <<<"$out" || fail "no reason for the bad key: $out"
  for k in hmac.key ec.pem ed.pem; do
    mkdir -p "$T/o-$k"
    (cd "$T/o-$k" && "$ND" --sign-key "$T/k/$k" --root "$T/root" --out "$T/o-$k" run "$SRC/tests/lua/runbooks/collect.lua" >/dev/null 2>&1)
    B="$(ls "$T/o-$k"/*.tar.gz)" || fail "no signed bundle with $k"
    mkdir -p "$T/x-$k" && tar -xzf "$B" -C "$T/x-$k"
    M="$(ls "$T/x-$k"/*/manifest.json)"; S="$(dirname "$M")/manifest.sig"
    [ -f "$S" ] || fail "$k: no manifest.sig"
    python3 -c 'import json,sys,base64; open(sys.argv[2],"wb").write(base64.b64decode(json.load(open(sys.argv[1]))["signature"]))' "$S" "$T/sig-$k"
    case "$k" in
    hmac.key)
      python3 - "$T/k/hmac.key" "$M" "$T/sig-$k" <<'PY' || fail "python3 hmac disagrees with the HMAC signature"
import hmac, hashlib, sys
key = open(sys.argv[1], "rb").read().rstrip(b" \t\r\n")
assert hmac.compare_digest(hmac.new(key, open(sys.argv[2], "rb").read(), hashlib.sha256).digest(), open(sys.argv[3], "rb").read())
PY
      PUB="$T/k/hmac.key" ;;
    ec.pem)
      openssl dgst -sha256 -verify "$T/k/ec.pub" -signature "$T/sig-$k" "$M" >/dev/null || fail "openssl rejects the EC signature"
      PUB="$T/k/ec.pub" ;;
    ed.pem)
      openssl pkeyutl -verify -pubin -inkey "$T/k/ed.pub" -rawin -in "$M" -sigfile "$T/sig-$k" >/dev/null || fail "openssl rejects the Ed25519 signature"
      PUB="$T/k/ed.pub" ;;
    esac
    "$ND" bundle "$B" key="$PUB" report=false >"$T/v.txt" 2>&1 || fail "$k: nitrodiag bundle key= does not verify: $(cat "$T/v.txt")"
    grep -q "signature: verified" "$T/v.txt" || fail "$k: no 'signature: verified': $(cat "$T/v.txt")"
  done
  # the wrong key fails; no key says what was checked (integrity only)
  B="$(ls "$T/o-ec.pem"/*.tar.gz)"
  "$ND" bundle "$B" key="$T/k/ed.pub" report=false >"$T/v.txt" 2>&1 && fail "another key's signature verified"
  out="$("$ND" bundle "$B" report=false 2>&1)" || fail "a signed bundle without key= should still pass integrity: $out"
  grep -q "not checked" <<<"$out" || fail "no 'not checked' for a signed bundle without key=: $out"
  # tampering: change a member AND its manifest sha256/size (integrity passes), the signature does not
  TOP="$(ls "$T/x-hmac.key")"
  X="$T/x-hmac.key/$TOP"
  printf 'boot\ninjected\n' >"$X/nitro_enclaves.log.tail"
  python3 - "$X" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
for a in m["artifacts"]:
    if a["name"] == "nitro_enclaves.log.tail":
        data = open(os.path.join(d, a["name"]), "rb").read()
        a["sha256"] = hashlib.sha256(data).hexdigest(); a["bytes"] = len(data)
json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent=2)
PY
  (cd "$T/x-hmac.key" && tar -czf "$T/tampered.tar.gz" "$TOP")
  "$ND" bundle "$T/tampered.tar.gz" report=false >/dev/null 2>&1 || fail "the re-hashed tampered bundle should pass integrity (that is the point of signing)"
  out="$("$ND" bundle "$T/tampered.tar.gz" key="$T/k/hmac.key" report=false 2>&1)" && fail "the tampered bundle passed the signature check: $out"
  grep -q "signature: FAILED" <<<"$out" || fail "no signature failure line: $out"
  ;;
no_libarchive)
  # libarchive is loaded on first use (core/lazylib.c), so a package installed without it starts fine and only the
  # bundle needs it: the run says which library is missing and how to get it, runs nothing, leaves nothing
  lib="$({ command -v ldconfig >/dev/null && ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | awk '$1 == "libarchive.so.13" { print $NF; exit }')"
  [ -n "$lib" ] || { echo "SKIP: no libarchive.so.13 in ldconfig's cache"; exit 77; }
  if [ "$(id -u)" = 0 ]; then US=(unshare -m); else US=(unshare -Urm); fi
  "${US[@]}" true 2>/dev/null || { echo "SKIP: cannot make a mount namespace here"; exit 77; }
  cat >"$T/inner.sh" <<INNER
set -u
mount --bind /dev/null "$lib" || exit 77
cd "$T/out"
"$ND" --sim healthy --out "$T/out" diag10 runs= >"$T/term.txt" 2>&1; echo \$? >"$T/term.rc"
"$ND" --json --sim healthy --out "$T/out" diag10 runs= >"$T/json.txt" 2>/dev/null; echo \$? >"$T/json.rc"
"$ND" --version >"$T/version.txt" 2>&1; echo \$? >"$T/version.rc"
INNER
  "${US[@]}" bash "$T/inner.sh"; rc=$?
  [ "$rc" = 77 ] && { echo "SKIP: cannot bind-mount over $lib here"; exit 77; }
  LOGF="$T/term.txt"
  [ "$(cat "$T/version.rc")" = 0 ] || fail "nitrodiag --version needs libarchive: $(cat "$T/version.txt")"
  [ "$(cat "$T/term.rc")" = 1 ] || fail "without libarchive: exit $(cat "$T/term.rc"), want 1"
  grep -q "^error: cannot collect: bundle: cannot load libarchive: .* (nothing was run; install libarchive (Debian/Ubuntu: libarchive13))$" "$T/term.txt" \
    || fail "no one-line error naming libarchive"
  grep -q "out of memory" "$T/term.txt" && fail "a missing library reported as out of memory"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["verdict"]=="error" and r["exit_code"]==1 and "cannot load libarchive" in r["bundle_error"], r' "$T/json.txt" \
    || fail "--json: $(cat "$T/json.txt")"
  left="$(ls -A "$T/out")"
  [ -z "$left" ] || fail "left in --out: $left"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "ok $CASE"
