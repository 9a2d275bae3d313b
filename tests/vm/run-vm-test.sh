#!/usr/bin/env bash
# The enclave real-kernel test: boots Debian's cloud kernel under qemu (TCG; KVM is not needed) with an initramfs
# whose rdinit is tests/vm/vmtest: it loads the vsock modules, starts nitrodiag-logd, runs nitrodiag-init over the
# failing apps (missing, script without interpreter, exit 1, segfault, bind 127.0.0.1 with lo down, and with
# --lo-up), then forks the in-guest client and execs nitrodiag-init as PID 1 over vsock-pingpong (the app that works).
# Here: qemu's exit status (isa-debug-exit: 33 = the guest client passed), init's console lines per case, the log
# stream logd received over vsock, and the finding `nitrodiag triage` gives for each case's console.
# Exit 0 pass, 1 fail, 77 skip (kernel cannot be fetched, qemu missing).
# Usage: run-vm-test.sh INIT VSOCK_PINGPONG VMTEST MKINITRAMFS LOGD VMAPP NITRODIAG   (cache: $ND_VM_CACHE or tests/vm/cache)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
init="$1" pingpong="$2" vmtest="$3" mkinitramfs="$4" logd="$5" vmapp="$6" nitrodiag="$7"

qemu="$(command -v qemu-system-x86_64 || true)"
[ -n "$qemu" ] || { echo "SKIP: qemu-system-x86_64 is not installed (tools/install-deps.sh installs qemu-system-x86)"; exit 77; }

t_fetch=$(date +%s.%N)
cache="$("$here/fetch-kernel.sh" "${ND_VM_CACHE:-$here/cache}")"
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: the Debian cloud kernel cannot be fetched (see above)"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: fetch-kernel.sh exited $rc"; exit 1; }
echo "kernel: $(cat "$cache/VERSION")"

work="$(mktemp -d "${TMPDIR:-/tmp}/nd-vmtest.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A script whose interpreter the image does not have (there is no shell in this initramfs).
printf '#!/bin/sh\nexec /vmapp ok\n' >"$work/run.sh"
chmod 755 "$work/run.sh"
"$mkinitramfs" "$work/initramfs.cpio" \
  dir:/dev nod:/dev/console=c:5:1 dir:/proc dir:/sys dir:/lib dir:/lib/modules dir:/logs dir:/app \
  "file:/vmtest=$vmtest" "file:/init=$init" "file:/nitrodiag-init=$init" "file:/vsock-pingpong=$pingpong" \
  "file:/logd=$logd" "file:/vmapp=$vmapp" "file:/app/run.sh=$work/run.sh" \
  "file:/lib/modules/vsock.ko=$cache/modules/vsock.ko" \
  "file:/lib/modules/vmw_vsock_virtio_transport_common.ko=$cache/modules/vmw_vsock_virtio_transport_common.ko" \
  "file:/lib/modules/vsock_loopback.ko=$cache/modules/vsock_loopback.ko" || { echo "FAIL: mkinitramfs"; exit 1; }

t0=$(date +%s.%N)
# a hang guard only: the guest ends the VM itself (its own watchdog is 240 s of guest time after boot)
timeout -k 5 300 "$qemu" -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot -monitor none \
  -serial "file:$work/console.log" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -kernel "$cache/vmlinuz" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 rdinit=/vmtest panic=-1 quiet loglevel=3 VSOCK_PINGPONG_MODE=vsock ND_INIT_LOG=vsock:1:9100" </dev/null
qrc=$?
t1=$(date +%s.%N)
console="$(tr -d '\r' <"$work/console.log")"
echo "---- guest console ----"
echo "$console"
echo "-----------------------"
awk -v q="$qrc" -v a="$t_fetch" -v b="$t0" -v c="$t1" \
  'BEGIN { printf "qemu exit status %d; boot to power-off %.1f s (kernel fetch + initramfs %.1f s)\n", q, c - b, b - a }'

