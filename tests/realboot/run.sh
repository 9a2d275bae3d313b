#!/usr/bin/env bash
# The real-boot tests (ctest realboot.*): EIFs boot under QEMU's nitro-enclave machine with nd-vhost-vsock.
#   run.sh spec NITRODIAG VHOST   the spec (tests/realboot/realboot_spec.lua): boot, console, ping, PCRs, reboot
#   run.sh sim  NITRODIAG VHOST   `nitrodiag --sim tests/realboot/healthy-qemu.lua diag10` booting its EIFs for real
#                                 (the control run boots the basic test image: the rootfs of simulator-written EIFs
#                                 holds only nitrodiag-init and vsock-pingpong, so the AWS hello sample's script
#                                 is not there and that enclave reboots for real, as diag10 then rightly says);
#                                 then diag10 on reboot-no-init-qemu.lua: the workload reboots for real, diagnosed
# Needs QEMU with the nitro-enclave machine (tools/build-qemu.sh), the enclave kernel (tools/fetch-enclave-kernel.sh)
# and nd-vhost-vsock. Without them: exit 77 (ctest's skip) with the reason — except under CI (CI=true), where a
# missing piece is a failure: `make test` builds QEMU and fetches the kernel first there.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
mode="$1" nitrodiag="$2" vhost="${3:-}"

# The set-up scripts' own contract, before anything needs them: with an empty cache --check says so in ONE line
# and exits 77; the cache directory follows the environment.
if [ "$mode" = tools ]; then
  empty="$(mktemp -d "${TMPDIR:-/tmp}/nd-rb-empty.XXXXXX")"
  trap 'rm -rf "$empty"' EXIT
  fails=0
  out="$(NITRODIAG_QEMU_CACHE="$empty/q" "$src/tools/build-qemu.sh" --check 2>&1)"; rc=$?
  [ $rc -eq 77 ] || { echo "FAIL: build-qemu.sh --check on an empty cache exited $rc"; fails=$((fails + 1)); }
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: more than one line: $out"; fails=$((fails + 1)); }
  [ "$(NITRODIAG_QEMU_CACHE="$empty/q" "$src/tools/build-qemu.sh" --print-cache)" = "$empty/q" ] || { echo "FAIL: --print-cache"; fails=$((fails + 1)); }
  out="$(NITRODIAG_KERNEL_CACHE="$empty/k" "$src/tools/fetch-enclave-kernel.sh" --check 2>&1)"; rc=$?
  [ $rc -eq 77 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: fetch-enclave-kernel.sh --check: $rc $out"; fails=$((fails + 1)); }
  "$src/tools/build-qemu.sh" --bogus >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: a bad option is not a usage error"; fails=$((fails + 1)); }
  [ $fails -eq 0 ] && echo "PASS" && exit 0
  exit 1
fi

missing() {
  if [ "${CI:-}" = true ]; then echo "FAIL: $1 (under CI the real-boot tests must run: make test prepares them)"; exit 1; fi
  echo "SKIP: $1"; exit 77
}
qemu="$("$src/tools/build-qemu.sh" --check 2>/dev/null)" || missing "no QEMU with the nitro-enclave machine (run tools/build-qemu.sh)"
"$src/tools/fetch-enclave-kernel.sh" --check >/dev/null 2>&1 || missing "no enclave kernel (run tools/fetch-enclave-kernel.sh)"
[ -n "$vhost" ] && [ -x "$vhost" ] || missing "nd-vhost-vsock is not built"
export NITRODIAG_QEMU="$qemu" NITRODIAG_VHOST_VSOCK="$vhost"
echo "qemu: $qemu; vhost: $vhost; kernel: $(cat "$("$src/tools/fetch-enclave-kernel.sh" --check)/VERSION")"

case "$mode" in
  spec) exec "$nitrodiag" spec "$here/realboot_spec.lua" ;;
  sim)
    work="$(mktemp -d "${TMPDIR:-/tmp}/nd-realboot.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    cd "$work" || exit 1
    "$nitrodiag" --sim "$here/healthy-qemu.lua" diag10 runs=vsock,hello run_seconds=30 \
      hello_eif=/home/ec2-user/hello-basic.eif >"$work/out.txt" 2>"$work/err.txt"
    rc=$?
    cat "$work/out.txt"; tail -n 20 "$work/err.txt"
    fails=0
    fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
    [ $rc -eq 0 ] || fail "diag10 exited $rc"
    grep -q 'vsock ping answered' "$work/out.txt" || fail "no vsock ping answered by the real guest"
    grep -q 'qemu backend unavailable' "$work/err.txt" && fail "the simulator fell back to the stand-in"
    bundle="$(ls "$work"/nitrodiag-diag10-*.tar.gz 2>/dev/null | head -n 1)"
    [ -n "$bundle" ] || fail "no bundle"
    if [ -n "$bundle" ]; then
      mkdir -p "$work/b" && tar -xzf "$bundle" -C "$work/b"
      con="$(find "$work/b" -name 'run_vsock.console.log' | head -n 1)"
      [ -n "$con" ] && grep -q "Linux version 6" "$con" || { echo "bundle: $con"; tar -tzf "$bundle" | head -n 50; head -c 3000 "$con"; }
      [ -n "$con" ] && grep -q 'Linux version 6\.' "$con" || fail "the bundle's vsock console is not a real kernel's"
      [ -n "$con" ] && grep -q 'vsock mode: listening on vsock:any:5000' "$con" || fail "the bundle's console lacks vsock-pingpong's line"
    fi
    # the operator's workload with CMD ["/bin/sh","-c",…] and no shell: the enclave reboots for real, diag10 says why
    mkdir -p "$work/r" && cd "$work/r" || exit 1
    "$nitrodiag" --sim "$here/reboot-no-init-qemu.lua" diag10 runs=workload run_seconds=20 >"$work/r/out.txt" 2>"$work/r/err.txt"
    rc=$?
    [ $rc -eq 1 ] || fail "diag10 on reboot-no-init-qemu exited $rc, expected 1"
    grep -q 'ENCLAVE_REBOOT_NO_INIT' "$work/r/out.txt" || { fail "no ENCLAVE_REBOOT_NO_INIT"; cat "$work/r/out.txt"; }
    rb="$(ls "$work"/r/nitrodiag-diag10-*.tar.gz 2>/dev/null | head -n 1)"
    if [ -n "$rb" ]; then
      mkdir -p "$work/r/b" && tar -xzf "$rb" -C "$work/r/b"
      grep -qh 'execvpe: /bin/sh: No such file or directory' "$work"/r/b/*/run_app.console.log || fail "the workload's console lacks the real execvpe failure"
      grep -qh 'reboot: Restarting system' "$work"/r/b/*/run_app.console.log || fail "the workload's enclave did not reboot"
    else
      fail "no bundle from the reboot run"
    fi
    left="$(pgrep -af "nd-sim-enclave|nd-vhost-vsock|qemu-system-x86_64.*nitro-enclave" | grep -F "$work" || true)"
    [ -z "$left" ] || fail "processes left: $left"
    [ $fails -eq 0 ] && echo "PASS" && exit 0
    exit 1 ;;
  *) echo "usage: run.sh spec|sim NITRODIAG VHOST" >&2; exit 2 ;;
esac
