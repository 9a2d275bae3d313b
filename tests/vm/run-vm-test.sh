#!/usr/bin/env bash
# The enclave real-kernel test: boots Debian's cloud kernel under qemu (TCG; KVM is not needed) with an initramfs
# whose rdinit is tests/vm/vmtest (loads the vsock modules, forks the in-guest client, execs enclave/init as PID 1),
# then checks qemu's exit status (isa-debug-exit: 33 = the guest client passed) and init's console lines.
# Exit 0 pass, 1 fail, 77 skip (kernel cannot be fetched, qemu missing).
# Usage: run-vm-test.sh INIT VSOCK_PINGPONG VMTEST MKINITRAMFS      (cache: $ND_VM_CACHE or tests/vm/cache)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
init="$1" pingpong="$2" vmtest="$3" mkinitramfs="$4"

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
"$mkinitramfs" "$work/initramfs.cpio" \
  dir:/dev nod:/dev/console=c:5:1 dir:/proc dir:/sys dir:/lib dir:/lib/modules \
  "file:/vmtest=$vmtest" "file:/init=$init" "file:/vsock-pingpong=$pingpong" \
  "file:/lib/modules/vsock.ko=$cache/modules/vsock.ko" \
  "file:/lib/modules/vmw_vsock_virtio_transport_common.ko=$cache/modules/vmw_vsock_virtio_transport_common.ko" \
  "file:/lib/modules/vsock_loopback.ko=$cache/modules/vsock_loopback.ko" || { echo "FAIL: mkinitramfs"; exit 1; }

t0=$(date +%s.%N)
timeout -k 5 120 "$qemu" -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot -monitor none \
  -serial "file:$work/console.log" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -kernel "$cache/vmlinuz" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 rdinit=/vmtest panic=-1 quiet loglevel=3 VSOCK_PINGPONG_MODE=vsock" </dev/null
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
[ $qrc -eq 33 ] || { echo "FAIL: qemu exit status $qrc, expected 33 (isa-debug-exit PASS from the guest client)"; fails=$((fails + 1)); }
expect "[init] starting"
expect "[init] mounted proc on /proc"
expect "[init] mounted sysfs on /sys"
expect "[init] launching /vsock-pingpong --mode vsock"
expect "[enclave] mode=vsock"
expect "[enclave] vsock mode: listening on vsock:any:5000"
expect '[enclave] received: "ping"'
expect '[enclave] received: "hello"'
expect "[init] forwarding SIGTERM to /vsock-pingpong (pid $(sed -n 's/^\[init\] forwarding SIGTERM to \/vsock-pingpong (pid \([0-9]*\))$/\1/p' <<<"$console" | head -n1))"
expect "[init] /vsock-pingpong exited signal=15 (SIGTERM)"
expect "[vmtest] PASS"
orphan="$(sed -n 's/^\[vmtest\] orphan pid \([0-9]*\) reaped by PID 1$/\1/p' <<<"$console")"
expect "[init] reaped pid ${orphan:-?} (rc=42)"
[ $fails -eq 0 ] && echo "vm.enclave: PASS" || echo "vm.enclave: $fails failure(s)"
[ $fails -eq 0 ]