fails=0
expect() {
  if ! grep -qxF -- "$1" <<<"$console"; then echo "FAIL: missing console line: $1"; fails=$((fails + 1)); fi
}
expect_re() {
  local text="$console"
  [ $# -ge 2 ] && text="$2"
  if ! grep -qE -- "$1" <<<"$text"; then echo "FAIL: no line matches /$1/ ${3:-on the console}"; fails=$((fails + 1)); fi
}
# The console lines of one case (between its begin and end markers).
case_text() { sed -n "/^\[vmtest\] case $1: begin\$/,/^\[vmtest\] case $1: end /p" <<<"$console"; }
# `nitrodiag triage` on one case's console must name the cause.
expect_triage() {
  local name="$1" code="$2" out
  case_text "$name" | grep -v '^\[vmtest\]' >"$work/case-$name.txt"
  out="$("$nitrodiag" triage "$work/case-$name.txt" 2>&1)"
  if ! grep -q -- "$code" <<<"$out"; then
    echo "FAIL: triage of case $name does not give $code:"; sed 's/^/    /' <<<"$out"; fails=$((fails + 1))
  else
    echo "triage $name: $(grep -m1 -o "\[[a-z]*\] $code: .*" <<<"$out")"
  fi
}
[ $qrc -eq 33 ] || { echo "FAIL: qemu exit status $qrc, expected 33 (isa-debug-exit PASS from the guest client)"; fails=$((fails + 1)); }
expect "[init] starting"
expect "[init] mounted proc on /proc"
expect "[init] mounted sysfs on /sys"
expect "[init] launching /vsock-pingpong --mode vsock"
expect_re '^\[init\] check kernel ok: Linux [^ ]+ x86_64$'
expect_re '^\[init\] check command ok: /vsock-pingpong \(ELF x86_64, static\)$'
expect_re '^\[init\] check nsm warn: no /dev/nsm'
expect_re '^\[init\] check vsock warn: local CID 1: only the loopback transport'
expect_re '^\[init\] check ca-bundle warn: no CA bundle'
expect_re '^\[init\] check env info: [0-9]+ variables \(names only\): .*ND_INIT_LOG'
expect "[init] log channel connected to vsock:1:9100"
expect "[enclave] mode=vsock"
expect "[enclave] vsock mode: listening on vsock:any:5000"
expect '[enclave] received: "ping"'
expect '[enclave] received: "hello"'
expect "[init] forwarding SIGTERM to /vsock-pingpong (pid $(sed -n 's/^\[init\] forwarding SIGTERM to \/vsock-pingpong (pid \([0-9]*\))$/\1/p' <<<"$console" | head -n1))"
expect_re '^\[init\] /vsock-pingpong exited signal=15 \(SIGTERM\) after [0-9.]+ s$'
expect "[vmtest] PASS"
orphan="$(sed -n 's/^\[vmtest\] orphan pid \([0-9]*\) reaped by PID 1$/\1/p' <<<"$console")"
expect "[init] reaped pid ${orphan:-?} (rc=42)"

# ---- the failure cases: console lines, exit status, triage ----
t="$(case_text missing)"
expect_re '^\[init\] check command fail: /app/server: No such file or directory$' "$t" "in case missing"
expect_re '^\[init\] cannot run /app/server: No such file or directory$' "$t" "in case missing"
expect_re '^\[init\] /app/server exited rc=127 after [0-9.]+ s$' "$t" "in case missing"
expect_re '^\[vmtest\] case missing: end rc=127$' "$t" "in case missing"
expect_triage missing ENCLAVE_CMD_NOT_FOUND
t="$(case_text script)"
expect_re '^\[init\] check command fail: /app/run.sh: script; its interpreter /bin/sh \(from #!\) cannot run: /bin/sh: No such file or directory$' "$t" "in case script"
expect_re '^\[init\] cannot run /app/run.sh: No such file or directory$' "$t" "in case script"
expect_triage script ENCLAVE_APP_INTERPRETER_MISSING
t="$(case_text exit1)"
expect_re '^\[init\] check command ok: /vmapp \(ELF x86_64, static\)$' "$t" "in case exit1"
expect_re '^vmapp: cannot read /etc/vmapp.conf: No such file or directory$' "$t" "in case exit1"
expect_re '^\[init\] /vmapp exited rc=1 after [0-9.]+ s$' "$t" "in case exit1"
expect_re '^\[vmtest\] case exit1: end rc=1$' "$t" "in case exit1"
expect_triage exit1 ENCLAVE_APP_EXITED
t="$(case_text segv)"
expect_re '^vmapp: starting the worker$' "$t" "in case segv"
expect_re '^\[init\] /vmapp exited signal=11 \(SIGSEGV\)( core dumped)? after [0-9.]+ s$' "$t" "in case segv"
expect_re '^\[vmtest\] case segv: end rc=139$' "$t" "in case segv"
expect_triage segv ENCLAVE_APP_KILLED_BY_SIGNAL
t="$(case_text bind-lo)"
expect_re '^\[init\] check loopback warn: lo is down' "$t" "in case bind-lo"
expect_re '^vmapp: listening on 127.0.0.1:8080$' "$t" "in case bind-lo"
expect_re '^vmapp: health check: dial tcp 127.0.0.1:8080: connect: Network is unreachable$' "$t" "in case bind-lo"
expect_triage bind-lo ENCLAVE_LOOPBACK_DOWN
t="$(case_text bind-lo-up)"
expect_re '^\[init\] check loopback ok: lo was down; brought it up \(127.0.0.1\)$' "$t" "in case bind-lo-up"
expect_re '^vmapp: health check ok$' "$t" "in case bind-lo-up"
expect_re '^\[vmtest\] case bind-lo-up: end rc=0$' "$t" "in case bind-lo-up"

# ---- the log stream nitrodiag-logd received over vsock ----
log="$(sed -n 's/^\[vmtest\] log: //p' <<<"$console")"
expect_re '^\[vmtest\] log file /logs/cid-1.log$'
expect_re ' enclave=cid-1 cid=1 logd: hello: nitrodiag-log 1 cid=(-1|1) records=[0-9]+ dropped=0 kernel=' "$log" "in the log stream"
expect_re ' enclave=cid-1 cid=1 seq=1 init: \[init\] starting$' "$log" "in the log stream"
expect_re ' init: \[init\] check command fail: /app/server: No such file or directory$' "$log" "in the log stream"
expect_re ' init: \[init\] check command fail: /app/run.sh: script; its interpreter /bin/sh' "$log" "in the log stream"
expect_re ' stderr: vmapp: cannot read /etc/vmapp.conf: No such file or directory$' "$log" "in the log stream"
expect_re ' init: \[init\] /vmapp exited rc=1 after ' "$log" "in the log stream"
expect_re ' stdout: vmapp: starting the worker$' "$log" "in the log stream"
expect_re ' init: \[init\] /vmapp exited signal=11 \(SIGSEGV\)' "$log" "in the log stream"
expect_re ' stderr: vmapp: health check: dial tcp 127.0.0.1:8080: connect: Network is unreachable$' "$log" "in the log stream"
expect_re ' stdout: \[enclave\] received: "ping"$' "$log" "in the log stream"
expect_re ' init: \[init\] forwarding SIGTERM to /vsock-pingpong' "$log" "in the log stream"
# only the flood-stalled case may lose lines (its parent stopped reading): exactly one gap, said by logd
nlost="$(grep -c 'lost in the enclave (records' <<<"$log")"
[ "$nlost" = 1 ] || { echo "FAIL: expected one gap in the log stream (the flood-stalled case), found $nlost"; fails=$((fails + 1)); }

# ---- back-pressure over real vsock: logd stopped while the app wrote 2 MB through a 16 KiB queue ----
t="$(case_text flood-stalled)"
expect_re '^\[vmtest\] flood-stalled: app finished while logd was stopped; init VmPeak [0-9]+ kB$' "$t" "in case flood-stalled"
expect_re '^\[vmtest\] case flood-stalled: end rc=0$' "$t" "in case flood-stalled"
expect_re ' logd: [0-9]+ line\(s\) lost in the enclave \(records [0-9]+\.\.[0-9]+: ' "$log" "in the log stream"
expect_re ' stdout: vmapp: flood done$' "$log" "in the log stream"
expect_re ' init: \[init\] /vmapp exited rc=0 after [0-9.]+ s$' "$log" "in the log stream"
expect_re ' init: \[init\] log channel: [0-9]+ line\(s\) queued, [0-9]+ sent, [1-9][0-9]* dropped$' "$log" "in the log stream"
# triage reads the log stream too (what an operator of a production enclave has instead of a console)
grep -F 'connect: Network is unreachable' <<<"$log" >"$work/stream-bind.txt"
grep -F 'check loopback warn' <<<"$log" >>"$work/stream-bind.txt"
out="$("$nitrodiag" triage "$work/stream-bind.txt" 2>&1)"
grep -q ENCLAVE_LOOPBACK_DOWN <<<"$out" || { echo "FAIL: triage of the log stream lines does not give ENCLAVE_LOOPBACK_DOWN"; sed 's/^/    /' <<<"$out"; fails=$((fails + 1)); }

[ $fails -eq 0 ] && echo "vm.enclave: PASS" || echo "vm.enclave: $fails failure(s)"
[ $fails -eq 0 ]
