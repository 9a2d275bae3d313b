#!/usr/bin/env bash
# The nd-vhost-vsock end-to-end test, in two modes:
#   pci    Debian's QEMU (7.2 here; -accel tcg) boots Debian's cloud kernel (tests/vm/fetch-kernel.sh) with a
#          vhost-user-vsock-pci device whose backend is nd-vhost-vsock, guest RAM in a shared memfd as vhost-user
#          requires; rdinit=/vhostguest; the guest ends the VM through isa-debug-exit (33 = PASS).
#   nitro  QEMU's nitro-enclave machine (>= 9.2 with libcbor: tools/build-qemu.sh --check, or $NITRODIAG_QEMU) boots an
#          EIF written here with nd.eif (nitrodiag spec mk-eif_spec.lua) from the enclave kernel
#          (tools/fetch-enclave-kernel.sh --check, or $NITRODIAG_KERNEL_CACHE) and the same initramfs (virtio-mmio);
#          the machine has no isa-debug-exit: the guest powers off and its console says PASS.
# tests/vhost/vhostguest is the guest (heartbeat, guest->host and host->guest streams of 1 MiB, a refused port,
# vsock-pingpong); tests/vhost/host.py is the host side (echo server on PREFIX_5001, CONNECT clients on PREFIX).
# Checked here: the guest's result, host.py's checks, the backend's log (heartbeat answered, RST for the refused
# port), and that the backend exits by itself when QEMU goes (--once), leaving no process and no socket file.
# Exit 0 pass, 1 fail, 77 skip (a QEMU, kernel or nitrodiag missing).
# Usage: run-qemu-test.sh pci|nitro ND_VHOST_VSOCK VHOSTGUEST VSOCK_PINGPONG MKINITRAMFS [NITRODIAG]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
mode="$1" backend="$2" guest="$3" pingpong="$4" mkinitramfs="$5" nitrodiag="${6:-}"

if [ "$mode" = pci ]; then
  qemu="$(command -v qemu-system-x86_64 || true)"
  [ -n "$qemu" ] || { echo "SKIP: qemu-system-x86_64 is not installed (tools/install-deps.sh installs qemu-system-x86)"; exit 77; }
  "$qemu" -device help 2>/dev/null | grep -q '"vhost-user-vsock-pci"' ||
    { echo "SKIP: $qemu has no vhost-user-vsock-pci device"; exit 77; }
  cache="$("$here/../vm/fetch-kernel.sh" "${ND_VM_CACHE:-$here/../vm/cache}")"
  rc=$?
  [ $rc -eq 77 ] && { echo "SKIP: the Debian cloud kernel cannot be fetched (see above)"; exit 77; }
  [ $rc -eq 0 ] || { echo "FAIL: fetch-kernel.sh exited $rc"; exit 1; }
else
  qemu="${NITRODIAG_QEMU:-}"
  if [ -z "$qemu" ] && [ -x "$src/tools/build-qemu.sh" ]; then qemu="$("$src/tools/build-qemu.sh" --check 2>/dev/null)"; fi
  [ -n "$qemu" ] && [ -x "$qemu" ] || { echo "SKIP: no QEMU with the nitro-enclave machine (tools/build-qemu.sh, or NITRODIAG_QEMU)"; exit 77; }
  "$qemu" -machine help 2>/dev/null | grep -q '^nitro-enclave' || { echo "SKIP: $qemu has no nitro-enclave machine"; exit 77; }
  cache="${NITRODIAG_KERNEL_CACHE:-}"
  if [ -z "$cache" ] && [ -x "$src/tools/fetch-enclave-kernel.sh" ]; then cache="$("$src/tools/fetch-enclave-kernel.sh" --check 2>/dev/null)"; fi
  [ -n "$cache" ] && [ -s "$cache/vmlinuz" ] || { echo "SKIP: no enclave kernel (tools/fetch-enclave-kernel.sh, or NITRODIAG_KERNEL_CACHE)"; exit 77; }
  [ -n "$nitrodiag" ] && [ -x "$nitrodiag" ] || { echo "SKIP: nitrodiag (to write the EIF) is not built"; exit 77; }
fi
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
echo "kernel: $(cat "$cache/VERSION"); $("$qemu" --version | head -n 1)"

# short paths: a unix socket path holds at most 107 bytes
work="$(mktemp -d /tmp/nd-vhost.XXXXXX)"
bpid="" hpid=""
cleanup() {
  for p in $hpid $bpid; do kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# the modules the kernel cache has (vhostguest loads those it finds, in dependency order)
mods=()
for m in virtio_ring virtio virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci vsock \
         vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
  [ -f "$cache/modules/$m.ko" ] && mods+=("file:/lib/modules/$m.ko=$cache/modules/$m.ko")
done
"$mkinitramfs" "$work/initramfs.cpio" dir:/dev nod:/dev/console=c:5:1 dir:/lib dir:/lib/modules \
  "file:/vhostguest=$guest" "file:/init=$guest" "file:/vsock-pingpong=$pingpong" "${mods[@]}" ||
  { echo "FAIL: mkinitramfs"; exit 1; }
if [ "$mode" = nitro ]; then
  ND_EIF_OUT="$work/app.eif" ND_EIF_KERNEL="$cache/vmlinuz" ND_EIF_RAMDISK="$work/initramfs.cpio" \
    "$nitrodiag" spec "$here/mk-eif_spec.lua" >"$work/eif.out" 2>&1 || { cat "$work/eif.out"; echo "FAIL: writing the EIF"; exit 1; }
  rm -f "$work/initramfs.cpio"
fi

sock="$work/vhost.sock" prefix="$work/v"
ND_VHOST_VSOCK_TRACE=1 "$backend" --socket "$sock" --uds-path "$prefix" --guest-cid 16 --once --log "$work/backend.log" &
bpid=$!
# waits are for a condition, up to 30 s (a loaded machine), ending as soon as it holds; QEMU's timeout only
# guards against a hang (TCG on a loaded host is several times slower)
for _ in $(seq 600); do [ -S "$sock" ] && [ -S "$prefix" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "FAIL: the backend did not create $sock"; cat "$work/backend.log"; exit 1; }
: >"$work/console.log"
python3 "$here/host.py" "$prefix" "$work/console.log" >"$work/host.out" 2>&1 &
hpid=$!

t0=$(date +%s.%N)
if [ "$mode" = pci ]; then
  timeout -k 5 300 "$qemu" -accel tcg -m 256 -smp 1 -nodefaults -display none -no-reboot -monitor none \
    -serial "file:$work/console.log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
    -chardev "socket,id=vsock0,path=$sock" -device vhost-user-vsock-pci,chardev=vsock0 \
    -kernel "$cache/vmlinuz" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 rdinit=/vhostguest panic=-1 quiet loglevel=3" </dev/null
  qrc=$?
  want=33
else
  # acpi=on: Debian's kernels find virtio-mmio devices through ACPI; tsc_early_khz: under TCG the kernel cannot
  # calibrate its TSC on this machine (docs/realboot.md)
  timeout -k 5 300 "$qemu" -M "nitro-enclave,vsock=vsock0,id=i-vhost-test,acpi=on" -kernel "$work/app.eif" \
    -m 512 -smp 1 -display none -no-reboot -monitor none -serial "file:$work/console.log" \
    -chardev "socket,id=vsock0,path=$sock" -append "tsc_early_khz=2000000" </dev/null >"$work/qemu.out" 2>&1
  qrc=$?
  want=0
  rm -f "$work/app.eif" "$work/eif.out"
fi
t1=$(date +%s.%N)
wait "$hpid"; hrc=$?; hpid=""
# --once: the backend exits by itself when QEMU has gone
for _ in $(seq 600); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$bpid" 2>/dev/null; then brc=running; else wait "$bpid"; brc=$?; bpid=""; fi

echo "---- guest console ----"; tr -d '\r' <"$work/console.log"; echo "-----------------------"
echo "---- host.py ----"; cat "$work/host.out"; echo "-----------------"
echo "---- backend log ----"; cat "$work/backend.log"; echo "---------------------"
awk -v q="$qrc" -v b="$t0" -v c="$t1" 'BEGIN { printf "qemu exit status %d; boot to power-off %.1f s\n", q, c - b }'

fails=0
no() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ $qrc -eq $want ] || no "qemu exit status $qrc, expected $want${want/#33/ (isa-debug-exit PASS from the guest)}"
[ $hrc -eq 0 ] || no "host.py failed ($hrc)"
con="$(tr -d '\r' <"$work/console.log")"
grep -qx '\[guest\] local CID 16' <<<"$con" || no "the guest's CID is not 16 (the backend's GET_CONFIG)"
grep -qx '\[guest\] heartbeat answered (then end of stream)' <<<"$con" || no "heartbeat not answered, or no end of stream"
grep -qx '\[guest\] connect CID 2 port 5999: Connection reset by peer' <<<"$con" || no "port without listener: no RST"
grep -qE '^\[guest\] host connection from CID 3 port [0-9]+$' <<<"$con" || no "host->guest connection not from CID 3"
grep -qx '\[enclave\] received: "ping"' <<<"$con" || no "vsock-pingpong did not get the ping"
grep -qx '\[guest\] PASS' <<<"$con" || no "the guest did not pass"
log="$(cat "$work/backend.log")"
grep -q '^nd-vhost-vsock: heartbeat: answered 0xb7 from CID 16 port [0-9]* (enclave ready)$' <<<"$log" || no "backend log: no heartbeat line"
grep -qE "^nd-vhost-vsock: guest port [0-9]+ -> CID 2 port 5999: ${prefix}_5999: connect: .*; RST$" <<<"$log" ||
  no "backend log: no RST line for port 5999"
grep -q '^nd-vhost-vsock: QEMU disconnected (1 heartbeat(s) answered' <<<"$log" || no "backend log: no disconnect line"
[ "$brc" = 0 ] || no "the backend did not exit 0 after QEMU went (--once): $brc"
[ ! -e "$sock" ] || no "$sock left behind"
[ ! -e "$prefix" ] || no "$prefix left behind"
left="$(ls "$work" | grep -v -E '^(initramfs.cpio|console.log|backend.log|host.out|qemu.out)$' || true)"
[ -z "$left" ] || no "files left in the work directory: $left"
[ -s "$work/qemu.out" ] && { echo "---- qemu ----"; cat "$work/qemu.out"; }
[ $fails -eq 0 ] && echo "vhost.qemu ($mode): PASS" || echo "vhost.qemu ($mode): $fails failure(s)"
[ $fails -eq 0 ]
